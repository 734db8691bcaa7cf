package bus_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldsec/herald/bus"
)

// fixedJWKs returns the HERALD_KEYS form of an Ed25519 and a P-256 key
// derived from constant seeds, so that the committed corpus holds them.
func fixedJWKs(tb testing.TB) (ed, es bus.JWK) {
	tb.Helper()
	seed := sha256.Sum256([]byte("herald FuzzParseJWK Ed25519"))
	d := sha256.Sum256([]byte("herald FuzzParseJWK P-256"))
	ek, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d[:])
	if err != nil {
		tb.Fatal(err)
	}
	if ed, err = bus.NewJWK(ed25519.NewKeyFromSeed(seed[:]).Public()); err != nil {
		tb.Fatal(err)
	}
	if es, err = bus.NewJWK(&ek.PublicKey); err != nil {
		tb.Fatal(err)
	}
	return ed, es
}

// jwkSeeds returns FuzzParseJWK's seeds: the two valid keys and what a
// forged or careless HERALD_KEYS entry could hold.
func jwkSeeds(tb testing.TB) map[string][]byte {
	ed, es := fixedJWKs(tb)
	enc := func(k bus.JWK) []byte {
		b, err := json.Marshal(k)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	edJSON, esJSON := string(enc(ed)), string(enc(es))
	set := func(k bus.JWK, mut func(k *bus.JWK)) []byte { mut(&k); return enc(k) }
	return map[string][]byte{
		"ed25519":               []byte(edJSON),
		"p256":                  []byte(esJSON),
		"kid-not-thumbprint":    set(ed, func(k *bus.JWK) { k.Kid = "other" }),
		"alg-es256-on-okp":      set(ed, func(k *bus.JWK) { k.Alg = bus.AlgES256 }),
		"alg-eddsa-on-ec":       set(es, func(k *bus.JWK) { k.Alg = bus.AlgEdDSA }),
		"alg-hs256":             set(ed, func(k *bus.JWK) { k.Alg = "HS256" }),
		"kty-oct":               []byte(`{"kty":"oct","k":"c2VjcmV0","alg":"HS256","kid":"x"}`),
		"ec-missing-y":          set(es, func(k *bus.JWK) { k.Y = "" }),
		"ec-point-not-on-curve": set(es, func(k *bus.JWK) { k.X, k.Y = strings.Repeat("A", 42)+"E", strings.Repeat("A", 42)+"E" }),
		"ec-p384":               set(es, func(k *bus.JWK) { k.Crv = "P-384" }),
		"okp-x448":              set(ed, func(k *bus.JWK) { k.Crv = "X25519" }),
		"x-padded":              set(ed, func(k *bus.JWK) { k.X += "=" }),
		"x-short":               set(ed, func(k *bus.JWK) { k.X = k.X[:40] }),
		"x-standard-alphabet":   []byte(strings.Replace(edJSON, `"x":"`, `"x":"+/`, 1)),
		"duplicate-kty":         []byte(strings.Replace(esJSON, `{`, `{"kty":"OKP",`, 1)),
		"upper-case-members":    []byte(strings.Replace(edJSON, `"kty"`, `"KTY"`, 1)),
		"invalid-utf8":          []byte(strings.Replace(edJSON, `"use":"sig"`, "\"use\":\"s\xffg\"", 1)),
		"oversized":             []byte(strings.Replace(edJSON, `"use":"sig"`, `"use":"`+strings.Repeat("s", bus.MaxKeySize)+`"`, 1)),
		"empty":                 {},
		"null":                  []byte("null"),
		"array":                 []byte("[" + edJSON + "]"),
		"private-key-member":    []byte(strings.Replace(edJSON, `{`, `{"d":"`+strings.Repeat("A", 43)+`",`, 1)),
	}
}

// FuzzParseJWK feeds arbitrary HERALD_KEYS entries to ParseJWK. None may
// panic, and a key it accepts is consistent (algorithm, key type and curve
// agree; the kid is the RFC 7638 thumbprint) and canonical: NewJWK of the
// parsed key gives back the same members, so one key has one kid.
func FuzzParseJWK(f *testing.F) {
	for _, seed := range jwkSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, pub, err := bus.ParseJWK(data)
		if err != nil {
			if pub != nil {
				t.Fatalf("ParseJWK returned a key with its error %v", err)
			}
			return
		}
		if len(data) > bus.MaxKeySize {
			t.Fatalf("accepted %d bytes, over MaxKeySize", len(data))
		}
		switch p := pub.(type) {
		case ed25519.PublicKey:
			if k.Alg != bus.AlgEdDSA || len(p) != ed25519.PublicKeySize {
				t.Fatalf("Ed25519 key of %d bytes with alg %q", len(p), k.Alg)
			}
		case *ecdsa.PublicKey:
			if k.Alg != bus.AlgES256 || p.Curve != elliptic.P256() {
				t.Fatalf("ECDSA key on %v with alg %q", p.Curve, k.Alg)
			}
		default:
			t.Fatalf("accepted a key of type %T", pub)
		}
		if k.Kid != k.Thumbprint() {
			t.Fatalf("kid %q is not the thumbprint %q", k.Kid, k.Thumbprint())
		}
		again, err := bus.NewJWK(pub)
		if err != nil {
			t.Fatalf("NewJWK of an accepted key: %v", err)
		}
		if again.Kty != k.Kty || again.Crv != k.Crv || again.X != k.X || again.Y != k.Y || again.Kid != k.Kid || again.Alg != k.Alg {
			t.Fatalf("accepted key is not canonical:\n got %+v\nwant %+v", k, again)
		}
	})
}

// decodeSeeds are events an attacker who can publish on the bus might
// send, for FuzzDecode's committed corpus (beside the golden files).
func decodeSeeds() map[string][]byte {
	rev := func(body string) []byte {
		return []byte(`{"id":"01a208046c5d48662d98bb86c8034001","type":"revocation","time":"2026-11-23T10:47:17Z","actor":"x",` +
			`"revocation":{` + body + `,"at":"2026-11-23T10:47:17Z","until":"2026-11-23T11:02:47Z"}}`)
	}
	return map[string][]byte{
		"duplicate-kind":      rev(`"kind":"session","value":"s","kind":"all"`),
		"case-variant-kind":   rev(`"kind":"session","value":"s","KIND":"all"`),
		"kind-number":         rev(`"kind":7`),
		"value-invalid-utf8":  rev("\"kind\":\"subject\",\"value\":\"al\xffice\""),
		"bulk-empty-value":    rev(`"kind":"token","values":["a",""]`),
		"until-before-at":     []byte(strings.Replace(string(rev(`"kind":"all"`)), "11:02:47", "09:00:00", 1)),
		"two-bodies":          []byte(strings.Replace(string(rev(`"kind":"all"`)), `"revocation":`, `"key":{"kid":"k","alg":"EdDSA"},"revocation":`, 1)),
		"nested-deep":         []byte(`{"id":"x","type":"revocation","x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`),
		"trailing-object":     append(rev(`"kind":"all"`), []byte(`{}`)...),
		"huge-time-year":      []byte(strings.Replace(string(rev(`"kind":"all"`)), "2026-11-23T10:47:17Z\",\"until", "9999-12-31T23:59:59Z\",\"until", 1)),
		"key-published-empty": []byte(`{"id":"1","type":"key.published","time":"2026-11-23T10:47:17Z","actor":"x","key":{"kid":"","alg":"EdDSA"}}`),
	}
}

// TestFuzzCorpora rewrites the committed seed corpora of this package's
// fuzz targets from jwkSeeds and decodeSeeds: go test -run
// TestFuzzCorpora -update ./bus.
func TestFuzzCorpora(t *testing.T) {
	if !*update {
		t.Skip("rewrites testdata/fuzz with -update")
	}
	writeCorpus(t, "FuzzParseJWK", jwkSeeds(t))
	writeCorpus(t, "FuzzDecode", decodeSeeds())
}

// writeCorpus replaces testdata/fuzz/<target> with seeds in the format of
// go test's fuzzing engine: one []byte argument per file.
func writeCorpus(tb testing.TB, target string, seeds map[string][]byte) {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.RemoveAll(dir); err != nil {
		tb.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, seed := range seeds {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(seed)))
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}
