package verifier

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
)

// dpopKey is a client's DPoP key.
type dpopKey struct {
	priv ed25519.PrivateKey
	jwk  map[string]string
	jkt  string
}

func newDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	j, err := bus.NewJWK(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{priv: priv, jwk: map[string]string{"kty": j.Kty, "crv": j.Crv, "x": j.X}, jkt: j.Kid}
}

// proof signs a DPoP proof; edit changes header or claims before signing.
func (k *dpopKey) proof(t testing.TB, method, url, accessToken string, edit func(h, c map[string]any)) string {
	t.Helper()
	h := map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": k.jwk}
	c := map[string]any{"jti": bus.NewID(), "htm": method, "htu": url, "iat": time.Now().Unix()}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if edit != nil {
		edit(h, c)
	}
	hb, _ := json.Marshal(h)
	cb, _ := json.Marshal(c)
	return k.rawProof(t, string(hb), string(cb))
}

func TestCheckDPoP(t *testing.T) {
	k := newDPoPKey(t)
	other := newDPoPKey(t)
	const url = "https://api.example/v1/orders"
	tests := []struct {
		name  string
		proof func() string
		ok    bool
	}{
		{"fresh proof", func() string { return k.proof(t, "GET", url, "tok", nil) }, true},
		{"query and fragment ignored", func() string { return k.proof(t, "GET", url+"?a=1#f", "tok", nil) }, true},
		{"host case ignored", func() string { return k.proof(t, "GET", "https://API.example/v1/orders", "tok", nil) }, true},
		{"other method", func() string { return k.proof(t, "POST", url, "tok", nil) }, false},
		{"other URL", func() string { return k.proof(t, "GET", "https://api.example/v1/admin", "tok", nil) }, false},
		{"other scheme", func() string { return k.proof(t, "GET", "http://api.example/v1/orders", "tok", nil) }, false},
		{"for another token", func() string { return k.proof(t, "GET", url, "other-token", nil) }, false},
		{"without ath", func() string { return k.proof(t, "GET", url, "", nil) }, false},
		{"old", func() string {
			return k.proof(t, "GET", url, "tok", func(_, c map[string]any) { c["iat"] = time.Now().Add(-2 * DPoPMaxAge).Unix() })
		}, false},
		{"from the future", func() string {
			return k.proof(t, "GET", url, "tok", func(_, c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() })
		}, false},
		{"no jti", func() string { return k.proof(t, "GET", url, "tok", func(_, c map[string]any) { delete(c, "jti") }) }, false},
		{"typ JWT", func() string { return k.proof(t, "GET", url, "tok", func(h, _ map[string]any) { h["typ"] = "JWT" }) }, false},
		{"alg none", func() string { return k.proof(t, "GET", url, "tok", func(h, _ map[string]any) { h["alg"] = "none" }) }, false},
		{"private key in jwk", func() string {
			return k.proof(t, "GET", url, "tok", func(h, _ map[string]any) {
				h["jwk"] = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": k.jwk["x"], "d": "AAAA"}
			})
		}, false},
		{"signed by another key", func() string {
			p := other.proof(t, "GET", url, "tok", nil)
			q := k.proof(t, "GET", url, "tok", nil)
			return q[:len(q)-86] + p[len(p)-86:]
		}, false},
		{"garbage", func() string { return "a.b.c" }, false},
		{"empty", func() string { return "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkProof(t, tt.proof(), url, k.jkt, tt.ok) })
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
	p := k.proof(t, "GET", "https://a.example/x", "tok", nil)
	if _, err := CheckDPoP(p, "GET", "https://a.example/x", "tok", time.Now(), cache); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckDPoP(p, "GET", "https://a.example/x", "tok", time.Now(), cache); !errors.Is(err, ErrDPoPProof) {
		t.Fatalf("replayed proof: %v, want refused", err)
	}
	// A full cache forgets its oldest proof rather than refuse a newer one.
	full := NewReplayCache(1)
	old := k.proof(t, "GET", "https://a.example/x", "tok", func(_, c map[string]any) { c["iat"] = time.Now().Add(-10 * time.Second).Unix() })
	if _, err := CheckDPoP(old, "GET", "https://a.example/x", "tok", time.Now(), full); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckDPoP(newDPoPKey(t).proof(t, "GET", "https://a.example/x", "tok", nil), "GET", "https://a.example/x", "tok", time.Now(), full); err != nil {
		t.Fatalf("a full replay cache refused a newer proof: %v", err)
	}
	if _, err := CheckDPoP(old, "GET", "https://a.example/x", "tok", time.Now(), full); !errors.Is(err, ErrDPoPProof) {
		t.Fatalf("a forgotten proof replayed: %v, want refused", err)
	}
}

// rawProof signs a DPoP proof whose header and claims are the JSON texts
// given, for members a map cannot hold twice.
func (k *dpopKey) rawProof(t testing.TB, header, claims string) string {
	t.Helper()
	input := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(claims))
	sig, err := jwt.SigningMethodEdDSA.Sign(input, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
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
	jwk := fmt.Sprintf(`{"kty":"OKP","crv":"Ed25519","x":%q}`, k.jwk["x"])
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
		t.Run(tt.name, func(t *testing.T) { checkProof(t, k.rawProof(t, tt.header, tt.claims), url, k.jkt, tt.ok) })
	}
}
