package issuer_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// logRecords keeps the messages and attributes an issuer logs, for tests
// that wait for what it did.
type logRecords struct {
	mu   sync.Mutex
	recs []map[string]any
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	m := map[string]any{"msg": r.Message}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	l.mu.Lock()
	l.recs = append(l.recs, m)
	l.mu.Unlock()
	return nil
}

// find returns the first record for which match is true.
func (l *logRecords) find(match func(map[string]any) bool) (map[string]any, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		if match(r) {
			return r, true
		}
	}
	return nil, false
}

// TestSnapshot_RefusalsAreNotForgotten: replica b trusts only its own
// event key; issuer c, with another key, revokes snapuser. b refuses that
// event. Whatever snapshot b publishes afterwards, a verifier that trusts
// both keys and starts fresh refuses snapuser's token, as one that
// replayed the stream does.
func TestSnapshot_RefusalsAreNotForgotten(t *testing.T) {
	srv := bustest.RunServer(t)
	logs := &logRecords{}
	bKey := bustest.EventKeyFile(t)
	bKid, _, err := issuer.EventKeyFile(bKey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{EventKeyFile: bKey, EventKeys: []string{bKid},
		SnapshotEvery: 1, SnapshotInterval: time.Millisecond, Logger: slog.New(logs)})
	_ = b

	cDir := t.TempDir()
	cKey := cDir + "/event.pem"
	cKid, _, err := issuer.EventKeyFile(cKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{EventKeyFile: cKey, SnapshotEvery: -1})
	sess := createSession(t, c, issuer.SessionRequest{Subject: "snapuser"})
	res := revoke(t, c, "subject", "snapuser")

	// b applies the revocation (refusing it), then publishes a snapshot
	// at or after it, or withholds one.
	bustest.WaitFor(t, 15*time.Second, func() error {
		if _, ok := logs.find(func(r map[string]any) bool {
			seq, _ := r["seq"].(uint64)
			return r["msg"] == "denylist snapshot published" && seq >= res.Seq || r["msg"] == "denylist snapshot withheld"
		}); !ok {
			return fmt.Errorf("b has neither published a snapshot at %d or later nor withheld one", res.Seq)
		}
		return nil
	})

	pins := []string{bKid, cKid}
	for _, name := range []string{"fresh"} {
		sc, err := sidecar.Open(sidecar.Config{
			Verifier: verifier.Config{Issuer: c.IssuerURL(), Audience: issuer.DefaultAudience},
			DataDir:  t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet, EventKeys: pins,
		}, bustest.Connect(t, srv))
		if err != nil {
			t.Fatal(err)
		}
		bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
		waitReady(t, sc)
		bustest.WaitFor(t, 10*time.Second, func() error {
			if st := sc.Status(); st.Applied < res.Seq {
				return fmt.Errorf("%s verifier applied %d, want %d", name, st.Applied, res.Seq)
			}
			return nil
		})
		if code, reason := verify(t, sc, sess.AccessToken); code != 401 {
			t.Fatalf("%s verifier (snapshot %d) on snapuser's token: %d %s, want 401 revoked",
				name, sc.Status().SnapshotSeq, code, reason)
		}
	}
}
