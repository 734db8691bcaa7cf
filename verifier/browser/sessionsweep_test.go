package browser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/heraldsec/herald/verifier"
)

func testBFF(cfg Config) *Sessions {
	return &Sessions{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		handles: make(map[string]*handleState), flights: make(map[string]*flight), served: make(map[string]*servedSession)}
}

func testClaims(now time.Time) *verifier.Claims {
	return &verifier.Claims{IssuedAt: verifier.NewNumericDate(now), ExpiresAt: verifier.NewNumericDate(now.Add(5 * time.Minute))}
}

// TestBFF_RequestCutAtMaxAge: a request a session admitted (a stream) ends
// when the session reaches its maximum age, by the clock, with no sweep
// and no request.
func TestBFF_RequestCutAtMaxAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := testBFF(Config{MaxAge: 20 * time.Second, Idle: 20 * time.Second, Now: time.Now})
		now := time.Now()
		st := &cookieState{Handle: newHandle(), Gen: 1, Session: "sid", Refresh: "hrt_x", Created: now.Unix(), Seen: now.Unix()}
		ctx, done := b.admit(t.Context(), st, testClaims(now))
		defer done()
		time.Sleep(19 * time.Second)
		if ctx.Err() != nil {
			t.Fatal("cut before the maximum age")
		}
		time.Sleep(2 * time.Second)
		if !errors.Is(context.Cause(ctx), errTooOld) {
			t.Fatalf("after the maximum age: cause %v, want %v", context.Cause(ctx), errTooOld)
		}
	})
}

// TestBFF_ServedBounded: the sessions a replica remembers for the sweep
// are bounded; a session beyond the bound is still served, and its
// requests still end at its maximum age.
func TestBFF_ServedBounded(t *testing.T) {
	b := testBFF(Config{MaxAge: time.Hour, Idle: time.Hour, Now: time.Now})
	now := time.Now()
	c := testClaims(now)
	for i := range maxServed + 10 {
		st := &cookieState{Handle: fmt.Sprint("h", i), Gen: 1, Session: "sid", Refresh: "hrt_x", Created: now.Unix(), Seen: now.Unix()}
		ctx, done := b.admit(t.Context(), st, c)
		if _, ok := ctx.Deadline(); !ok {
			t.Fatalf("request %d has no deadline", i)
		}
		done()
	}
	if len(b.served) != maxServed {
		t.Fatalf("%d sessions remembered, want at most %d", len(b.served), maxServed)
	}
}
