package verifier

import (
	"context"
	"fmt"
	"strings"
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
		entries = append(entries, entryFor(r, r.Value))
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
		{"EdDSA", jwt.SigningMethodEdDSA, k.EdKid, k.EdJWK, k.EdToken},
		{"ES256", jwt.SigningMethodES256, k.EsKid, k.EsJWK, k.EsToken},
	}
}

// BenchmarkVerify measures the full hot path: size and header checks,
// signature, claims, and denylist lookups against ~10k unrelated entries.
// The plain cases run with the fast-path cache disabled, so every call
// verifies the signature; the -cached cases present the same token again
// and again, as a client does, so every call after the first is a cache
// hit followed by the denylist check.
func BenchmarkVerify(b *testing.B) {
	k := newTestKeys(b)
	db := benchDenylist(b, 10_000)
	for _, bc := range benchCases(k) {
		for _, cached := range []bool{false, true} {
			name := bc.name
			cfg := Config{Issuer: testIssuer, Audience: testAudience, CacheSize: -1}
			if cached {
				name += "-cached"
				cfg.CacheSize = 0 // the default
			}
			b.Run(name, func(b *testing.B) {
				keys := NewKeySet(nil, nil)
				if err := putKey(b, keys, bc.jwk); err != nil {
					b.Fatal(err)
				}
				v, err := New(cfg, keys, db, nil)
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
}

// BenchmarkVerifyCachedParallel is the cached path from every core at once,
// with many distinct tokens, as a busy sidecar sees it.
func BenchmarkVerifyCachedParallel(b *testing.B) {
	k := newTestKeys(b)
	db := benchDenylist(b, 10_000)
	keys := NewKeySet(nil, nil)
	if err := putKey(b, keys, k.EdJWK); err != nil {
		b.Fatal(err)
	}
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience}, keys, db, nil)
	if err != nil {
		b.Fatal(err)
	}
	toks := make([]string, 1024)
	for i := range toks {
		toks[i] = k.EdToken(b, baseClaims(time.Now()))
		if _, err := v.Verify(b.Context(), toks[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := v.Verify(context.Background(), toks[i%len(toks)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkDenylistCheck measures the denylist part of every Verify: the
// lookups of one token's jti, sid, kid, sub, client, tenant and "all",
// from memory, against denylists of 10k and 1M unrelated entries.
//
// The scoped case adds revocations limited to the token's issuer (none
// matching it): every kind is then looked up twice, for every issuer and
// for the token's.
func BenchmarkDenylistCheck(b *testing.B) {
	k := newTestKeys(b)
	for _, n := range []int{10_000, 1_000_000, -10_000} {
		name := fmt.Sprintf("entries=%d", n)
		if n < 0 {
			n = -n
			name = fmt.Sprintf("entries=%d,scoped", n)
		}
		scoped := strings.HasSuffix(name, "scoped")
		b.Run(name, func(b *testing.B) {
			db := benchDenylist(b, n)
			if scoped {
				now := time.Now()
				r := &bus.Revocation{Kind: bus.KindSubject, Value: "unrelated", At: now, Until: now.Add(time.Hour), Issuer: testIssuer}
				if err := db.Apply(2, entriesFor(nil, r)); err != nil {
					b.Fatal(err)
				}
			}
			v, err := New(Config{Issuer: testIssuer, Audience: testAudience}, NewKeySet(nil, nil), db, nil)
			if err != nil {
				b.Fatal(err)
			}
			var c Claims
			if _, err := jwtParseUnverified(k.EdToken(b, baseClaims(time.Now())), &c); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := v.checkDenylist(&c, k.EdKid); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// jwtParseUnverified decodes a token's claims without checking anything.
func jwtParseUnverified(tok string, c *Claims) (*jwt.Token, error) {
	t, _, err := jwt.NewParser().ParseUnverified(tok, c)
	return t, err
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
