package bus

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Signing algorithms Herald issues tokens with (RFC 8037, RFC 7518).
const (
	AlgEdDSA = "EdDSA"
	AlgES256 = "ES256"
)

// Signing algorithms of the identity providers Herald trusts (RFC 7518):
// their keys reach HERALD_KEYS bound to their issuer (ExternalKeyName);
// Herald itself never signs with them.
const (
	AlgRS256 = "RS256"
	AlgPS256 = "PS256"
)

// RSA key sizes accepted in HERALD_KEYS, in bits (RFC 8725 section 3.5
// and NIST SP 800-131A: at least 2048).
const (
	MinRSABits = 2048
	MaxRSABits = 4096
)

// DefaultMaxTokenLifetime bounds the lifetime (exp - iat) of tokens signed
// by a key whose entry in HERALD_KEYS states none (an older issuer's): the
// issuer's default max_access_ttl.
const DefaultMaxTokenLifetime = 15 * time.Minute

// MaxKeySize bounds an encoded JWK in HERALD_KEYS, in bytes.
const MaxKeySize = 4 << 10

// JWK is a public key as stored in HERALD_KEYS and served in JWKS (RFC 7517).
// Herald's own keys are OKP/Ed25519 and EC/P-256; a trusted identity
// provider's may also be RSA (N and E).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// NewJWK returns the JWK of an Ed25519, ECDSA P-256 or RSA public key,
// with its kid set to its RFC 7638 thumbprint. An RSA key's alg is RS256.
func NewJWK(pub crypto.PublicKey) (JWK, error) {
	var k JWK
	switch p := pub.(type) {
	case ed25519.PublicKey:
		k = JWK{Kty: "OKP", Crv: "Ed25519", X: b64(p), Alg: AlgEdDSA}
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return JWK{}, errors.New("new jwk: only P-256 ECDSA keys are supported")
		}
		raw, err := p.Bytes() // uncompressed point 0x04 || X || Y
		if err != nil {
			return JWK{}, fmt.Errorf("new jwk: %w", err)
		}
		k = JWK{Kty: "EC", Crv: "P-256", X: b64(raw[1:33]), Y: b64(raw[33:]), Alg: AlgES256}
	case *rsa.PublicKey:
		k = JWK{Kty: "RSA", N: b64(p.N.Bytes()), E: b64(big.NewInt(int64(p.E)).Bytes()), Alg: AlgRS256}
	default:
		return JWK{}, fmt.Errorf("new jwk: unsupported key type %T", pub)
	}
	k.Use = "sig"
	k.Kid = k.Thumbprint()
	return k, nil
}

// Thumbprint returns the RFC 7638 SHA-256 thumbprint of k, base64url.
func (k JWK) Thumbprint() string {
	var members string
	switch k.Kty {
	case "EC":
		members = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q,"y":%q}`, k.Crv, k.Kty, k.X, k.Y)
	case "RSA":
		members = fmt.Sprintf(`{"e":%q,"kty":%q,"n":%q}`, k.E, k.Kty, k.N)
	default:
		members = fmt.Sprintf(`{"crv":%q,"kty":%q,"x":%q}`, k.Crv, k.Kty, k.X)
	}
	sum := sha256.Sum256([]byte(members))
	return b64(sum[:])
}

// PublicKey returns the key k describes after checking that its members are
// consistent: the algorithm matches the key type and curve, the point is
// valid, and the kid is the key's thumbprint. Only Herald's own kinds of
// key (Ed25519, P-256) pass; ExternalPublicKey also takes RSA.
func (k JWK) PublicKey() (crypto.PublicKey, error) {
	if k.Kty == "RSA" {
		return nil, fmt.Errorf("jwk %s: RSA keys are only trusted for external issuers", k.Kid)
	}
	pub, err := k.key()
	if err != nil {
		return nil, err
	}
	if k.Kid != k.Thumbprint() {
		return nil, fmt.Errorf("jwk %s: kid is not the key's thumbprint", k.Kid)
	}
	return pub, nil
}

// key decodes the public key of k, whose alg must match its type and curve.
func (k JWK) key() (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	switch {
	case k.Kty == "OKP" && k.Crv == "Ed25519" && k.Alg == AlgEdDSA:
		x, err := unb64(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("jwk %s: bad Ed25519 x", k.Kid)
		}
		pub = ed25519.PublicKey(x)
	case k.Kty == "EC" && k.Crv == "P-256" && k.Alg == AlgES256:
		x, errX := unb64(k.X)
		y, errY := unb64(k.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, fmt.Errorf("jwk %s: bad P-256 coordinates", k.Kid)
		}
		p, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("jwk %s: %w", k.Kid, err)
		}
		pub = p
	case k.Kty == "RSA" && k.Crv == "" && (k.Alg == AlgRS256 || k.Alg == AlgPS256):
		p, err := k.rsaKey()
		if err != nil {
			return nil, err
		}
		pub = p
	default:
		return nil, fmt.Errorf("jwk %s: unsupported kty %q crv %q alg %q", k.Kid, k.Kty, k.Crv, k.Alg)
	}
	return pub, nil
}

// rsaKey decodes the RSA public key of k: a modulus of MinRSABits to
// MaxRSABits bits without leading zero bytes, and an odd public exponent
// from 3 to 2^31-1.
func (k JWK) rsaKey() (*rsa.PublicKey, error) {
	n, errN := unb64(k.N)
	e, errE := unb64(k.E)
	if errN != nil || errE != nil || len(n) == 0 || n[0] == 0 || len(e) == 0 || len(e) > 4 || e[0] == 0 {
		return nil, fmt.Errorf("jwk %s: bad RSA modulus or exponent", truncateKid(k.Kid))
	}
	mod := new(big.Int).SetBytes(n)
	if bits := mod.BitLen(); bits < MinRSABits || bits > MaxRSABits {
		return nil, fmt.Errorf("jwk %s: RSA key of %d bits, want %d to %d", truncateKid(k.Kid), bits, MinRSABits, MaxRSABits)
	}
	exp := new(big.Int).SetBytes(e).Int64()
	if exp < 3 || exp > 1<<31-1 || exp%2 == 0 {
		return nil, fmt.Errorf("jwk %s: bad RSA exponent", truncateKid(k.Kid))
	}
	return &rsa.PublicKey{N: mod, E: int(exp)}, nil
}

// truncateKid shortens a kid from outside Herald for an error message.
func truncateKid(kid string) string {
	if len(kid) > 64 {
		return kid[:64] + "..."
	}
	return kid
}

// ExternalPublicKey returns the key k describes, as PublicKey does, for a
// key of a trusted identity provider: its kid is the provider's own name
// for it (1 to MaxValueLen bytes), not its thumbprint.
func (k JWK) ExternalPublicKey() (crypto.PublicKey, error) {
	if k.Kid == "" || len(k.Kid) > MaxValueLen {
		return nil, fmt.Errorf("jwk: kid must be 1 to %d bytes", MaxValueLen)
	}
	return k.key()
}

// ProofKey decodes the public key a DPoP proof carries in its jwk header
// (RFC 9449 section 4.2) for algorithm alg, and returns it with its RFC
// 7638 thumbprint, the jkt that access tokens are bound to. A JWK with
// private members is refused.
func ProofKey(raw []byte, alg string) (jkt string, pub crypto.PublicKey, err error) {
	if len(raw) > MaxKeySize {
		return "", nil, errors.New("proof key too large")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return "", nil, fmt.Errorf("proof key: %w", err)
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
		if _, ok := members[private]; ok {
			return "", nil, errors.New("proof key has private members")
		}
	}
	var k JWK
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", nil, fmt.Errorf("proof key: %w", err)
	}
	if k.Alg != "" && k.Alg != alg {
		return "", nil, fmt.Errorf("proof key is for %s, proof says %s", k.Alg, alg)
	}
	k.Alg = alg
	pub, err = k.key()
	if err != nil {
		return "", nil, fmt.Errorf("proof key: %w", err)
	}
	return k.Thumbprint(), pub, nil
}

// ParseJWK decodes and checks a JWK as stored in HERALD_KEYS.
func ParseJWK(data []byte) (JWK, crypto.PublicKey, error) {
	if len(data) > MaxKeySize {
		return JWK{}, nil, fmt.Errorf("parse jwk: %d bytes, limit %d", len(data), MaxKeySize)
	}
	var k JWK
	if err := json.Unmarshal(data, &k); err != nil {
		return JWK{}, nil, fmt.Errorf("parse jwk: %w", err)
	}
	pub, err := k.PublicKey()
	if err != nil {
		return JWK{}, nil, fmt.Errorf("parse jwk: %w", err)
	}
	return k, pub, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func unb64(s string) ([]byte, error) { return base64.RawURLEncoding.Strict().DecodeString(s) }
