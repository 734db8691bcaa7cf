package bus

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Root keys certify event keys. A root key is an Ed25519 or P-256 key kept
// offline, never on an issuer host; verifiers and issuers pin it by kid
// (its RFC 7638 thumbprint, --root-keys). Two kinds of root-signed
// statements live in BucketKeys:
//
//   - eventcert.<kid>: a certificate of event key kid (EventKeyCert). An
//     event key with a valid certificate by a pinned root key is trusted,
//     pinned or not, from its not-before until its expiry, if any.
//   - revoked.event.<kid>: the revocation of event key kid
//     (EventKeyRevocation). It never expires: from then on nothing that
//     key signs is trusted, pinned or certified.
//
// Each is a compact JWS whose payload carries the root's public key; its
// thumbprint must be the header's kid and a pinned root kid.
//
// A certificate names the deployment it is for: the issuer identifier
// (iss) of the tokens there. A deployment trusts only certificates for
// its own issuer, so a root key pinned by several deployments (staging
// and production) certifies an event key for one of them only: a staging
// event key's certificate copied into production's bucket is refused
// there. A revocation names no deployment: it only refuses, so a root's
// revocation of an event key holds wherever that root is pinned.
const (
	// EventCertPrefix starts the names of event key certificates.
	EventCertPrefix = "eventcert."
	// RevokedEventKeyPrefix starts the names of event key revocations.
	RevokedEventKeyPrefix = RevokedKeyPrefix + EventKeyPrefix
	// EventCertType is the JWS typ of an event key certificate.
	EventCertType = "herald-eventkey-cert+jwt"
	// EventRevocationType is the JWS typ of an event key revocation.
	EventRevocationType = "herald-eventkey-revoked+jwt"
)

// ErrRootUntrusted is returned for a root-signed statement whose root key
// is not pinned.
var ErrRootUntrusted = errors.New("bus: statement signed by a root key that is not pinned")

// EventKeyCert certifies an event key: the payload of an eventcert entry.
type EventKeyCert struct {
	// Issuer is the issuer identifier (iss) of the deployment the event
	// key is certified for.
	Issuer string `json:"iss"`
	Bucket string `json:"aud"`
	Name   string `json:"sub"`
	// Root is the public root key that signed the certificate.
	Root JWK `json:"root"`
	// Key is the certified public event key.
	Key       JWK   `json:"key"`
	IssuedAt  int64 `json:"iat"`
	NotBefore int64 `json:"nbf"`
	// Expires, if not 0, ends the certificate (Unix seconds).
	Expires int64 `json:"exp,omitempty"`
}

// EventKeyRevocation revokes an event key for good: the payload of a
// revoked.event entry.
type EventKeyRevocation struct {
	Bucket   string `json:"aud"`
	Name     string `json:"sub"`
	Root     JWK    `json:"root"`
	Kid      string `json:"kid"`
	IssuedAt int64  `json:"iat"`
	Reason   string `json:"reason,omitempty"`
}

// RootKeyFunc reports whether a root key kid is pinned.
type RootKeyFunc func(kid string) bool

// CertifyEventKey returns the eventcert entry of event key key, signed by
// root (a Signer over the root private key), for the deployment whose
// tokens carry issuer as iss: its name in BucketKeys and its value. It is
// valid from notBefore, and until expires unless that is zero.
func CertifyEventKey(root *Signer, issuer string, key JWK, notBefore, expires time.Time) (name string, value []byte, err error) {
	if issuer == "" || len(issuer) > MaxValueLen {
		return "", nil, fmt.Errorf("certify event key: bad issuer %q: want the issuer identifier (iss) of the deployment", issuer)
	}
	if _, err := key.PublicKey(); err != nil {
		return "", nil, fmt.Errorf("certify event key: %w", err)
	}
	name = EventCertPrefix + key.Kid
	c := EventKeyCert{Issuer: issuer, Bucket: BucketKeys, Name: name, Root: root.JWK(), Key: key,
		IssuedAt: time.Now().Unix(), NotBefore: notBefore.Unix()}
	if !expires.IsZero() {
		if !expires.After(notBefore) {
			return "", nil, errors.New("certify event key: expiry is not after not-before")
		}
		c.Expires = expires.Unix()
	}
	value, err = root.signStatement(EventCertType, c)
	return name, value, err
}

// RevokeEventKey returns the revoked.event entry of event key kid, signed
// by root: its name in BucketKeys and its value.
func RevokeEventKey(root *Signer, kid, reason string) (name string, value []byte, err error) {
	if kid == "" || strings.ContainsAny(kid, ". *>") || len(kid) > MaxValueLen {
		return "", nil, fmt.Errorf("revoke event key: bad kid %q", kid)
	}
	name = RevokedEventKeyPrefix + kid
	r := EventKeyRevocation{Bucket: BucketKeys, Name: name, Root: root.JWK(), Kid: kid,
		IssuedAt: time.Now().Unix(), Reason: reason}
	value, err = root.signStatement(EventRevocationType, r)
	return name, value, err
}

func (s *Signer) signStatement(typ string, v any) ([]byte, error) {
	payload, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", typ, err)
	}
	protected, signature, err := s.signAs(typ, payload)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", typ, err)
	}
	return []byte(protected + "." + b64(payload) + "." + signature), nil
}

// openStatement checks a root-signed statement of type typ and decodes its
// payload into v, which must carry the root's public key (rootOf).
func openStatement(typ string, value []byte, roots RootKeyFunc, v any, rootOf func() JWK) error {
	if len(value) > MaxKeySize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(value), MaxKeySize)
	}
	protected, payload, signature, ok := splitJWS(string(value))
	if !ok {
		return ErrUnsigned
	}
	raw, err := unb64(payload)
	if err != nil {
		return fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, typ, err)
	}
	root := rootOf()
	if roots == nil || !roots(root.Kid) {
		return fmt.Errorf("%w: root kid %q", ErrRootUntrusted, root.Kid)
	}
	pub, err := root.PublicKey()
	if err != nil {
		return fmt.Errorf("%w: root key: %w", ErrMalformed, err)
	}
	_, err = verifyJWSKid(typ, protected, raw, signature, func(kid string) (JWK, crypto.PublicKey, bool) {
		return root, pub, kid == root.Kid
	})
	return err
}

// OpenEventKeyCert checks the eventcert entry stored under name: signed by
// a pinned root key, for issuer, BucketKeys and name, valid at now. It
// returns the certified event key and the certificate's expiry (zero if
// none).
func OpenEventKeyCert(name string, value []byte, issuer string, roots RootKeyFunc, now time.Time) (JWK, crypto.PublicKey, time.Time, error) {
	var c EventKeyCert
	if err := openStatement(EventCertType, value, roots, &c, func() JWK { return c.Root }); err != nil {
		return JWK{}, nil, time.Time{}, err
	}
	if c.Bucket != BucketKeys || c.Name != name || name != EventCertPrefix+c.Key.Kid {
		return JWK{}, nil, time.Time{}, fmt.Errorf("%w: certificate of %s stored as %s", ErrMisplaced, c.Key.Kid, name)
	}
	if issuer == "" || c.Issuer != issuer {
		return JWK{}, nil, time.Time{}, fmt.Errorf("%w: certificate of event key %s is for issuer %q, this deployment's is %q", ErrMisplaced, c.Key.Kid, c.Issuer, issuer)
	}
	pub, err := c.Key.PublicKey()
	if err != nil {
		return JWK{}, nil, time.Time{}, fmt.Errorf("%w: certified key: %w", ErrMalformed, err)
	}
	var exp time.Time
	if c.Expires != 0 {
		exp = time.Unix(c.Expires, 0)
	}
	switch {
	case now.Before(time.Unix(c.NotBefore, 0)):
		return JWK{}, nil, time.Time{}, fmt.Errorf("event key %s: certificate not valid before %s", c.Key.Kid, time.Unix(c.NotBefore, 0).UTC())
	case !exp.IsZero() && !now.Before(exp):
		return JWK{}, nil, time.Time{}, fmt.Errorf("event key %s: certificate expired at %s", c.Key.Kid, exp.UTC())
	}
	return c.Key, pub, exp, nil
}

// OpenEventKeyRevocation checks the revoked.event entry stored under name,
// signed by a pinned root key, and returns the revoked event key's kid.
func OpenEventKeyRevocation(name string, value []byte, roots RootKeyFunc) (string, error) {
	var r EventKeyRevocation
	if err := openStatement(EventRevocationType, value, roots, &r, func() JWK { return r.Root }); err != nil {
		return "", err
	}
	if r.Bucket != BucketKeys || r.Name != name || name != RevokedEventKeyPrefix+r.Kid {
		return "", fmt.Errorf("%w: revocation of event key %s stored as %s", ErrMisplaced, r.Kid, name)
	}
	return r.Kid, nil
}

// SignatureKid returns the kid in the header of a delivery's detached
// signature, or "" if it has none that parses. It says which event key an
// event claims, before any check.
func SignatureKid(d Delivery) string {
	protected, _, _, ok := splitJWS(d.Header.Get(HeaderSignature))
	if !ok {
		return ""
	}
	hb, err := unb64(protected)
	if err != nil || len(hb) > 1024 {
		return ""
	}
	var h jwsHeader
	if json.Unmarshal(hb, &h) != nil {
		return ""
	}
	return h.Kid
}

// StatementName returns the BucketKeys name a root-signed statement
// (certificate or event key revocation) is stored under, from its
// payload, without checking its signature: the readers of the bucket do.
func StatementName(value []byte) (string, error) {
	if len(value) > MaxKeySize {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(value), MaxKeySize)
	}
	_, payload, _, ok := splitJWS(strings.TrimSpace(string(value)))
	if !ok {
		return "", ErrUnsigned
	}
	raw, err := unb64(payload)
	if err != nil {
		return "", fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	var p struct {
		Bucket string `json:"aud"`
		Name   string `json:"sub"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if p.Bucket != BucketKeys || !(strings.HasPrefix(p.Name, EventCertPrefix) || strings.HasPrefix(p.Name, RevokedEventKeyPrefix)) {
		return "", fmt.Errorf("%w: not a root-signed statement of %s", ErrMalformed, BucketKeys)
	}
	return p.Name, nil
}
