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

// TestLiveSet_RevokeScoped: a revocation limited to one issuer ends the
// requests of that issuer's tokens only; a subject revocation also ends
// those whose token's email it names.
func TestLiveSet_RevokeScoped(t *testing.T) {
	at := time.Now()
	iat := NewNumericDate(at.Add(-time.Second))
	claims := map[string]*Claims{
		"A":      {Issuer: idpIssuer, Subject: "u", SessionID: "s", ClientID: "c", Tenant: "t", Email: "u@x", IssuedAt: iat},
		"B":      {Issuer: otherIssuer, Subject: "u", SessionID: "s", ClientID: "c", Tenant: "t", IssuedAt: iat},
		"Herald": {Issuer: testIssuer, ID: "j", Subject: "u", SessionID: "s", ClientID: "c", Tenant: "t", IssuedAt: iat},
	}
	tests := []struct {
		name string
		rev  bus.Revocation
		want []string
	}{
		{"session of A", bus.Revocation{Kind: bus.KindSession, Value: "s", Issuer: idpIssuer}, []string{"A"}},
		{"subject of B", bus.Revocation{Kind: bus.KindSubject, Value: "u", Issuer: otherIssuer}, []string{"B"}},
		{"client of Herald", bus.Revocation{Kind: bus.KindClient, Value: "c", Issuer: testIssuer}, []string{"Herald"}},
		{"tenant of A", bus.Revocation{Kind: bus.KindTenant, Value: "t", Issuer: idpIssuer}, []string{"A"}},
		{"key of A", bus.Revocation{Kind: bus.KindKey, Value: "k1", Issuer: idpIssuer}, []string{"A"}},
		{"token of Herald", bus.Revocation{Kind: bus.KindToken, Value: "j", Issuer: testIssuer}, []string{"Herald"}},
		{"token of A", bus.Revocation{Kind: bus.KindToken, Value: "j", Issuer: idpIssuer}, nil},
		{"email of A", bus.Revocation{Kind: bus.KindSubject, Value: "u@x", Issuer: idpIssuer}, []string{"A"}},
		{"email", bus.Revocation{Kind: bus.KindSubject, Value: "u@x"}, []string{"A"}},
		{"all of B", bus.Revocation{Kind: bus.KindAll, Issuer: otherIssuer}, []string{"B"}},
		{"all of B, issued after", bus.Revocation{Kind: bus.KindAll, Issuer: otherIssuer, At: at.Add(-time.Hour)}, nil},
		{"session of every issuer", bus.Revocation{Kind: bus.KindSession, Value: "s"}, []string{"A", "B", "Herald"}},
		{"all", bus.Revocation{Kind: bus.KindAll}, []string{"A", "B", "Herald"}},
		{"subject of an unknown issuer", bus.Revocation{Kind: bus.KindSubject, Value: "u", Issuer: "https://x.test"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLiveSet()
			ctxs := map[string]context.Context{}
			for name, c := range claims {
				ctx, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				ctxs[name] = ctx
				defer l.remove(l.add(c, "k1", cancel))
			}
			rev := tt.rev
			if rev.At.IsZero() {
				rev.At = at
			}
			if n := l.Revoke([]*bus.Revocation{&rev}); n != len(tt.want) {
				t.Fatalf("revoke ended %d requests, want %v", n, tt.want)
			}
			for _, name := range tt.want {
				if !errors.Is(context.Cause(ctxs[name]), ErrRevoked) {
					t.Fatalf("%s's request: cause %v, want ErrRevoked", name, context.Cause(ctxs[name]))
				}
			}
		})
	}
}
