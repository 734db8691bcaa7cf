package federation

import (
	"encoding/json"
	"testing"

	"github.com/heraldsec/herald/bus"
)

// FuzzParse holds the trust file reader to its contract on any input: an
// error, or issuers that validate and read back the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"issuers":[{"issuer":"https://a.example","audience":["x"],"claims":{"tenant":"tid"},"max_token_lifetime":"2h","tokens":false,"ssf":true,"events":{"urn:x":"record"}}]}`))
	f.Add([]byte(`{"issuers":[{"issuer":"http://127.0.0.1:1/x"},{"issuer":"https://b.example"}]}`))
	f.Add([]byte(`{"issuers":[{"issuer":"https://a.example","issuer":"https://a.example"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		issuers, err := Parse(b)
		if err != nil {
			return
		}
		for _, is := range issuers {
			if err := is.Validate(); err != nil {
				t.Fatalf("parsed issuer does not validate: %v", err)
			}
		}
		out, err := json.Marshal(map[string]any{"issuers": issuers})
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("round trip %s: %v", out, err)
		}
		if len(again) != len(issuers) {
			t.Fatalf("round trip: %d issuers, want %d", len(again), len(issuers))
		}
	})
}

// FuzzParseJWKS holds the key set reader to its contract on any input:
// every key kept has a kid, an accepted algorithm and a key that
// bus.JWK.ExternalPublicKey accepts; at most MaxKeys.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"b","use":"sig"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"c","d":"x"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := parseJWKS(b, bus.ExternalAlgorithms())
		if err != nil {
			return
		}
		if len(ks.keys) == 0 || len(ks.keys) > MaxKeys {
			t.Fatalf("%d keys", len(ks.keys))
		}
		for _, k := range ks.keys {
			if k.jwk.Kid == "" || k.pub == nil {
				t.Fatalf("key %+v", k.jwk)
			}
			if _, err := k.jwk.ExternalPublicKey(); err != nil {
				t.Fatalf("key %+v: %v", k.jwk, err)
			}
		}
	})
}
