package verifier

// The token attack suite: forged and malformed tokens from the public JWT
// attack catalogues, each refused with the right reason by the library
// (Verify) and by the sidecar (/v1/verify over HTTP). The catalogue:
//
//   - jwt_tool (github.com/ticarpi/jwt_tool) exploits: -X a (alg none and
//     its case variants), -X n (null signature), -X b (HMAC with a blank
//     password), -X k (key confusion: HMAC keyed with the public key),
//     -X s (JWKS spoofing through jku), -X i (inline JWKS through jwk,
//     CVE-2018-0114), and its playbook's kid injections (path traversal,
//     SQL, command) and x5u spoofing;
//   - "psychic signatures", CVE-2022-21449 (ECDSA with r = s = 0), and
//     the invalid-signature families of Wycheproof's
//     ecdsa_secp256r1_sha256_p1363 vectors (r or s zero, equal to n, above
//     n, wrong length, DER instead of r||s); Ed25519 with S >= L (RFC 8032
//     section 5.1.7);
//   - RFC 8725 (JWT best current practice): explicit typing (section
//     3.11), keys named by the token itself (section 3.10), UTF-8
//     (section 3.7), and crit (RFC 7515 section 4.1.11);
//   - parser differentials, where encoding/json is lenient: duplicate
//     members, names that differ in case only ("exp" and "EXP"), invalid
//     UTF-8, non-canonical base64.

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/internal/jsonstrict"
)

// attack is one token of the suite and the verdict it must get.
type attack struct {
	name  string
	token string
	// want is the reason it is refused for; nil marks the few look-alikes
	// that are valid tokens and must be accepted (documented in the name).
	want *Error
	// noHTTP marks tokens no HTTP request can carry (line breaks, or over
	// the server's header limit): the HTTP server refuses those requests
	// itself, see TestSidecar_HeaderAbuse.
	noHTTP bool
}

// forge builds tokens byte for byte: headers and claims are JSON texts,
// signed as they are.
type forge struct {
	tb  testing.TB
	k   *testKeys
	now time.Time
}

// claims returns the JSON text of valid claims, changed by mut if not nil.
func (f *forge) claims(mut func(c map[string]any)) string {
	c := baseClaims(f.now)
	if mut != nil {
		mut(c)
	}
	return string(mustJSON(f.tb, c))
}

// edHdr and esHdr return the JSON text of the issuer's header, changed by mut.
func (f *forge) edHdr(mut func(h map[string]any)) string {
	h := f.k.EdHeader()
	if mut != nil {
		mut(h)
	}
	return string(mustJSON(f.tb, h))
}

func (f *forge) esHdr(mut func(h map[string]any)) string {
	h := f.k.EsHeader()
	if mut != nil {
		mut(h)
	}
	return string(mustJSON(f.tb, h))
}

// segments signs the given encoded header and claims segments as they are.
func (f *forge) segments(m jwt.SigningMethod, key any, hseg, cseg string) string {
	f.tb.Helper()
	in := hseg + "." + cseg
	sig, err := m.Sign(in, key)
	if err != nil {
		f.tb.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return in + "." + b64(sig)
}

func (f *forge) sign(m jwt.SigningMethod, key any, hdr, claims string) string {
	return f.segments(m, key, b64([]byte(hdr)), b64([]byte(claims)))
}

// ed and es sign with the trusted keys.
func (f *forge) ed(hdr, claims string) string {
	return f.sign(jwt.SigningMethodEdDSA, f.k.Ed, hdr, claims)
}

func (f *forge) es(hdr, claims string) string {
	return f.sign(jwt.SigningMethodES256, f.k.Es, hdr, claims)
}

// withMember returns the JSON object text obj with member added at its end.
func withMember(obj, member string) string {
	return strings.TrimSuffix(obj, "}") + "," + member + "}"
}

// withSig returns tok with its signature replaced by sig.
func withSig(tok string, sig []byte) string {
	return tok[:strings.LastIndexByte(tok, '.')+1] + b64(sig)
}

// sigOf returns the decoded signature of tok.
func sigOf(tb testing.TB, tok string) []byte {
	tb.Helper()
	sig, err := jwt.NewParser().DecodeSegment(tok[strings.LastIndexByte(tok, '.')+1:])
	if err != nil {
		tb.Fatal(err)
	}
	return sig
}

// nonCanonical returns seg with an unused low bit of its last character set:
// a lenient decoder reads the same bytes, a strict one refuses it.
func nonCanonical(tb testing.TB, seg string) string {
	tb.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(seg)%4 == 0 {
		tb.Fatalf("segment of %d characters has no unused bits", len(seg))
	}
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[i|1])
}

// withUnusedBits pads the JSON text js with spaces until its base64url form
// has unused bits in its last character.
func withUnusedBits(js string) string {
	for len(js)%3 == 0 {
		js += " "
	}
	return js
}

// ecdsaSig returns r||s as ES256 encodes it (RFC 7518 section 3.4).
func ecdsaSig(r, s *big.Int) []byte {
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out
}

// attacks returns the suite for the keys of k, valid at now.
func attacks(tb testing.TB, k *testKeys, now time.Time) []attack {
	f := &forge{tb: tb, k: k, now: now}
	valid := f.ed(f.edHdr(nil), f.claims(nil))
	validES := f.es(f.esHdr(nil), f.claims(nil))
	parts := strings.Split(valid, ".")
	edPub := k.Ed.Public().(ed25519.PublicKey)
	pkix, err := x509.MarshalPKIXPublicKey(edPub)
	if err != nil {
		tb.Fatal(err)
	}
	edPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix})
	_, mallory, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	malloryES, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	malloryKid, malloryJWK := jwkOf(tb, mallory.Public())
	with := func(mut func(c map[string]any)) string { return f.ed(f.edHdr(nil), f.claims(mut)) }
	edHdr := func(mut func(h map[string]any)) string { return f.ed(f.edHdr(mut), f.claims(nil)) }
	unsigned := func(alg any) string {
		return b64([]byte(f.edHdr(func(h map[string]any) { h["alg"] = alg }))) + "." + parts[1] + "."
	}
	hmac := func(m jwt.SigningMethod, key []byte, kid string) string {
		return f.sign(m, key, f.edHdr(func(h map[string]any) { h["alg"] = m.Alg(); h["kid"] = kid }), f.claims(nil))
	}
	byMallory := func(mut func(h map[string]any)) string {
		return f.sign(jwt.SigningMethodEdDSA, mallory, f.edHdr(mut), f.claims(nil))
	}
	kid := func(v any) string { return byMallory(func(h map[string]any) { h["kid"] = v }) }
	// rawClaims signs a claims text exactly as given, for members that
	// json.Marshal of a map cannot write (duplicates, bad UTF-8).
	rawClaims := func(claims string) string { return f.ed(f.edHdr(nil), claims) }
	rawHdr := func(hdr string) string { return f.ed(hdr, f.claims(nil)) }
	later := func(d time.Duration) int64 { return now.Add(d).Unix() }

	params := elliptic.P256().Params()
	n, p := params.N, params.P
	esSig := sigOf(tb, validES)
	r, s := new(big.Int).SetBytes(esSig[:32]), new(big.Int).SetBytes(esSig[32:])
	zero, one := big.NewInt(0), big.NewInt(1)
	max256 := new(big.Int).Sub(new(big.Int).Lsh(one, 256), one)
	der, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
	if err != nil {
		tb.Fatal(err)
	}
	// Ed25519 S + L: the same signature but for a non-canonical S.
	edSig := sigOf(tb, valid)
	ell, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	sLE := slices.Clone(edSig[32:])
	slices.Reverse(sLE)
	sPlusL := new(big.Int).Add(new(big.Int).SetBytes(sLE), ell).FillBytes(make([]byte, 32))
	slices.Reverse(sPlusL)
	edMalleated := append(slices.Clone(edSig[:32]), sPlusL...)

	claimsJSON := f.claims(nil)
	tooMany := claimsJSON
	for i := range jsonstrict.MaxMembers {
		tooMany = withMember(tooMany, fmt.Sprintf(`"x%d":%d`, i, i))
	}
	nested := withMember(claimsJSON, `"x":`+strings.Repeat("[", 2500)+strings.Repeat("]", 2500))

	return []attack{
		// Look-alikes that are valid: the suite checks they still pass.
		{name: "valid EdDSA", token: valid},
		{name: "valid ES256", token: validES},
		// ECDSA signatures are malleable: (r, n-s) verifies wherever (r, s)
		// does. Go's crypto/ecdsa accepts both, as RFC 7518 and Wycheproof
		// (which marks such vectors valid) do, and half of the signatures
		// Go makes have a high s, so refusing them would refuse real
		// tokens. It forges nothing: the claims and jti are the ones
		// signed, and revocations match by jti, sid, sub..., never by the
		// token's bytes.
		{name: "ES256 high-s twin of a valid signature is accepted", token: withSig(validES, ecdsaSig(r, new(big.Int).Sub(n, s)))},
		{name: "escaped member name is the member (\\u0073ub)", token: rawClaims(strings.Replace(claimsJSON, `"sub":`, `"\u0073ub":`, 1))},
		{name: "surrogate pair in a claim is valid UTF-16", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, `"sub":"al\ud83d\ude00ice"`, 1))},
		{name: "deeply nested unknown claim is skipped, not recursed", token: rawClaims(nested)},

		// jwt_tool -X a: alg none, and every spelling of it.
		{name: "alg none", token: unsigned("none"), want: ErrAlgorithm},
		{name: "alg None", token: unsigned("None"), want: ErrAlgorithm},
		{name: "alg NONE", token: unsigned("NONE"), want: ErrAlgorithm},
		{name: "alg nOnE", token: unsigned("nOnE"), want: ErrAlgorithm},
		{name: "alg none with the original signature kept", token: unsigned("none") + parts[2], want: ErrAlgorithm},
		{name: "alg empty", token: unsigned(""), want: ErrAlgorithm},
		{name: "alg null", token: unsigned(nil), want: ErrAlgorithm},
		{name: "alg a number", token: unsigned(0), want: ErrMalformed},
		{name: "alg eddsa (case)", token: edHdr(func(h map[string]any) { h["alg"] = "eddsa" }), want: ErrAlgorithm},
		{name: "alg with trailing space", token: edHdr(func(h map[string]any) { h["alg"] = "EdDSA " }), want: ErrAlgorithm},
		{name: "alg Ed25519 (RFC 9864 name, not allowed)", token: edHdr(func(h map[string]any) { h["alg"] = "Ed25519" }), want: ErrAlgorithm},
		{name: "alg RS256", token: edHdr(func(h map[string]any) { h["alg"] = "RS256" }), want: ErrAlgorithm},
		{name: "alg PS256", token: edHdr(func(h map[string]any) { h["alg"] = "PS256" }), want: ErrAlgorithm},
		{name: "alg ES384", token: edHdr(func(h map[string]any) { h["alg"] = "ES384" }), want: ErrAlgorithm},
		{name: "alg ES256K", token: edHdr(func(h map[string]any) { h["alg"] = "ES256K" }), want: ErrAlgorithm},

		// jwt_tool -X n: null signature.
		{name: "null signature EdDSA", token: parts[0] + "." + parts[1] + ".", want: ErrBadSignature},
		{name: "null signature ES256", token: withSig(validES, nil), want: ErrBadSignature},

		// jwt_tool -X b and -X k: HMAC with a blank password, or keyed with
		// what the verifier holds as a public key (algorithm confusion).
		{name: "HS256 with a blank password", token: hmac(jwt.SigningMethodHS256, []byte{}, k.EdKid), want: ErrAlgorithm},
		{name: "HS256 keyed with the raw public key", token: hmac(jwt.SigningMethodHS256, edPub, k.EdKid), want: ErrAlgorithm},
		{name: "HS256 keyed with the public key's PEM", token: hmac(jwt.SigningMethodHS256, edPEM, k.EdKid), want: ErrAlgorithm},
		{name: "HS256 keyed with the JWK from HERALD_KEYS", token: hmac(jwt.SigningMethodHS256, k.EdJWK, k.EdKid), want: ErrAlgorithm},
		{name: "HS256 keyed with the ES256 JWK", token: hmac(jwt.SigningMethodHS256, k.EsJWK, k.EsKid), want: ErrAlgorithm},
		{name: "HS384 keyed with the public key", token: hmac(jwt.SigningMethodHS384, edPub, k.EdKid), want: ErrAlgorithm},
		{name: "HS512 keyed with the public key", token: hmac(jwt.SigningMethodHS512, edPub, k.EdKid), want: ErrAlgorithm},
		{name: "EdDSA header on the ES256 key", token: f.ed(f.edHdr(func(h map[string]any) { h["kid"] = k.EsKid }), f.claims(nil)), want: ErrAlgorithm},
		{name: "ES256 header on the EdDSA key", token: f.es(f.esHdr(func(h map[string]any) { h["kid"] = k.EdKid }), f.claims(nil)), want: ErrAlgorithm},

		// jwt_tool -X s and -X i, and x5u/x5c: keys named or carried by
		// the token are never used (RFC 8725 section 3.10); the token is
		// refused before any key is looked up, even when it also names a
		// trusted kid.
		{name: "jku to the attacker's JWKS", token: byMallory(func(h map[string]any) { h["kid"] = malloryKid; h["jku"] = "https://evil.test/jwks.json" }), want: ErrMalformed},
		{name: "jku with a trusted kid", token: edHdr(func(h map[string]any) { h["jku"] = "https://evil.test/jwks.json" }), want: ErrMalformed},
		{name: "embedded jwk of the attacker's key (CVE-2018-0114)", token: byMallory(func(h map[string]any) { h["kid"] = malloryKid; h["jwk"] = json.RawMessage(malloryJWK) }), want: ErrMalformed},
		{name: "embedded jwk null", token: edHdr(func(h map[string]any) { h["jwk"] = nil }), want: ErrMalformed},
		{name: "x5u to the attacker's certificate", token: byMallory(func(h map[string]any) { h["x5u"] = "https://evil.test/cert.pem" }), want: ErrMalformed},
		{name: "x5c with the attacker's certificate", token: byMallory(func(h map[string]any) { h["x5c"] = []string{"MIIBszCCAVmgAwIBAgIU"} }), want: ErrMalformed},

		// kid injection (jwt_tool playbook): the kid is only ever a key
		// in an in-memory map of HERALD_KEYS, never a path, query or
		// command.
		{name: "kid path traversal with HS256 and an empty key (/dev/null)", token: hmac(jwt.SigningMethodHS256, []byte{}, "../../../../../../dev/null"), want: ErrAlgorithm},
		{name: "kid ../../etc/passwd", token: kid("../../etc/passwd"), want: ErrUnknownKey},
		{name: "kid /proc/sys/kernel/randomize_va_space", token: kid("/proc/sys/kernel/randomize_va_space"), want: ErrUnknownKey},
		{name: "kid SQL injection", token: kid("x' UNION SELECT 'AAAA'-- "), want: ErrUnknownKey},
		{name: "kid command injection", token: kid("key|/usr/bin/id;$(id)`id`"), want: ErrUnknownKey},
		{name: "kid with spaces", token: kid("kid with spaces"), want: ErrUnknownKey},
		{name: "kid with CRLF and a header", token: kid("x\r\nX-Herald-Subject: admin"), want: ErrUnknownKey},
		{name: "kid with NUL", token: kid("x\x00y"), want: ErrUnknownKey},
		{name: "kid very long", token: kid(strings.Repeat("k", 4000)), want: ErrUnknownKey},
		{name: "kid of a trusted key in upper case", token: kid(strings.ToUpper(k.EdKid)), want: ErrUnknownKey},
		{name: "kid empty", token: kid(""), want: ErrUnknownKey},
		{name: "kid null", token: kid(nil), want: ErrUnknownKey},
		{name: "kid a number", token: kid(1), want: ErrMalformed},
		{name: "kid an array", token: kid([]string{k.EdKid}), want: ErrMalformed},

		// Another key signs under a trusted kid.
		{name: "EdDSA signature of another key with the same kid", token: byMallory(nil), want: ErrBadSignature},
		{name: "ES256 signature of another key with the same kid", token: f.sign(jwt.SigningMethodES256, malloryES, f.esHdr(nil), f.claims(nil)), want: ErrBadSignature},
		{name: "signature of another token", token: withSig(valid, sigOf(tb, f.ed(f.edHdr(nil), f.claims(nil)))), want: ErrBadSignature},
		{name: "claims swapped under a valid signature", token: parts[0] + "." + b64([]byte(f.claims(func(c map[string]any) { c["sub"] = "admin" }))) + "." + parts[2], want: ErrBadSignature},

		// Psychic signatures (CVE-2022-21449) and Wycheproof's invalid
		// ECDSA signatures. Go's crypto/ecdsa requires 0 < r, s < n.
		{name: "ES256 r=s=0 psychic signature (CVE-2022-21449)", token: withSig(validES, ecdsaSig(zero, zero)), want: ErrBadSignature},
		{name: "ES256 r=0", token: withSig(validES, ecdsaSig(zero, s)), want: ErrBadSignature},
		{name: "ES256 s=0", token: withSig(validES, ecdsaSig(r, zero)), want: ErrBadSignature},
		{name: "ES256 r=s=n", token: withSig(validES, ecdsaSig(n, n)), want: ErrBadSignature},
		{name: "ES256 r=n", token: withSig(validES, ecdsaSig(n, s)), want: ErrBadSignature},
		{name: "ES256 s=n", token: withSig(validES, ecdsaSig(r, n)), want: ErrBadSignature},
		{name: "ES256 r=n+1 (above n)", token: withSig(validES, ecdsaSig(new(big.Int).Add(n, one), s)), want: ErrBadSignature},
		{name: "ES256 r=p (the field prime)", token: withSig(validES, ecdsaSig(p, s)), want: ErrBadSignature},
		{name: "ES256 r=s=2^256-1", token: withSig(validES, ecdsaSig(max256, max256)), want: ErrBadSignature},
		{name: "ES256 r=s=1", token: withSig(validES, ecdsaSig(one, one)), want: ErrBadSignature},
		{name: "ES256 r and s swapped", token: withSig(validES, ecdsaSig(s, r)), want: ErrBadSignature},
		{name: "ES256 r=s=n-1", token: withSig(validES, ecdsaSig(new(big.Int).Sub(n, one), new(big.Int).Sub(n, one))), want: ErrBadSignature},
		{name: "ES256 DER signature instead of r||s", token: withSig(validES, der), want: ErrBadSignature},
		{name: "ES256 signature of 63 bytes", token: withSig(validES, esSig[:63]), want: ErrBadSignature},
		{name: "ES256 signature of 65 bytes", token: withSig(validES, append(slices.Clone(esSig), 0)), want: ErrBadSignature},
		{name: "EdDSA S+L, non-canonical (RFC 8032 5.1.7)", token: withSig(valid, edMalleated), want: ErrBadSignature},
		{name: "EdDSA all-zero signature", token: withSig(valid, make([]byte, 64)), want: ErrBadSignature},
		{name: "EdDSA signature of 63 bytes", token: withSig(valid, edSig[:63]), want: ErrBadSignature},

		// crit: no extension is understood, so none may be critical
		// (RFC 7515 section 4.1.11).
		{name: "crit unknown", token: edHdr(func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 }), want: ErrMalformed},
		{name: "crit b64 (RFC 7797 unencoded payload)", token: edHdr(func(h map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }), want: ErrMalformed},
		{name: "crit empty", token: edHdr(func(h map[string]any) { h["crit"] = []string{} }), want: ErrMalformed},
		{name: "crit null", token: edHdr(func(h map[string]any) { h["crit"] = nil }), want: ErrMalformed},

		// typ confusion (RFC 8725 section 3.11, RFC 9068 section 4): other
		// JWTs signed by the same key are not access tokens.
		{name: "typ JWT (an ID token)", token: edHdr(func(h map[string]any) { h["typ"] = "JWT" }), want: ErrType},
		{name: "typ rt+jwt (a refresh token)", token: edHdr(func(h map[string]any) { h["typ"] = "rt+jwt" }), want: ErrType},
		{name: "typ secevent+jwt (a security event)", token: edHdr(func(h map[string]any) { h["typ"] = "secevent+jwt" }), want: ErrType},
		{name: "typ dpop+jwt (a DPoP proof)", token: edHdr(func(h map[string]any) { h["typ"] = "dpop+jwt" }), want: ErrType},
		{name: "typ at+jwt with a suffix", token: edHdr(func(h map[string]any) { h["typ"] = "at+jwt; x" }), want: ErrType},
		{name: "typ missing", token: edHdr(func(h map[string]any) { delete(h, "typ") }), want: ErrType},
		{name: "typ an array", token: edHdr(func(h map[string]any) { h["typ"] = []string{"at+jwt"} }), want: ErrMalformed},

		// iss, aud, exp, nbf, iat.
		{name: "iss wrong", token: with(func(c map[string]any) { c["iss"] = "https://evil.test" }), want: ErrIssuer},
		{name: "iss with a trailing slash", token: with(func(c map[string]any) { c["iss"] = testIssuer + "/" }), want: ErrIssuer},
		{name: "iss in upper case", token: with(func(c map[string]any) { c["iss"] = strings.ToUpper(testIssuer) }), want: ErrIssuer},
		{name: "iss missing", token: with(func(c map[string]any) { delete(c, "iss") }), want: ErrMalformed},
		{name: "iss an array", token: with(func(c map[string]any) { c["iss"] = []string{testIssuer} }), want: ErrMalformed},
		{name: "aud wrong", token: with(func(c map[string]any) { c["aud"] = "other" }), want: ErrAudience},
		{name: "aud in upper case", token: with(func(c map[string]any) { c["aud"] = strings.ToUpper(testAudience) }), want: ErrAudience},
		{name: "aud missing", token: with(func(c map[string]any) { delete(c, "aud") }), want: ErrMalformed},
		{name: "aud empty array", token: with(func(c map[string]any) { c["aud"] = []string{} }), want: ErrMalformed},
		{name: "aud an object", token: with(func(c map[string]any) { c["aud"] = map[string]string{testAudience: testAudience} }), want: ErrMalformed},
		{name: "exp missing", token: with(func(c map[string]any) { delete(c, "exp") }), want: ErrMalformed},
		{name: "exp null", token: with(func(c map[string]any) { c["exp"] = nil }), want: ErrMalformed},
		{name: "exp in the past", token: with(func(c map[string]any) { c["exp"] = later(-time.Hour) }), want: ErrExpired},
		{name: "exp zero", token: with(func(c map[string]any) { c["exp"] = 0 }), want: ErrExpired},
		{name: "exp as a string", token: with(func(c map[string]any) { c["exp"] = fmt.Sprint(later(time.Hour)) }), want: ErrMalformed},
		{name: "exp 1e300", token: with(func(c map[string]any) { c["exp"] = json.RawMessage("1e300") }), want: ErrMalformed},
		{name: "exp 1.9e9 in exponent form", token: with(func(c map[string]any) { c["exp"] = json.RawMessage("1.9e9") }), want: ErrMalformed},
		{name: "exp negative", token: with(func(c map[string]any) { c["exp"] = -1 }), want: ErrMalformed},
		{name: "exp thirteen digits", token: with(func(c map[string]any) { c["exp"] = json.RawMessage("9999999999999") }), want: ErrMalformed},
		{name: "exp true", token: with(func(c map[string]any) { c["exp"] = true }), want: ErrMalformed},
		{name: "nbf in the future", token: with(func(c map[string]any) { c["nbf"] = later(time.Hour) }), want: ErrNotYetValid},
		{name: "nbf as a string", token: with(func(c map[string]any) { c["nbf"] = "0" }), want: ErrMalformed},
		{name: "iat in the future beyond the leeway", token: with(func(c map[string]any) {
			c["iat"] = later(DefaultLeeway + time.Minute)
			c["exp"] = later(time.Hour)
		}), want: ErrNotYetValid},
		{name: "iat missing", token: with(func(c map[string]any) { delete(c, "iat") }), want: ErrMalformed},
		{name: "sub missing", token: with(func(c map[string]any) { delete(c, "sub") }), want: ErrMalformed},
		{name: "sub empty", token: with(func(c map[string]any) { c["sub"] = "" }), want: ErrMalformed},
		{name: "sub a number", token: with(func(c map[string]any) { c["sub"] = 1 }), want: ErrMalformed},
		{name: "jti missing", token: with(func(c map[string]any) { delete(c, "jti") }), want: ErrMalformed},
		{name: "claims null", token: rawClaims("null"), want: ErrMalformed},
		{name: "claims an array", token: rawClaims("[" + claimsJSON + "]"), want: ErrMalformed},
		{name: "claims with trailing data", token: rawClaims(claimsJSON + "{}"), want: ErrMalformed},
		{name: "claims with more members than any token has", token: rawClaims(tooMany), want: ErrMalformed},

		// Duplicate members: encoding/json keeps the last one silently.
		// RFC 7515 section 5.2 and RFC 7519 section 4 let a parser refuse
		// them, and one that keeps the first would read another token.
		{name: "duplicate sub", token: rawClaims(withMember(claimsJSON, `"sub":"admin"`)), want: ErrMalformed},
		{name: "duplicate exp", token: rawClaims(withMember(claimsJSON, fmt.Sprintf(`"exp":%d`, later(time.Hour)))), want: ErrMalformed},
		{name: "duplicate unknown claim", token: rawClaims(withMember(withMember(claimsJSON, `"x":1`), `"x":2`)), want: ErrMalformed},
		{name: "duplicate sub, one escaped", token: rawClaims(withMember(claimsJSON, `"\u0073ub":"admin"`)), want: ErrMalformed},
		{name: "duplicate alg in the header", token: rawHdr(withMember(f.edHdr(func(h map[string]any) { h["alg"] = "none" }), `"alg":"EdDSA"`)), want: ErrMalformed},
		{name: "duplicate kid in the header", token: rawHdr(withMember(f.edHdr(nil), `"kid":"`+k.EdKid+`"`)), want: ErrMalformed},
		{name: "duplicate typ in the header", token: rawHdr(withMember(f.edHdr(func(h map[string]any) { h["typ"] = "JWT" }), `"typ":"at+jwt"`)), want: ErrMalformed},

		// Case variants: encoding/json matches names without regard to
		// case (and with Unicode folding), so "EXP" would set or override
		// exp. JWT names are case-sensitive (RFC 7519 section 4).
		{name: "exp in the past and EXP in the future", token: rawClaims(withMember(f.claims(func(c map[string]any) { c["exp"] = later(-time.Hour) }), fmt.Sprintf(`"EXP":%d`, later(time.Hour)))), want: ErrMalformed},
		{name: "EXP instead of exp", token: rawClaims(withMember(f.claims(func(c map[string]any) { delete(c, "exp") }), fmt.Sprintf(`"EXP":%d`, later(time.Hour)))), want: ErrMalformed},
		{name: "Sub after sub", token: rawClaims(withMember(claimsJSON, `"Sub":"admin"`)), want: ErrMalformed},
		{name: "ſub (U+017F long s folds to s)", token: rawClaims(withMember(claimsJSON, `"ſub":"admin"`)), want: ErrMalformed},
		{name: "AUD after aud", token: rawClaims(withMember(claimsJSON, `"AUD":"`+testAudience+`"`)), want: ErrMalformed},
		{name: "Tenant after tenant", token: rawClaims(withMember(claimsJSON, `"Tenant":"other"`)), want: ErrMalformed},
		{name: "TYP at+jwt beside typ JWT", token: rawHdr(withMember(f.edHdr(func(h map[string]any) { h["typ"] = "JWT" }), `"TYP":"at+jwt"`)), want: ErrMalformed},
		{name: "ALG beside alg", token: rawHdr(withMember(f.edHdr(nil), `"ALG":"none"`)), want: ErrMalformed},
		{name: "\u212aid (U+212A Kelvin sign folds to k)", token: rawHdr(withMember(f.edHdr(nil), "\"\u212aid\":\"x\"")), want: ErrMalformed},

		// Invalid UTF-8: encoding/json would turn it into U+FFFD.
		{name: "invalid UTF-8 in sub", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, "\"sub\":\"al\xffice\"", 1)), want: ErrMalformed},
		{name: "overlong UTF-8 in sub", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, "\"sub\":\"al\xc0\xafice\"", 1)), want: ErrMalformed},
		{name: "escaped lone surrogate in sub", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, `"sub":"al\ud800ice"`, 1)), want: ErrMalformed},
		{name: "escaped lone low surrogate in sub", token: rawClaims(strings.Replace(claimsJSON, `"sub":"alice"`, `"sub":"al\udc00ice"`, 1)), want: ErrMalformed},
		{name: "invalid UTF-8 in a member name", token: rawClaims(withMember(claimsJSON, "\"s\xffb\":1")), want: ErrMalformed},
		{name: "invalid UTF-8 in kid", token: rawHdr(strings.Replace(f.edHdr(nil), k.EdKid, k.EdKid+"\xff", 1)), want: ErrMalformed},

		// Non-canonical base64url: one token, one spelling.
		{name: "header padded with =", token: b64([]byte(f.edHdr(nil))) + "=." + parts[1] + "." + parts[2], want: ErrMalformed},
		{name: "claims padded with =", token: parts[0] + "." + parts[1] + "=." + parts[2], want: ErrMalformed},
		{name: "signature padded with =", token: valid + "=", want: ErrMalformed},
		{name: "signature in the standard alphabet", token: parts[0] + "." + parts[1] + ".+" + parts[2][1:], want: ErrMalformed},
		{name: "header with non-zero trailing bits", token: f.segments(jwt.SigningMethodEdDSA, k.Ed, nonCanonical(tb, b64([]byte(withUnusedBits(f.edHdr(nil))))), parts[1]), want: ErrMalformed},
		{name: "claims with non-zero trailing bits", token: f.segments(jwt.SigningMethodEdDSA, k.Ed, parts[0], nonCanonical(tb, b64([]byte(withUnusedBits(claimsJSON))))), want: ErrMalformed},
		{name: "signature with non-zero trailing bits", token: parts[0] + "." + parts[1] + "." + nonCanonical(tb, parts[2]), want: ErrMalformed},
		{name: "line feed in the signature", token: parts[0] + "." + parts[1] + "." + parts[2][:40] + "\n" + parts[2][40:], want: ErrMalformed, noHTTP: true},
		{name: "carriage return in the signature", token: parts[0] + "." + parts[1] + "." + parts[2][:40] + "\r" + parts[2][40:], want: ErrMalformed, noHTTP: true},
		{name: "space in the token", token: parts[0] + "." + parts[1] + ". " + parts[2], want: ErrMalformed},
		{name: "tab in the token", token: parts[0] + "." + parts[1] + ".\t" + parts[2], want: ErrMalformed},

		// Structure and size, bounded before parsing.
		{name: "two parts", token: parts[0] + "." + parts[1], want: ErrMalformed},
		{name: "four parts", token: valid + "." + parts[2], want: ErrMalformed},
		{name: "only dots", token: "..", want: ErrMalformed},
		{name: "JWE compact serialization (five parts)", token: parts[0] + ".." + parts[1] + "." + parts[2] + ".x", want: ErrMalformed},
		{name: "one byte over MaxTokenSize", token: valid + strings.Repeat("A", DefaultMaxTokenSize+1-len(valid)), want: ErrMalformed},
		{name: "1 MiB token", token: strings.Repeat("A", 1<<20) + "." + parts[1] + "." + parts[2], want: ErrMalformed, noHTTP: true},
	}
}

// runAttacks checks every attack with check, which returns the error of
// one verdict (nil for accepted), and returns how long the table took.
func runAttacks(t *testing.T, list []attack, check func(t *testing.T, a attack) error) time.Duration {
	t.Helper()
	start := time.Now()
	for _, a := range list {
		t.Run(a.name, func(t *testing.T) {
			err := check(t, a)
			if a.want == nil {
				if err != nil {
					t.Fatalf("refused (%v), want accepted", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want refused with %s", a.want.Reason)
			}
			if got := Reason(err); got != a.want.Reason {
				t.Fatalf("refused with %s (%v), want %s", got, err, a.want.Reason)
			}
		})
	}
	return time.Since(start)
}

// TestAttack_Library runs the suite against Verify.
func TestAttack_Library(t *testing.T) {
	k := newTestKeys(t)
	keys := NewKeySet(nil, nil)
	for _, jwk := range map[string][]byte{k.EdKid: k.EdJWK, k.EsKid: k.EsJWK} {
		if err := putKey(t, keys, jwk); err != nil {
			t.Fatal(err)
		}
	}
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience}, keys, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	list := attacks(t, k, time.Now())
	took := runAttacks(t, list, func(t *testing.T, a attack) error {
		c, err := v.Verify(t.Context(), a.token)
		if err != nil {
			if c != nil {
				t.Errorf("Verify returned claims with its error %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error %v wraps no *Error", err)
			}
			// Errors end up in logs: they stay short whatever the token holds.
			if len(err.Error()) > 300 {
				t.Errorf("error message of %d bytes", len(err.Error()))
			}
		}
		return err
	})
	t.Logf("%d attacks in %v", len(list), took)
	if took > 5*time.Second {
		t.Errorf("the suite took %v: some token is expensive to refuse", took)
	}
}

// TestSidecar_MalformedEventsSkipped publishes junk where revocations and
// keys go, as anyone with publish rights on the bus can: the sidecar
// counts and skips each, trusts no malformed key, stays ready, and applies
// the valid revocation published after them. Junk without a signature is
// refused as unsigned; junk signed by a trusted key as malformed.
func TestSidecar_MalformedEventsSkipped(t *testing.T) {
	f := newFixture(t)
	js := f.conn.JetStream()
	junk := [][]byte{
		[]byte("not json"),
		[]byte("{}"),
		[]byte(`{"id":"1","type":"revocation","time":"2026-11-23T10:47:17Z","actor":"x","revocation":{"kind":"all","value":"x"}}`),
		[]byte("{\"id\":\"\xff\"}"),
		[]byte(`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`),
		[]byte(strings.Repeat("A", bus.MaxEventSize+1)),
	}
	for _, data := range junk {
		if _, err := js.Publish(t.Context(), bus.RevokeSubject(bus.KindSession), data); err != nil {
			t.Fatalf("publish junk: %v", err)
		}
	}
	// Junk signed by the trusted event key: the signature holds, the
	// payload is still refused.
	signed := junk[:4]
	for _, data := range signed {
		msg := nats.NewMsg(bus.RevokeSubject(bus.KindSession))
		msg.Data = data
		msg.Header.Set(bus.HeaderSignature, detachedSignature(t, bustest.Signer(t), data))
		if _, err := js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatalf("publish signed junk: %v", err)
		}
	}
	kv, err := f.conn.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, mallory, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	malloryKid, malloryJWK := jwkOf(t, mallory.Public())
	entry, err := kv.Get(t.Context(), f.EdKid)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"junk":                      []byte("{"),
		"stolen":                    entry.Value(), // a trusted key's signed entry under another name
		malloryKid:                  malloryJWK,    // a key without a signature
		bus.EventKeyPrefix + "junk": []byte("{"),
	} {
		if _, err := kv.Put(t.Context(), name, data); err != nil {
			t.Fatal(err)
		}
	}
	victim, bystander := baseClaims(time.Now()), baseClaims(time.Now())
	revoke(t, f.conn, f.sc, bus.KindSession, victim["sid"].(string), time.Now())

	st := f.sc.Status()
	if st.Refused != uint64(len(junk)) || st.Malformed != uint64(len(signed)) || !st.Ready {
		t.Fatalf("status %+v: want %d refused, %d malformed events and ready", st, len(junk), len(signed))
	}
	v := f.sc.Verifier()
	bustest.WaitFor(t, 5*time.Second, func() error {
		if n := v.keys.bad.Load(); n < 4 {
			return fmt.Errorf("%d keys refused, want 4", n)
		}
		return nil
	})
	for _, kid := range []string{"junk", "stolen", malloryKid} {
		if _, ok := v.keys.Get(kid); ok {
			t.Errorf("malformed key %q trusted", kid)
		}
	}
	_, err = v.Verify(t.Context(), f.EdToken(t, victim))
	checkVerdict(t, err, ErrRevoked)
	_, err = v.Verify(t.Context(), f.EdToken(t, bystander))
	checkVerdict(t, err, nil)
}

// TestClaimAndHeaderNames: the member names the verifier gives the
// duplicate and case-folding checks (internal/jsonstrict) are every claim
// and header member it reads.
func TestClaimAndHeaderNames(t *testing.T) {
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "sid", "scope", "tenant"} {
		if !slices.Contains(claimNames, name) {
			t.Errorf("claimNames %v lacks %s", claimNames, name)
		}
	}
	for _, name := range []string{"alg", "typ", "kid", "crit", "jku", "x5u", "x5c", "jwk"} {
		if !slices.Contains(headerNames, name) {
			t.Errorf("headerNames %v lacks %s", headerNames, name)
		}
	}
}

// BenchmarkCheckMembers is the cost the member checks add to a
// signature-checked Verify: one header and one claims set of the size
// Herald issues.
func BenchmarkCheckMembers(b *testing.B) {
	k := newTestKeys(b)
	f := &forge{tb: b, k: k, now: time.Now()}
	hdr, claims := []byte(f.edHdr(nil)), []byte(f.claims(nil))
	b.ReportAllocs()
	for b.Loop() {
		if jsonstrict.CheckMembers(hdr, headerNames) != nil || jsonstrict.CheckMembers(claims, claimNames) != nil {
			b.Fatal("refused")
		}
	}
}
