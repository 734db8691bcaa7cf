package verifier

import (
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// benchDenylist returns an in-memory denylist holding n revocations of
// every kind that match none of the benchmark's tokens.
func benchDenylist(b *testing.B, n int) *store.DB {
	b.Helper()
	db, err := store.Open("denylist", store.Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	now := time.Now()
	kinds := []bus.Kind{bus.KindToken, bus.KindSession, bus.KindSubject, bus.KindClient, bus.KindTenant, bus.KindKey}
	entries := make([]store.Entry, 0, n)
	for i := range n {
		r := &bus.Revocation{
			Kind: kinds[i%len(kinds)], Value: fmt.Sprintf("unrelated-%d", i),
			At: now, Until: now.Add(time.Hour),
		}
		entries = append(entries, entryFor(r))
	}
	if err := db.Apply(1, entries); err != nil {
		b.Fatal(err)
	}
	if got := db.Len(); got != n {
		b.Fatalf("denylist holds %d entries, want %d", got, n)
	}
	return db
}

type benchCase struct {
	name   string
	method jwt.SigningMethod
	kid    string
	jwk    []byte
	token  func(tb testing.TB, claims map[string]any) string
}

func benchCases(k *testKeys) []benchCase {
	return []benchCase{
		{"EdDSA", jwt.SigningMethodEdDSA, k.edKid, k.edJWK, k.edToken},
		{"ES256", jwt.SigningMethodES256, k.esKid, k.esJWK, k.esToken},
	}
}

// BenchmarkVerify measures the full hot path: size and header checks,
// signature, claims, and denylist lookups against ~10k unrelated entries.
func BenchmarkVerify(b *testing.B) {
	k := newTestKeys(b)
	db := benchDenylist(b, 10_000)
	for _, bc := range benchCases(k) {
		b.Run(bc.name, func(b *testing.B) {
			keys := NewKeySet(nil, nil)
			if err := keys.Put(bc.kid, bc.jwk); err != nil {
				b.Fatal(err)
			}
			v, err := New(Config{Issuer: testIssuer, Audience: testAudience}, keys, db, nil)
			if err != nil {
				b.Fatal(err)
			}
			tok := bc.token(b, baseClaims(time.Now()))
			ctx := b.Context()
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawParse is the baseline: golang-jwt alone, with the same key
// and token, so the cost Herald's checks add is the difference.
func BenchmarkRawParse(b *testing.B) {
	k := newTestKeys(b)
	for _, bc := range benchCases(k) {
		b.Run(bc.name, func(b *testing.B) {
			_, pub, err := bus.ParseJWK(bc.jwk)
			if err != nil {
				b.Fatal(err)
			}
			p := jwt.NewParser(jwt.WithValidMethods([]string{bc.method.Alg()}))
			keyFunc := func(*jwt.Token) (any, error) { return pub, nil }
			tok := bc.token(b, baseClaims(time.Now()))
			if _, err := p.ParseWithClaims(tok, jwt.MapClaims{}, keyFunc); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.ParseWithClaims(tok, jwt.MapClaims{}, keyFunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
