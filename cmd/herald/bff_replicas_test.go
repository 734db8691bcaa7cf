package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier/browser"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// issued counts the token.issued events of tenant acme in HERALD_AUDIT:
// one per session created, one per refresh.
func (st *bffStack) issued(t *testing.T) uint64 {
	t.Helper()
	s, err := st.conn.JetStream().Stream(t.Context(), bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	subject := bus.IssueSubject("acme")
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

// waitIssued waits until the issuer has issued want tokens of acme, and
// fails at once if it issued more.
func (st *bffStack) waitIssued(t *testing.T, want uint64) {
	t.Helper()
	bustest.WaitFor(t, 5*time.Second, func() error {
		switch got := st.issued(t); {
		case got > want:
			t.Fatalf("the issuer issued %d tokens, want %d: a refresh happened more than once", got, want)
		case got < want:
			return fmt.Errorf("%d tokens issued, want %d", got, want)
		}
		return nil
	})
}

// burst sends n requests with cookie, spread over the sidecars and
// released together, and returns their answers.
func burst(t *testing.T, scs []*sidecar.Sidecar, n int, cookie string) []reply {
	replies := make([]reply, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replies {
		wg.Go(func() {
			<-start
			replies[i] = send(t, scs[i%len(scs)], "GET", "/whoami", cookie, nil)
		})
	}
	close(start)
	wg.Wait()
	return replies
}

// TestBFF_ReplicasRefreshOnce: two replicas sharing a cookie key get many
// concurrent requests of one browser with the same cookie at refresh time,
// round after round: while its access token is due for refresh and while
// it has expired. Every request is served, as the session's user; the
// issuer rotates exactly once per round, so reuse detection never trips
// and the session lives on. Where the access token had expired, every
// answer carries the refreshed cookie: the replicas that lost the claim
// served with the winner's tokens, without calling the issuer.
func TestBFF_ReplicasRefreshOnce(t *testing.T) {
	st := newBFFStack(t, 2, 0, browser.Config{})
	cookie := st.login(t, st.scs[0], "alice", "")
	sid := whoami(t, st.scs[1], cookie)["sid"]
	issued := uint64(2) // the session's first token, and the handoff's refresh
	st.waitIssued(t, issued)

	for round := 1; round <= 6; round++ {
		expired := round%2 == 0
		// The issuer's default access token lives 5 minutes: it is due for
		// refresh after 3m20s, expired (with the leeway) after 5m30s.
		if expired {
			st.clock.Add(int64(6 * time.Minute))
		} else {
			st.clock.Add(int64(4 * time.Minute))
		}
		replies := burst(t, st.scs, 24, cookie)
		next := ""
		for i, r := range replies {
			if r.code != http.StatusOK {
				t.Fatalf("round %d (expired %v), request %d: %d %s", round, expired, i, r.code, r.body)
			}
			if me := r.json(t); me["sub"] != "alice" || me["sid"] != sid {
				t.Fatalf("round %d: the app saw %v, want alice's session %s", round, me, sid)
			}
			v, cleared, ok := r.cookie()
			switch {
			case cleared:
				t.Fatalf("round %d, request %d: the cookie was cleared", round, i)
			case ok:
				next = v
			case expired:
				t.Fatalf("round %d, request %d: served without the refreshed cookie", round, i)
			}
		}
		if next == "" {
			t.Fatalf("round %d: no answer carries the refreshed cookie", round)
		}
		issued++
		st.waitIssued(t, issued)
		if got := st.sessions(t, "alice"); len(got) != 1 || got[0].ID != sid {
			t.Fatalf("round %d: issuer sessions %v, want %s live", round, got, sid)
		}
		cookie = next
	}
	for _, sc := range st.scs {
		if me := whoami(t, sc, cookie); me["sid"] != sid {
			t.Fatalf("after the rounds, on %s: %v", sc.URL(), me)
		}
	}
	st.waitIssued(t, issued)
}

// TestBFF_ReplicaStuckAfterClaim: the replica that claimed a refresh never
// finishes it (its issuer does not answer, as if it had crashed). A
// replica needing the new tokens waits for it at most RefreshWait, then
// fails closed: 401 with the cookie cleared, or the login page, and never
// calls the issuer with the claimed refresh token. When the stuck replica
// gives up, it withdraws its claim and the session refreshes normally.
func TestBFF_ReplicaStuckAfterClaim(t *testing.T) {
	const patience = time.Second
	st := newBFFStack(t, 1, 0, browser.Config{RefreshWait: patience})
	healthy := st.scs[0]

	arrived, release := make(chan struct{}), make(chan struct{})
	var arrivedOnce, releaseOnce sync.Once
	stuckIssuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrivedOnce.Do(func() { close(arrived) })
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":"temporarily_unavailable"}`)
	}))
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(stuckIssuer.Close)
	stuck := st.addReplica(t, browser.Config{IssuerURL: stuckIssuer.URL, RefreshWait: patience})
	t.Cleanup(unblock) // before the replica stops: cleanups run last first

	cookie := st.login(t, healthy, "alice", "")
	sid := whoami(t, stuck, cookie)["sid"]
	st.waitIssued(t, 2)
	st.clock.Add(int64(6 * time.Minute)) // the access token has expired

	stuckReply := make(chan reply, 1)
	go func() { stuckReply <- send(t, stuck, "GET", "/whoami", cookie, nil) }()
	select {
	case <-arrived: // the stuck replica holds the claim
	case <-time.After(10 * time.Second):
		t.Fatal("the stuck replica never tried to refresh")
	}

	for _, page := range []bool{false, true} {
		var accept []string
		if page {
			accept = []string{"Accept", "text/html"}
		}
		start := time.Now()
		r := send(t, healthy, "GET", "/whoami", cookie, nil, accept...)
		took := time.Since(start)
		_, cleared, _ := r.cookie()
		switch {
		case took > patience+3*time.Second:
			t.Fatalf("page %v: answered after %s, want within %s and a margin", page, took, patience)
		case !cleared:
			t.Fatalf("page %v: %d, cookie not cleared", page, r.code)
		case page && (r.code != http.StatusSeeOther || r.header.Get("Location") != "/login"):
			t.Fatalf("page view: %d to %q, want 303 to /login", r.code, r.header.Get("Location"))
		case !page && r.code != http.StatusUnauthorized:
			t.Fatalf("request: %d %s, want 401", r.code, r.body)
		}
	}
	if got := st.issued(t); got != 2 {
		t.Fatalf("the issuer issued %d tokens while the claim was held, want none after the first 2", got)
	}

	unblock()
	if r := <-stuckReply; r.code != http.StatusServiceUnavailable {
		t.Fatalf("the stuck replica, when its issuer fails: %d %s, want 503 (cookie kept)", r.code, r.body)
	}
	r := send(t, healthy, "GET", "/whoami", cookie, nil)
	if _, _, set := r.cookie(); r.code != http.StatusOK || !set {
		t.Fatalf("after the claim was withdrawn: %d %s, refreshed cookie %v; want 200 with one", r.code, r.body, set)
	}
	st.waitIssued(t, 3)
	if got := st.sessions(t, "alice"); len(got) != 1 || got[0].ID != sid {
		t.Fatalf("issuer sessions %v, want %s live", got, sid)
	}
}

// TestBFF_FullBucketFailsRefreshesClosed: with HERALD_BFF filled by a
// verifier credential, a session due for refresh is served with its
// current access token and, once that has expired, answered 503 with the
// cookie kept; no replica refreshes on its own (the issuer issues
// nothing), and revocations still reach the sidecars. When the bucket has
// room again, the session refreshes.
func TestBFF_FullBucketFailsRefreshesClosed(t *testing.T) {
	st := newBFFStack(t, 2, 0, browser.Config{})
	const maxBytes = 64 << 10
	if err := st.conn.EnsureRefreshRelay(t.Context(), bus.RefreshRelayConfig{MaxBytes: maxBytes}); err != nil {
		t.Fatal(err)
	}
	cookie := st.login(t, st.scs[0], "alice", "")
	other := st.login(t, st.scs[0], "bob", "")
	st.waitIssued(t, 4)

	kv, err := bustest.Connect(t, st.bus).RefreshRelay(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var junkKeys []string
	for _, size := range []int{bus.MaxRefreshRelayEntry - 512, 256, 1} { // large entries, then whatever still fits
		junk := make([]byte, size)
		for i := 0; ; i++ {
			key := fmt.Sprintf("junk-%d-%d", size, i)
			if _, err := kv.Create(t.Context(), key, junk); err != nil {
				break
			}
			junkKeys = append(junkKeys, key)
			if i > 2*maxBytes/size {
				t.Fatal("HERALD_BFF never refused a write")
			}
		}
	}

	st.clock.Add(int64(4 * time.Minute)) // due for refresh
	for _, sc := range st.scs {
		r := send(t, sc, "GET", "/whoami", cookie, nil)
		if _, _, set := r.cookie(); r.code != http.StatusOK || set {
			t.Fatalf("due for refresh, bucket full: %d %s, cookie set %v; want 200 with the current token", r.code, r.body, set)
		}
	}
	st.revoke(t, "subject", "bob") // revocations flow while the bucket is full
	bustest.WaitFor(t, 5*time.Second, func() error { return wantRefused(t, st.scs[1], other) })

	st.clock.Add(int64(2 * time.Minute)) // expired
	for _, sc := range st.scs {
		r := send(t, sc, "GET", "/whoami", cookie, nil)
		if _, _, set := r.cookie(); r.code != http.StatusServiceUnavailable || set {
			t.Fatalf("expired, bucket full: %d %s, cookie touched %v; want 503 keeping the cookie", r.code, r.body, set)
		}
	}
	if got := st.issued(t); got != 4 {
		t.Fatalf("the issuer issued %d tokens while the bucket was full, want none after the first 4", got)
	}

	for _, key := range junkKeys {
		if err := kv.Purge(t.Context(), key); err != nil {
			t.Fatal(err)
		}
	}
	r := send(t, st.scs[1], "GET", "/whoami", cookie, nil)
	if _, _, set := r.cookie(); r.code != http.StatusOK || !set {
		t.Fatalf("with room in the bucket again: %d %s, refreshed cookie %v; want 200 with one", r.code, r.body, set)
	}
	st.waitIssued(t, 5)
}
