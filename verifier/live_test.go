package verifier

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
)

func TestLiveSet_Revoke(t *testing.T) {
	at := time.Now()
	claims := &Claims{
		ID: "j", SessionID: "s", Subject: "u", ClientID: "c", Tenant: "t",
		IssuedAt: NewNumericDate(at.Add(-time.Second)),
	}
	tests := []struct {
		name  string
		rev   bus.Revocation
		match bool
	}{
		{"token", bus.Revocation{Kind: bus.KindToken, Value: "j"}, true},
		{"other token", bus.Revocation{Kind: bus.KindToken, Value: "x"}, false},
		{"session", bus.Revocation{Kind: bus.KindSession, Value: "s"}, true},
		{"subject", bus.Revocation{Kind: bus.KindSubject, Value: "u"}, true},
		{"subject, issued after", bus.Revocation{Kind: bus.KindSubject, Value: "u", At: at.Add(-2 * time.Second)}, false},
		{"client", bus.Revocation{Kind: bus.KindClient, Value: "c"}, true},
		{"tenant", bus.Revocation{Kind: bus.KindTenant, Value: "t"}, true},
		{"key", bus.Revocation{Kind: bus.KindKey, Value: "k1"}, true},
		{"other key", bus.Revocation{Kind: bus.KindKey, Value: "k2"}, false},
		{"all", bus.Revocation{Kind: bus.KindAll}, true},
		{"all, issued after", bus.Revocation{Kind: bus.KindAll, At: at.Add(-time.Hour)}, false},
		{"session value as subject", bus.Revocation{Kind: bus.KindSubject, Value: "s"}, false},
		{"bulk sessions", bus.Revocation{Kind: bus.KindSession, Values: []string{"a", "s", "b"}}, true},
		{"bulk tokens", bus.Revocation{Kind: bus.KindToken, Values: []string{"a", "b"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLiveSet()
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			r := l.add(claims, "k1", cancel)
			rev := tt.rev
			if rev.At.IsZero() {
				rev.At = at
			}
			n := l.Revoke([]*bus.Revocation{&rev})
			if got := n == 1; got != tt.match {
				t.Fatalf("revoke ended %d requests, want match %v", n, tt.match)
			}
			if tt.match && !errors.Is(context.Cause(ctx), ErrRevoked) {
				t.Fatalf("cause = %v, want ErrRevoked", context.Cause(ctx))
			}
			if !tt.match && ctx.Err() != nil {
				t.Fatal("unmatched request canceled")
			}
			l.remove(r)
			if l.Len() != 0 || len(l.byKey) != 0 {
				t.Fatalf("after remove: %d tracked, %d index keys", l.Len(), len(l.byKey))
			}
		})
	}
}
