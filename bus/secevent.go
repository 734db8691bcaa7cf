package bus

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Events are Security Event Tokens (RFC 8417): the payload of every message
// is the event's JSON, which also carries the SET claims iss, jti (the event
// id), iat, aud (the stream it belongs to) and events, and the message's
// HeaderSignature holds a detached JWS (RFC 7515 appendix F) over those
// exact bytes, with typ secevent+jwt. Reattached, header.payload.signature
// is the compact SET. Verifiers accept an event only when an event key they
// trust signed it for the stream and subject it arrived on.
//
// Token keys in BucketKeys are compact SETs too, of type key.published with
// the JWK in the key body, signed by an event key for audience BucketKeys
// and the entry's name. Event keys themselves are stored under
// EventKeyPrefix plus their kid, which is the RFC 7638 thumbprint of the key,
// so that a pinned kid names exactly one key.
const (
	// HeaderSignature is the message header holding an event's detached JWS.
	HeaderSignature = "Herald-Signature"
	// SecEventType is the JWS typ of Herald's signed events (RFC 8417).
	SecEventType = "secevent+jwt"
	// EventKeyPrefix starts the names of event keys in BucketKeys.
	EventKeyPrefix = "event."
	// EventTypePrefix starts the event type URIs in a SET's events claim.
	EventTypePrefix = "urn:herald:event:"
)

// Errors for events that fail signature checks, wrapped by OpenEvent and
// OpenKey. Callers count them by Reason.
var (
	ErrUnsigned  = errors.New("bus: event is not signed")
	ErrUntrusted = errors.New("bus: event signed by an untrusted key")
	ErrForged    = errors.New("bus: event signature does not verify")
	ErrMisplaced = errors.New("bus: event signed for another stream or subject")
)

// Reason names why an event was refused, for logs and metrics: unsigned,
// untrusted_key, bad_signature, wrong_stream or malformed.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrUnsigned):
		return "unsigned"
	case errors.Is(err, ErrUntrusted):
		return "untrusted_key"
	case errors.Is(err, ErrForged):
		return "bad_signature"
	case errors.Is(err, ErrMisplaced):
		return "wrong_stream"
	}
	return "malformed"
}

// SET holds the RFC 8417 claims of a signed event.
type SET struct {
	Issuer   string              `json:"iss,omitempty"`
	JTI      string              `json:"jti,omitempty"`
	IssuedAt int64               `json:"iat,omitempty"`
	Audience string              `json:"aud,omitempty"`
	Events   map[string]struct{} `json:"events,omitempty"`
}

// Signer signs events with an issuer's event key.
type Signer struct {
	priv   crypto.Signer
	jwk    JWK
	issuer string
	maxTTL time.Duration // stated in the token key entries it signs
}

// NewSigner returns a Signer for an Ed25519 or ECDSA P-256 private key.
// issuer becomes the iss claim of every event.
func NewSigner(priv crypto.Signer, issuer string) (*Signer, error) {
	jwk, err := NewJWK(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("event signer: %w", err)
	}
	return &Signer{priv: priv, jwk: jwk, issuer: issuer}, nil
}

// KeyID returns the kid of the event key: its RFC 7638 thumbprint, which
// verifiers pin.
func (s *Signer) KeyID() string { return s.jwk.Kid }

// JWK returns the public event key.
func (s *Signer) JWK() JWK { return s.jwk }

// SignEvent fills the SET claims of e for its stream, encodes it and
// returns the payload and its detached JWS.
func (s *Signer) SignEvent(e *Event) (payload []byte, sig string, err error) {
	s.claims(e, e.Stream())
	payload, err = Encode(e)
	if err != nil {
		return nil, "", err
	}
	protected, signature, err := s.sign(payload)
	if err != nil {
		return nil, "", fmt.Errorf("sign %s event %s: %w", e.Type, e.ID, err)
	}
	return payload, protected + ".." + signature, nil
}

// SetMaxTokenLifetime makes the token key entries s signs state d as the
// longest lifetime of the tokens their key signs (Key.MaxTTL): the
// issuer's max_access_ttl. Call it before s is used.
func (s *Signer) SetMaxTokenLifetime(d time.Duration) { s.maxTTL = d }

// SignKey returns the BucketKeys form of token key k: a compact SET of type
// key.published with k in its body, and the signer's max token lifetime
// when one is set.
func (s *Signer) SignKey(k JWK) ([]byte, error) {
	e := &Event{ID: NewID(), Type: TypeKeyPublished, Time: time.Now().UTC(), Actor: s.issuer,
		Key: &Key{ID: k.Kid, Algorithm: k.Alg, JWK: &k, MaxTTL: int64((s.maxTTL + time.Second - 1) / time.Second)}}
	s.claims(e, BucketKeys)
	payload, err := Encode(e)
	if err != nil {
		return nil, err
	}
	protected, signature, err := s.sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign key %s: %w", k.Kid, err)
	}
	return []byte(protected + "." + b64(payload) + "." + signature), nil
}

func (s *Signer) claims(e *Event, aud string) {
	e.SET = SET{Issuer: s.issuer, JTI: e.ID, IssuedAt: e.Time.Unix(), Audience: aud,
		Events: map[string]struct{}{EventTypePrefix + string(e.Type): {}}}
}

type jwsHeader struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit,omitempty"`
}

// sign returns the protected header and signature of payload, a SET,
// base64url.
func (s *Signer) sign(payload []byte) (protected, signature string, err error) {
	return s.signAs(SecEventType, payload)
}

// signAs returns the protected header of type typ and the signature of
// payload, base64url.
func (s *Signer) signAs(typ string, payload []byte) (protected, signature string, err error) {
	h, err := json.Marshal(jwsHeader{Alg: s.jwk.Alg, Kid: s.jwk.Kid, Typ: typ})
	if err != nil {
		return "", "", err
	}
	protected = b64(h)
	input := signingInput(protected, payload)
	var sig []byte
	switch priv := s.priv.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(priv, input)
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256(input)
		r, ss, err := ecdsa.Sign(rand.Reader, priv, sum[:])
		if err != nil {
			return "", "", err
		}
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	default:
		return "", "", fmt.Errorf("unsupported event key %T", s.priv)
	}
	return protected, b64(sig), nil
}

func signingInput(protected string, payload []byte) []byte {
	return []byte(protected + "." + b64(payload))
}

// EventKeyFunc returns the trusted event key with the given kid.
type EventKeyFunc func(kid string) (JWK, crypto.PublicKey, bool)

// OpenEvent checks the signature of a message read from stream and returns
// its event. It refuses messages without a signature (ErrUnsigned), signed
// by a key that keys does not trust (ErrUntrusted), whose signature does not
// verify (ErrForged), signed for another stream or subject (ErrMisplaced),
// and malformed ones (ErrMalformed).
func OpenEvent(d Delivery, stream string, keys EventKeyFunc) (*Event, error) {
	sig := d.Header.Get(HeaderSignature)
	if sig == "" {
		return nil, ErrUnsigned
	}
	protected, detached, signature, ok := splitJWS(sig)
	if !ok || detached != "" {
		return nil, fmt.Errorf("%w: %s is not a detached JWS", ErrMalformed, HeaderSignature)
	}
	e, err := open(protected, d.Data, signature, keys)
	if err != nil {
		return nil, err
	}
	if e.Audience != stream || d.Subject != e.Subject() {
		return nil, fmt.Errorf("%w: signed for %s on %s, read from %s on %s", ErrMisplaced, e.Audience, e.Subject(), stream, d.Subject)
	}
	return e, nil
}

// KeyEntry is a token key entry of BucketKeys after its checks.
type KeyEntry struct {
	JWK    JWK
	Public crypto.PublicKey
	// MaxLifetime is the longest lifetime (exp - iat) of a token the key
	// signs, as the entry states it, or DefaultMaxTokenLifetime.
	MaxLifetime time.Duration
	// EventKid is the kid of the event key that signed the entry.
	EventKid string
	// Issuer is, for an external issuer's key (ExternalKeyPrefix), that
	// issuer: the only iss the key verifies tokens of. Empty for Herald's
	// own keys.
	Issuer string
}

// OpenKey checks a token key entry of BucketKeys stored under name and
// returns the key (OpenKeyEntry).
func OpenKey(name string, value []byte, keys EventKeyFunc) (JWK, crypto.PublicKey, error) {
	k, err := OpenKeyEntry(name, value, keys)
	return k.JWK, k.Public, err
}

// OpenKeyEntry checks a token key entry of BucketKeys stored under name
// and returns it. It refuses entries that are not a SET of type
// key.published signed by a trusted event key for BucketKeys and name,
// Herald keys whose kid is not their thumbprint, and external issuers'
// keys not stored under ExternalKeyName.
func OpenKeyEntry(name string, value []byte, keys EventKeyFunc) (KeyEntry, error) {
	if len(value) > MaxKeySize {
		return KeyEntry{}, fmt.Errorf("%w: key entry of %d bytes, limit %d", ErrMalformed, len(value), MaxKeySize)
	}
	protected, payload, signature, ok := splitJWS(string(value))
	if !ok {
		return KeyEntry{}, ErrUnsigned
	}
	raw, err := unb64(payload)
	if err != nil {
		return KeyEntry{}, fmt.Errorf("%w: key entry payload: %w", ErrMalformed, err)
	}
	signer, err := verifyJWSKid(SecEventType, protected, raw, signature, keys)
	if err != nil {
		return KeyEntry{}, err
	}
	e, err := decodeSET(raw)
	if err != nil {
		return KeyEntry{}, err
	}
	if e.Type != TypeKeyPublished || e.Key.JWK == nil {
		return KeyEntry{}, fmt.Errorf("%w: key entry of type %s without a key", ErrMalformed, e.Type)
	}
	k := *e.Key.JWK
	external := e.Key.Issuer != ""
	wantName := k.Kid
	if external {
		wantName = ExternalKeyName(e.Key.Issuer, k)
	}
	if e.Audience != BucketKeys || name != wantName || k.Kid != e.Key.ID || k.Alg != e.Key.Algorithm ||
		external != strings.HasPrefix(name, ExternalKeyPrefix) {
		return KeyEntry{}, fmt.Errorf("%w: key %s signed for %s in %s", ErrMisplaced, name, e.Key.ID, e.Audience)
	}
	if e.Key.MaxTTL < 0 {
		return KeyEntry{}, fmt.Errorf("%w: key %s: negative max_ttl", ErrMalformed, name)
	}
	var pub crypto.PublicKey
	if external {
		pub, err = k.ExternalPublicKey()
	} else {
		pub, err = k.PublicKey()
	}
	if err != nil {
		return KeyEntry{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	life := DefaultMaxTokenLifetime
	if e.Key.MaxTTL > 0 {
		life = time.Duration(min(e.Key.MaxTTL, int64(maxStatedLifetime/time.Second))) * time.Second
	}
	return KeyEntry{JWK: k, Public: pub, MaxLifetime: life, EventKid: signer, Issuer: e.Key.Issuer}, nil
}

// maxStatedLifetime caps the max_ttl a key entry may state, so that the
// seconds convert to a Duration without overflow.
const maxStatedLifetime = 100 * 365 * 24 * time.Hour

// verifyJWS checks that protected.payload.signature is a JWS of type typ
// signed by a key that keys trusts.
func verifyJWS(typ, protected string, payload []byte, signature string, keys EventKeyFunc) error {
	_, err := verifyJWSKid(typ, protected, payload, signature, keys)
	return err
}

// verifyJWSKid is verifyJWS that also returns the kid of the signing key.
func verifyJWSKid(typ, protected string, payload []byte, signature string, keys EventKeyFunc) (string, error) {
	hb, err := unb64(protected)
	if err != nil || len(hb) > 1024 {
		return "", fmt.Errorf("%w: bad JWS header", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	var h jwsHeader
	if err := dec.Decode(&h); err != nil {
		return "", fmt.Errorf("%w: JWS header: %w", ErrMalformed, err)
	}
	if h.Typ != typ || len(h.Crit) > 0 || h.Kid == "" {
		return "", fmt.Errorf("%w: JWS header must have typ %s, a kid and no crit", ErrMalformed, typ)
	}
	jwk, pub, ok := keys(h.Kid)
	if !ok {
		return "", fmt.Errorf("%w: kid %q", ErrUntrusted, h.Kid)
	}
	if h.Alg != jwk.Alg {
		return "", fmt.Errorf("%w: alg %q for a %s key", ErrForged, h.Alg, jwk.Alg)
	}
	sig, err := unb64(signature)
	if err != nil || !verify(pub, signingInput(protected, payload), sig) {
		return "", fmt.Errorf("%w: kid %q", ErrForged, h.Kid)
	}
	return h.Kid, nil
}

// open verifies the JWS protected.payload.signature and decodes payload as
// an event whose SET claims match it.
func open(protected string, payload []byte, signature string, keys EventKeyFunc) (*Event, error) {
	if err := verifyJWS(SecEventType, protected, payload, signature, keys); err != nil {
		return nil, err
	}
	return decodeSET(payload)
}

// decodeSET decodes payload, verified, as an event whose SET claims match it.
func decodeSET(payload []byte) (*Event, error) {
	e, err := Decode(payload)
	if err != nil {
		return nil, err
	}
	if e.JTI != e.ID || e.IssuedAt == 0 || len(e.Events) != 1 {
		return nil, fmt.Errorf("%w: SET claims do not match the event", ErrMalformed)
	}
	if _, ok := e.Events[EventTypePrefix+string(e.Type)]; !ok {
		return nil, fmt.Errorf("%w: SET events claim does not name type %s", ErrMalformed, e.Type)
	}
	return e, nil
}

func verify(pub crypto.PublicKey, input, sig []byte) bool {
	switch p := pub.(type) {
	case ed25519.PublicKey:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(p, input, sig)
	case *ecdsa.PublicKey:
		if len(sig) != 64 {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		sum := sha256.Sum256(input)
		return ecdsa.Verify(p, sum[:], r, s)
	}
	return false
}

// splitJWS splits a compact JWS into its three parts.
func splitJWS(s string) (protected, payload, signature string, ok bool) {
	protected, rest, ok1 := strings.Cut(s, ".")
	payload, signature, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(signature, ".") || protected == "" || signature == "" {
		return "", "", "", false
	}
	return protected, payload, signature, true
}

// ParseEventKey decodes an event key entry of BucketKeys stored under name:
// a JWK whose kid, its thumbprint, is name without EventKeyPrefix.
func ParseEventKey(name string, value []byte) (JWK, crypto.PublicKey, error) {
	k, pub, err := ParseJWK(value)
	if err != nil {
		return JWK{}, nil, err
	}
	if EventKeyPrefix+k.Kid != name {
		return JWK{}, nil, fmt.Errorf("event key %s: stored under %q", k.Kid, name)
	}
	return k, pub, nil
}

// EntryType is the JWS typ of the signed entries issuers keep in buckets
// other than BucketKeys (SignEntry).
const EntryType = "herald-entry+jwt"

// entry is the payload of a signed bucket entry: the data, bound to the
// bucket and name it is stored under.
type entry struct {
	Bucket string          `json:"aud"`
	Name   string          `json:"sub"`
	Data   json.RawMessage `json:"data"`
}

// SignEntry returns data (JSON) signed by the event key for the entry name
// of bucket: a compact JWS of type EntryType. Issuers sign the state they
// share through buckets so that write access to NATS is not enough to
// forge it.
func (s *Signer) SignEntry(bucket, name string, data json.RawMessage) ([]byte, error) {
	payload, err := json.Marshal(entry{Bucket: bucket, Name: name, Data: data})
	if err != nil {
		return nil, fmt.Errorf("sign entry %s: %w", name, err)
	}
	protected, signature, err := s.signAs(EntryType, payload)
	if err != nil {
		return nil, fmt.Errorf("sign entry %s: %w", name, err)
	}
	return []byte(protected + "." + b64(payload) + "." + signature), nil
}

// OpenEntry checks an entry written by SignEntry and stored under name in
// bucket, and returns its data. It refuses entries not signed by a key
// that keys trusts, and entries signed for another bucket or name.
func OpenEntry(bucket, name string, value []byte, keys EventKeyFunc) (json.RawMessage, error) {
	protected, payload, signature, ok := splitJWS(string(value))
	if !ok {
		return nil, ErrUnsigned
	}
	raw, err := unb64(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: entry payload: %w", ErrMalformed, err)
	}
	if err := verifyJWS(EntryType, protected, raw, signature, keys); err != nil {
		return nil, err
	}
	var e entry
	if err := json.Unmarshal(raw, &e); err != nil {
		return nil, fmt.Errorf("%w: entry: %w", ErrMalformed, err)
	}
	if e.Bucket != bucket || e.Name != name {
		return nil, fmt.Errorf("%w: entry signed for %s in %s, read as %s in %s", ErrMisplaced, e.Name, e.Bucket, name, bucket)
	}
	return e.Data, nil
}

// RevokedKeyPrefix starts the names of the permanent records of revoked
// keys in BucketKeys: revoked.<kid>.
const RevokedKeyPrefix = "revoked."

// RevokedKey is the record stored under RevokedKeyPrefix plus a token
// key's kid once that key is revoked: every verifier refuses the key from
// then on, and no issuer publishes it again. Records never expire.
type RevokedKey struct {
	Kid    string    `json:"kid"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// SignRevokedKey returns the BucketKeys record of the revocation of token
// key kid, signed by the event key for its entry name.
func (s *Signer) SignRevokedKey(r RevokedKey) ([]byte, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("sign revoked key %s: %w", r.Kid, err)
	}
	return s.SignEntry(BucketKeys, RevokedKeyPrefix+r.Kid, data)
}

// ParseRevokedKey decodes the record of a revoked token key stored under
// name in BucketKeys and returns the key's kid. It does not require a
// trusted signature: a record can only make a verifier refuse a key, and
// whoever can write the bucket can already delete that key. It refuses
// records stored under another name than their kid's.
func ParseRevokedKey(name string, value []byte) (string, error) {
	if len(value) > MaxKeySize {
		return "", fmt.Errorf("%w: revoked key record of %d bytes, limit %d", ErrMalformed, len(value), MaxKeySize)
	}
	kid, ok := strings.CutPrefix(name, RevokedKeyPrefix)
	if !ok || kid == "" || strings.HasPrefix(kid, EventKeyPrefix) {
		return "", fmt.Errorf("%w: %q does not name a revoked token key", ErrMalformed, name)
	}
	_, payload, _, ok := splitJWS(string(value))
	if !ok {
		return "", ErrUnsigned
	}
	raw, err := unb64(payload)
	if err != nil {
		return "", fmt.Errorf("%w: revoked key record: %w", ErrMalformed, err)
	}
	var e entry
	var r RevokedKey
	if err := json.Unmarshal(raw, &e); err != nil {
		return "", fmt.Errorf("%w: revoked key record: %w", ErrMalformed, err)
	}
	if err := json.Unmarshal(e.Data, &r); err != nil {
		return "", fmt.Errorf("%w: revoked key record: %w", ErrMalformed, err)
	}
	if e.Bucket != BucketKeys || e.Name != name || r.Kid != kid {
		return "", fmt.Errorf("%w: revoked key record of %s stored as %s", ErrMisplaced, r.Kid, name)
	}
	return kid, nil
}
