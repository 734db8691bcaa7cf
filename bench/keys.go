package bench

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
)

// Issuer identifier and audience of every token the bench signs or has signed.
const (
	benchIssuer   = "https://bench.herald.test"
	benchAudience = "herald"
)

// signer signs RFC 9068 access tokens as Herald's issuer does (typ at+jwt,
// kid the RFC 7638 thumbprint), with a key of its own, for scenarios that
// need tokens without an issuer.
type signer struct {
	alg    string
	method jwt.SigningMethod
	priv   crypto.Signer
	pub    crypto.PublicKey
	kid    string
	jwk    bus.JWK
}

// newSigner returns a signer with a fresh key for alg (EdDSA or ES256).
func newSigner(alg string) (*signer, error) {
	s := &signer{alg: alg}
	switch alg {
	case bus.AlgEdDSA:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", alg, err)
		}
		s.method, s.priv, s.pub = jwt.SigningMethodEdDSA, priv, pub
	case bus.AlgES256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate %s key: %w", alg, err)
		}
		s.method, s.priv, s.pub = jwt.SigningMethodES256, priv, &priv.PublicKey
	default:
		return nil, fmt.Errorf("algorithm %q: want EdDSA or ES256", alg)
	}
	jwk, err := bus.NewJWK(s.pub)
	if err != nil {
		return nil, err
	}
	s.jwk, s.kid = jwk, jwk.Kid
	return s, nil
}

// claims returns the claims of a five-minute access token issued now.
func (s *signer) claims(sub, jti, sid string) *verifier.Claims {
	now := time.Now()
	return &verifier.Claims{
		Issuer: benchIssuer, Subject: sub, Audience: []string{benchAudience},
		IssuedAt: verifier.NewNumericDate(now), ExpiresAt: verifier.NewNumericDate(now.Add(5 * time.Minute)),
		ID: jti, ClientID: "bench", SessionID: sid, Scope: "read",
	}
}

// sign returns the compact JWS of c.
func (s *signer) sign(c *verifier.Claims) (string, error) {
	t := jwt.NewWithClaims(s.method, c)
	t.Header["typ"] = "at+jwt"
	t.Header["kid"] = s.kid
	tok, err := t.SignedString(s.priv)
	if err != nil {
		return "", fmt.Errorf("sign %s token: %w", s.alg, err)
	}
	return tok, nil
}

// keySet returns a verifier key set trusting only s's key, as a verifier
// holds it: signed by an event key it pins.
func (s *signer) keySet() (*verifier.KeySet, error) {
	events, err := newEventSigner()
	if err != nil {
		return nil, err
	}
	ks := verifier.NewKeySet(nil, quietLogger())
	ks.TrustEventKeys(events.KeyID())
	event, err := json.Marshal(events.JWK())
	if err != nil {
		return nil, err
	}
	if err := ks.Put(bus.EventKeyPrefix+events.KeyID(), event); err != nil {
		return nil, fmt.Errorf("trust event key: %w", err)
	}
	entry, err := events.SignKey(s.jwk)
	if err != nil {
		return nil, err
	}
	if err := ks.Put(s.kid, entry); err != nil {
		return nil, fmt.Errorf("trust %s key: %w", s.alg, err)
	}
	return ks, nil
}

// newEventSigner returns an event signer with a fresh key, for scenarios
// that publish events without an issuer.
func newEventSigner() (*bus.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate event key: %w", err)
	}
	return bus.NewSigner(priv, benchIssuer)
}
