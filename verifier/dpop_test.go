package verifier

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
)

func TestCheckDPoP(t *testing.T) {
	k := newDPoPKey(t)
	other := newDPoPKey(t)
	const url = "https://api.example/v1/orders"
	tests := []struct {
		name  string
		proof func() string
		ok    bool
	}{
		{"fresh proof", func() string { return k.Proof(t, "GET", url, "tok", nil) }, true},
		{"query and fragment ignored", func() string { return k.Proof(t, "GET", url+"?a=1#f", "tok", nil) }, true},
		{"host case ignored", func() string { return k.Proof(t, "GET", "https://API.example/v1/orders", "tok", nil) }, true},
		{"other method", func() string { return k.Proof(t, "POST", url, "tok", nil) }, false},
		{"other URL", func() string { return k.Proof(t, "GET", "https://api.example/v1/admin", "tok", nil) }, false},
		{"other scheme", func() string { return k.Proof(t, "GET", "http://api.example/v1/orders", "tok", nil) }, false},
		{"for another token", func() string { return k.Proof(t, "GET", url, "other-token", nil) }, false},
		{"without ath", func() string { return k.Proof(t, "GET", url, "", nil) }, false},
		{"old", func() string {
			return k.Proof(t, "GET", url, "tok", func(_, c map[string]any) { c["iat"] = time.Now().Add(-2 * DPoPMaxAge).Unix() })
		}, false},
		{"from the future", func() string {
			return k.Proof(t, "GET", url, "tok", func(_, c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() })
		}, false},
		{"no jti", func() string { return k.Proof(t, "GET", url, "tok", func(_, c map[string]any) { delete(c, "jti") }) }, false},
		{"typ JWT", func() string { return k.Proof(t, "GET", url, "tok", func(h, _ map[string]any) { h["typ"] = "JWT" }) }, false},
		{"alg none", func() string { return k.Proof(t, "GET", url, "tok", func(h, _ map[string]any) { h["alg"] = "none" }) }, false},
		{"private key in jwk", func() string {
			return k.Proof(t, "GET", url, "tok", func(h, _ map[string]any) {
				h["jwk"] = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": k.JWK["x"], "d": "AAAA"}
			})
		}, false},
		{"signed by another key", func() string {
			p := other.Proof(t, "GET", url, "tok", nil)
			q := k.Proof(t, "GET", url, "tok", nil)
			return q[:len(q)-86] + p[len(p)-86:]
		}, false},
		{"garbage", func() string { return "a.b.c" }, false},
		{"empty", func() string { return "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkProof(t, tt.proof(), url, k.JKT, tt.ok) })
	}
}

// checkProof checks a proof for GET url with access token "tok": accepted
// as a proof by the key of thumbprint jkt when ok, refused otherwise.
func checkProof(t *testing.T, proof, url, jkt string, ok bool) {
	t.Helper()
	p, err := CheckDPoP(proof, "GET", url, "tok", time.Now(), NewReplayCache(100))
	if ok {
		if err != nil || p.JKT != jkt {
			t.Fatalf("CheckDPoP = %v, %v; want jkt %s", p, err, jkt)
		}
		return
	}
	if !errors.Is(err, ErrDPoPProof) {
		t.Fatalf("CheckDPoP err = %v, want ErrDPoPProof", err)
	}
}

func TestCheckDPoP_Replay(t *testing.T) {
	k := newDPoPKey(t)
	cache := NewReplayCache(100)
	p := k.Proof(t, "GET", "https://a.example/x", "tok", nil)
	if _, err := CheckDPoP(p, "GET", "https://a.example/x", "tok", time.Now(), cache); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckDPoP(p, "GET", "https://a.example/x", "tok", time.Now(), cache); !errors.Is(err, ErrDPoPProof) {
		t.Fatalf("replayed proof: %v, want refused", err)
	}
	// A full cache forgets its oldest proof rather than refuse a newer one.
	full := NewReplayCache(1)
	old := k.Proof(t, "GET", "https://a.example/x", "tok", func(_, c map[string]any) { c["iat"] = time.Now().Add(-10 * time.Second).Unix() })
	if _, err := CheckDPoP(old, "GET", "https://a.example/x", "tok", time.Now(), full); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckDPoP(newDPoPKey(t).Proof(t, "GET", "https://a.example/x", "tok", nil), "GET", "https://a.example/x", "tok", time.Now(), full); err != nil {
		t.Fatalf("a full replay cache refused a newer proof: %v", err)
	}
	if _, err := CheckDPoP(old, "GET", "https://a.example/x", "tok", time.Now(), full); !errors.Is(err, ErrDPoPProof) {
		t.Fatalf("a forgotten proof replayed: %v, want refused", err)
	}
}

// TestCheckDPoP_DuplicateMembers: a proof whose header, claims or key
// repeats a member, directly, escaped or in another case, is refused.
// encoding/json keeps the last duplicate and matches names without case,
// so each of these proofs is accepted without the check.
func TestCheckDPoP_DuplicateMembers(t *testing.T) {
	k := newDPoPKey(t)
	const url = "https://api.example/v1/orders"
	sum := sha256.Sum256([]byte("tok"))
	ath := base64.RawURLEncoding.EncodeToString(sum[:])
	jwk := fmt.Sprintf(`{"kty":"OKP","crv":"Ed25519","x":%q}`, k.JWK["x"])
	header := fmt.Sprintf(`{"typ":"dpop+jwt","alg":"EdDSA","jwk":%s}`, jwk)
	claims := func(extra string) string {
		return fmt.Sprintf(`{"jti":%q,"htm":"GET","htu":%q,"iat":%d,"ath":%q%s}`, bus.NewID(), url, time.Now().Unix(), ath, extra)
	}
	tests := []struct {
		name           string
		header, claims string
		ok             bool
	}{
		{"plain", header, claims(""), true},
		{"duplicate htm", header, strings.Replace(claims(""), `"htm":"GET"`, `"htm":"POST","htm":"GET"`, 1), false},
		{"case-variant htm", header, strings.Replace(claims(""), `"htm":"GET"`, `"HTM":"GET"`, 1), false},
		{"escaped duplicate jti", header, claims(`,"\u006ati":"other"`), false},
		{"duplicate typ", `{"typ":"JWT",` + header[1:], claims(""), false},
		{"case-variant alg", `{"Alg":"none",` + header[1:], claims(""), false},
		{"duplicate x in jwk", strings.Replace(header, `"x":`, `"x":"AAAA","x":`, 1), claims(""), false},
		{"case-variant kty in jwk", strings.Replace(header, `{"kty"`, `{"KTY":"EC","kty"`, 1), claims(""), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkProof(t, k.RawProof(t, tt.header, tt.claims), url, k.JKT, tt.ok) })
	}
}
