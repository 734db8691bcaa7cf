package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

func TestKeySet_Put(t *testing.T) {
	k := newTestKeys(t)
	denied := map[string]bool{}
	ks := NewKeySet(func(kid string) bool { return denied[kid] }, nil)

	if err := putKey(t, ks, k.EdJWK); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if key, ok := ks.Get(k.EdKid); !ok || key.Algorithm != "EdDSA" || key.ID != k.EdKid {
		t.Fatalf("Get = %+v, %v", key, ok)
	}
	signed := func(jwk []byte) []byte {
		var m map[string]any
		if err := json.Unmarshal(jwk, &m); err != nil {
			t.Fatal(err)
		}
		// SignKey signs what it is given: build the JWK member by member.
		data, err := bustest.Signer(t).SignKey(bus.JWK{Kty: m["kty"].(string), Crv: m["crv"].(string),
			X: m["x"].(string), Y: fmt.Sprint(m["y"]), Kid: m["kid"].(string), Alg: m["alg"].(string), Use: "sig"})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name string
		kid  string
		data []byte
	}{
		{"stored under another name", "other", signed(k.EsJWK)},
		{"not a JWS", k.EsKid, []byte("{")},
		{"unsigned JWK", k.EsKid, k.EsJWK},
		{"kid not the thumbprint", "x", signed([]byte(strings.Replace(string(k.EsJWK), k.EsKid, "x", 1)))},
		{"algorithm of another key type", k.EsKid, signed([]byte(strings.Replace(string(k.EsJWK), `"ES256"`, `"EdDSA"`, 1)))},
		{"oversized", k.EsKid, []byte(`{"kid":"` + strings.Repeat("a", 8<<10) + `"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ks.Put(tt.kid, tt.data); err == nil {
				t.Fatalf("Put(%s) succeeded", tt.kid)
			}
			if _, ok := ks.Get(tt.kid); ok {
				t.Fatalf("refused key %s is in the set", tt.kid)
			}
		})
	}
	denied[k.EsKid] = true
	if err := putKey(t, ks, k.EsJWK); err == nil {
		t.Fatal("Put of a revoked key succeeded")
	}
	ks.Remove(k.EdKid)
	if got := len(ks.Keys()); got != 0 {
		t.Fatalf("Keys after Remove = %d, want 0", got)
	}
}

// TestKeySet_Watch checks the sidecar's key set follows HERALD_KEYS:
// a key deleted from the bucket stops verifying, a new one starts.
func TestKeySet_Watch(t *testing.T) {
	f := newFixture(t)
	v := f.sc.Verifier()
	kv, err := f.conn.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), f.EdKid); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		if _, ok := f.sc.keys.Get(f.EdKid); ok {
			return errors.New("deleted key still trusted")
		}
		return nil
	})
	_, err = v.Verify(t.Context(), f.EdToken(t, baseClaims(time.Now())))
	checkVerdict(t, err, ErrUnknownKey)
	_, err = v.Verify(t.Context(), f.EsToken(t, baseClaims(time.Now())))
	checkVerdict(t, err, nil)

	// A restarted sidecar trusts exactly what the bucket holds now.
	f.stop()
	if err := kv.Delete(t.Context(), f.EsKid); err != nil {
		t.Fatal(err)
	}
	publishKey(t, f.conn, f.EdKid, f.EdJWK)
	sc, _ := startCore(t, f.conn, f.dir)
	waitReady(t, sc)
	if _, ok := sc.keys.Get(f.EsKid); ok {
		t.Error("key deleted while down is trusted after restart")
	}
	_, err = sc.Verifier().Verify(t.Context(), f.EdToken(t, baseClaims(time.Now())))
	checkVerdict(t, err, nil)
}
