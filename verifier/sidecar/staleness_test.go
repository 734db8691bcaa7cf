package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/verifier"
)

// testMaxStaleness keeps the staleness tests fast.
const testMaxStaleness = 500 * time.Millisecond

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// restartable is a real NATS server that a test stops and starts again on
// the same port and store, so clients reconnect to it.
type restartable struct {
	t    *testing.T
	dir  string
	addr string
	srv  *natsserver.Server
}

func newRestartable(t *testing.T) *restartable {
	r := &restartable{t: t, dir: filepath.Join(t.TempDir(), "nats"), addr: freeAddr(t)}
	r.start()
	return r
}

func (r *restartable) start() { r.srv = bustest.RunServerIn(r.t, r.dir, r.addr) }
func (r *restartable) stop()  { r.srv.Shutdown() }

// TestSidecar_StaleDeny cuts a sidecar off from the bus by stopping the real
// NATS server: past max staleness it must report stale and not ready and
// refuse verdicts (503); once the server is back it must reconnect, apply
// what was revoked meanwhile and be ready again, by itself.
func TestSidecar_StaleDeny(t *testing.T) {
	ns := newRestartable(t)
	conn := bustest.Setup(t, ns.srv, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), MaxStaleness: testMaxStaleness})
	waitReady(t, sc)
	c := baseClaims(time.Now().Add(-time.Second))
	tok := k.EdToken(t, c)
	if resp, body := get(t, sc.URL()+"/v1/verify", tok); resp.StatusCode != 200 {
		t.Fatalf("verify = %d %s, want 200", resp.StatusCode, body)
	}

	ns.stop()
	waitStatus(t, sc, "stale, not ready, no verdicts", func(st Status) bool { return st.Stale && !st.Ready && !st.Verdicts })
	resp, body := get(t, sc.URL()+"/v1/verify", tok)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("verify while stale = %d %s, want 503 with Retry-After", resp.StatusCode, body)
	}
	if resp, _ := get(t, sc.URL()+"/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while stale = %d, want 503", resp.StatusCode)
	}
	if _, err := sc.Verifier().Verify(t.Context(), tok); !errors.Is(err, verifier.ErrNotReady) {
		t.Fatalf("Verify while stale = %v, want verifier.ErrNotReady", err)
	}

	// The bus comes back, with a revocation: the sidecar reconnects,
	// becomes ready and applies it, by itself. (That it applies what was
	// published while it was cut off before its next verdict is
	// TestFollower_ProbeResync.)
	ns.start()
	seq := publishWhenBack(t, conn, bus.KindSession, c["sid"].(string))
	waitReady(t, sc)
	waitApplied(t, sc, seq)
	resp, body = get(t, sc.URL()+"/v1/verify", tok)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("verify after recovery = %d %s, want 401 revoked", resp.StatusCode, body)
	}
	// And it keeps following: a new revocation still arrives.
	other := baseClaims(time.Now().Add(-time.Second))
	revoke(t, conn, sc, bus.KindToken, other["jti"].(string), time.Now())
	if _, err := sc.Verifier().Verify(t.Context(), k.EdToken(t, other)); !errors.Is(err, verifier.ErrRevoked) {
		t.Fatalf("Verify after a new revocation = %v, want verifier.ErrRevoked", err)
	}
}

// TestSidecar_StaleAllow is the fail-open policy: while stale the sidecar
// keeps answering from its last state, says so in a header and in status,
// and is not ready.
func TestSidecar_StaleAllow(t *testing.T) {
	ns := newRestartable(t)
	conn := bustest.Setup(t, ns.srv, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), MaxStaleness: testMaxStaleness, OnStale: StaleAllow})
	waitReady(t, sc)
	revoked := baseClaims(time.Now().Add(-time.Second))
	revoke(t, conn, sc, bus.KindToken, revoked["jti"].(string), time.Now())
	tok := k.EdToken(t, baseClaims(time.Now().Add(-time.Second)))

	ns.stop()
	waitStatus(t, sc, "stale but giving verdicts", func(st Status) bool { return st.Stale && !st.Ready && st.Verdicts })
	resp, body := get(t, sc.URL()+"/v1/verify", tok)
	if resp.StatusCode != 200 || resp.Header.Get(verifier.HeaderStale) != "true" {
		t.Fatalf("verify while stale = %d %s (%s %q), want 200 marked stale", resp.StatusCode, body, verifier.HeaderStale, resp.Header.Get(verifier.HeaderStale))
	}
	if resp, _ := get(t, sc.URL()+"/v1/verify", k.EdToken(t, revoked)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked token while stale = %d, want 401 from the last state", resp.StatusCode)
	}
	if resp, _ := get(t, sc.URL()+"/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while stale = %d, want 503", resp.StatusCode)
	}

	ns.start()
	waitReady(t, sc)
	if resp, _ := get(t, sc.URL()+"/v1/verify", tok); resp.StatusCode != 200 || resp.Header.Get(verifier.HeaderStale) != "" {
		t.Fatalf("verify after recovery = %d, %s %q; want 200 without it", resp.StatusCode, verifier.HeaderStale, resp.Header.Get(verifier.HeaderStale))
	}
}

func waitStatus(t *testing.T, sc *Sidecar, what string, ok func(Status) bool) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := sc.Status(); !ok(st) {
			return fmt.Errorf("want %s; status %+v", what, st)
		}
		return nil
	})
}

// publishWhenBack publishes a revocation once conn has reconnected.
func publishWhenBack(t *testing.T, conn *bus.Conn, kind bus.Kind, value string) uint64 {
	t.Helper()
	var seq uint64
	bustest.WaitFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		at := time.Now()
		var err error
		seq, err = conn.Publish(ctx, &bus.Event{
			ID: bus.NewID(), Type: bus.TypeRevocation, Time: at, Actor: "test",
			Revocation: &bus.Revocation{Kind: kind, Value: value, At: at, Until: at.Add(20 * time.Minute)},
		})
		return err
	})
	return seq
}
