package issuer

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/store"
)

// TestLegacySessions_MovedAtStart starts an issuer on a data directory of a
// version that kept sessions in Pebble: its live session moves to
// HERALD_SESSIONS with its used token, keeps working with its old token on
// this replica, and after one refresh works on every replica; an expired
// session and its index entries are dropped.
func TestLegacySessions_MovedAtStart(t *testing.T) {
	s := bustest.RunServer(t)
	dir := t.TempDir()
	now := time.Now()
	current, used, expired := "hrt_"+randomSecret(32), "hrt_"+randomSecret(32), "hrt_"+randomSecret(32)
	live := sessionRecord{ID: randomID(16), Subject: "nora", ClientID: DefaultClientID, Created: now.Add(-time.Hour),
		Expires: now.Add(time.Hour), LastUsed: now.Add(-time.Minute), Refresh: hashToken(current)}
	old := sessionRecord{ID: randomID(16), Subject: "nora", ClientID: DefaultClientID, Created: now.Add(-48 * time.Hour),
		Expires: now.Add(-24 * time.Hour), LastUsed: now.Add(-25 * time.Hour), Refresh: hashToken(expired)}
	db, err := store.Open(filepath.Join(dir, "state"), store.Options{Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *store.Tx) error {
		put := func(k string, v any) {
			b, _ := json.Marshal(v)
			tx.Set(k, b)
		}
		for _, sess := range []sessionRecord{live, old} {
			put(sessionKey(sess.ID), sess)
			put(subjectKey(sess.Subject, sess.ID), struct{}{})
		}
		put(refreshKey(hashToken(current)), refreshRecord{SessionID: live.ID, Expires: live.Expires})
		put(refreshKey(hashToken(used)), refreshRecord{SessionID: live.ID, Used: true, Expires: live.Expires})
		put(refreshKey(hashToken(expired)), refreshRecord{SessionID: old.ID, Expires: old.Expires})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	a, _ := openForTest(t, s, dir, nil)
	b, _ := openForTest(t, s, t.TempDir(), nil)
	for _, prefix := range []string{keySession, keyBySubject} {
		if err := a.state.Scan(prefix, func(k string, _ []byte) error { return errors.New(k) }); err != nil {
			t.Fatalf("legacy record %s left in Pebble after the move", err)
		}
	}
	if _, ok, _ := a.state.Get(refreshKey(hashToken(expired))); ok {
		t.Fatal("the expired session's refresh token index entry was kept")
	}
	for _, svc := range []*Service{a, b} {
		got, err := svc.ListSessions(t.Context(), "nora")
		if err != nil || len(got) != 1 || got[0].ID != live.ID {
			t.Fatalf("sessions of nora on %s: %v %v, want [%s]", svc.URL(), got, err, live.ID)
		}
	}
	if _, err := b.refresh(t.Context(), current, clientAuth{}, ""); err == nil {
		t.Fatal("a legacy refresh token worked on a replica that did not make it")
	}
	resp, err := a.refresh(t.Context(), current, clientAuth{}, "")
	if err != nil {
		t.Fatalf("legacy refresh token on its replica: %v", err)
	}
	if !strings.HasSuffix(resp.RefreshToken, "."+live.ID) {
		t.Fatalf("rotated token %.8s… does not name its session", resp.RefreshToken)
	}
	if _, err := b.refresh(t.Context(), resp.RefreshToken, clientAuth{}, ""); err != nil {
		t.Fatalf("the rotated token on another replica: %v", err)
	}
	var e *Error
	if _, err := a.refresh(t.Context(), used, clientAuth{}, ""); !errors.As(err, &e) || !strings.Contains(e.Description, "already used") {
		t.Fatalf("a token used before the move: %v, want reuse", err)
	}
}
