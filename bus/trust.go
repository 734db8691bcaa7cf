package bus

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// External issuers. An issuer configured to trust an identity provider
// publishes, in BucketKeys, one signed trust entry for it (TrustPrefix):
// what a verifier needs to accept its access tokens (audiences,
// algorithms, the lifetime bound, claim names). It publishes each of the
// provider's keys as a token key entry bound to that issuer
// (ExternalKeyPrefix, Key.Issuer). A verifier uses such a key only for
// tokens whose iss is that issuer, and only while the issuer's trust entry
// is in the bucket. Verifiers never call the provider.
const (
	// TrustPrefix starts the names of trust entries: trust.<TrustName>.
	TrustPrefix = "trust."
	// ExternalKeyPrefix starts the names of external issuers' keys:
	// ext.<hash of issuer, kid and thumbprint> (ExternalKeyName).
	ExternalKeyPrefix = "ext."
	// BucketSignals holds the replay records of the logout tokens and SETs
	// received from outside (by issuer and jti), for as long as they could
	// be replayed, and the positions of polled SET streams. Only issuers
	// use it.
	BucketSignals = "HERALD_SIGNALS"
)

// Trust is the body of a trust entry: an external issuer whose access
// tokens verifiers accept, and how to read them.
type Trust struct {
	// Issuer is the iss of the provider's tokens, as its discovery
	// document states it.
	Issuer string `json:"iss"`
	// Audiences, if set, are the audiences accepted in this issuer's
	// tokens, in place of the verifier's own: aud must contain one.
	Audiences []string `json:"aud,omitempty"`
	// Algorithms are the signing algorithms accepted from this issuer.
	Algorithms []string `json:"algs"`
	// MaxTTL bounds exp - iat of the issuer's tokens, in seconds.
	MaxTTL int64 `json:"max_ttl"`
	// Claims names the claims that carry what revocations match.
	Claims TrustClaims `json:"claims"`
}

// TrustClaims names the claims of an external issuer's tokens that carry
// the session, the client, the tenant and the email revocations match.
// An empty name means the default; "-" means the issuer has no such claim.
type TrustClaims struct {
	// Session defaults to "sid".
	Session string `json:"session,omitempty"`
	// Client lists claims tried in order; default client_id, then azp.
	Client []string `json:"client,omitempty"`
	// Tenant has no default: tokens of the issuer carry no tenant unless
	// it is named (Entra ID's is tid).
	Tenant string `json:"tenant,omitempty"`
	// Email, if named, is matched by subject revocations as well as sub
	// (a signal may name a user by email).
	Email string `json:"email,omitempty"`
}

// Defaults of TrustClaims.
const (
	DefaultSessionClaim = "sid"
)

// DefaultClientClaims returns the default TrustClaims.Client.
func DefaultClientClaims() []string { return []string{"client_id", "azp"} }

// ExternalAlgorithms lists the algorithms accepted from external issuers.
func ExternalAlgorithms() []string { return []string{AlgRS256, AlgPS256, AlgES256, AlgEdDSA} }

// MaxExternalTTL bounds Trust.MaxTTL: revocations of external tokens are
// kept that long, so the bound stays modest.
const MaxExternalTTL = 24 * time.Hour

// Validate reports every problem with t.
func (t *Trust) Validate() error {
	var errs []error
	if err := CheckIssuer(t.Issuer); err != nil {
		errs = append(errs, err)
	}
	if len(t.Audiences) > 16 {
		errs = append(errs, errors.New("at most 16 audiences"))
	}
	for _, a := range t.Audiences {
		if a == "" || len(a) > MaxValueLen || !utf8.ValidString(a) {
			errs = append(errs, fmt.Errorf("audience %q must be 1 to %d bytes of UTF-8", a, MaxValueLen))
		}
	}
	if len(t.Algorithms) == 0 {
		errs = append(errs, errors.New("at least one algorithm is required"))
	}
	for _, a := range t.Algorithms {
		if !isExternalAlg(a) {
			errs = append(errs, fmt.Errorf("algorithm %q is not supported (want RS256, PS256, ES256 or EdDSA)", a))
		}
	}
	if t.MaxTTL <= 0 || t.MaxTTL > int64(MaxExternalTTL/time.Second) {
		errs = append(errs, fmt.Errorf("max_ttl must be 1s to %s", MaxExternalTTL))
	}
	names := append([]string{t.Claims.Session, t.Claims.Tenant, t.Claims.Email}, t.Claims.Client...)
	if len(t.Claims.Client) > 4 {
		errs = append(errs, errors.New("at most 4 client claims"))
	}
	for _, n := range names {
		if len(n) > 64 || !utf8.ValidString(n) {
			errs = append(errs, fmt.Errorf("claim name %q must be at most 64 bytes of UTF-8", n))
		}
	}
	return errors.Join(errs...)
}

// MaxLifetime returns t.MaxTTL as a duration.
func (t *Trust) MaxLifetime() time.Duration { return time.Duration(t.MaxTTL) * time.Second }

// SessionClaim returns the name of the claim carrying the session, or ""
// when the issuer has none.
func (c TrustClaims) SessionClaim() string {
	switch c.Session {
	case "":
		return DefaultSessionClaim
	case "-":
		return ""
	}
	return c.Session
}

// ClientClaims returns the names of the claims carrying the client, tried
// in order.
func (c TrustClaims) ClientClaims() []string {
	switch {
	case len(c.Client) == 0:
		return DefaultClientClaims()
	case len(c.Client) == 1 && c.Client[0] == "-":
		return nil
	}
	return c.Client
}

func isExternalAlg(a string) bool {
	for _, x := range ExternalAlgorithms() {
		if a == x {
			return true
		}
	}
	return false
}

// CheckIssuer reports whether iss can name an issuer in Herald's state:
// 1 to MaxValueLen bytes of UTF-8 without spaces or control characters.
func CheckIssuer(iss string) error {
	if iss == "" || len(iss) > MaxValueLen || !utf8.ValidString(iss) ||
		strings.ContainsFunc(iss, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("issuer %q must be 1 to %d bytes of UTF-8 without spaces or control characters", iss, MaxValueLen)
	}
	return nil
}

// TrustName returns the name of iss's trust entry in BucketKeys.
func TrustName(iss string) string { return TrustPrefix + hashName(iss) }

// ExternalKeyName returns the name in BucketKeys of key k of external
// issuer iss: it depends on the issuer, the provider's kid and the key
// itself, so that no issuer's key replaces another's.
func ExternalKeyName(iss string, k JWK) string {
	return ExternalKeyPrefix + hashName(iss+"\x00"+k.Kid+"\x00"+k.Thumbprint())
}

// hashName returns a bucket key name for s: its SHA-256, base64url.
func hashName(s string) string {
	sum := sha256.Sum256([]byte(s))
	return b64(sum[:])
}

// SignTrust returns the BucketKeys entry of t, signed by the event key,
// and the name it is stored under.
func (s *Signer) SignTrust(t Trust) (name string, value []byte, err error) {
	if err := t.Validate(); err != nil {
		return "", nil, fmt.Errorf("sign trust: %w", err)
	}
	data, err := json.Marshal(t)
	if err != nil {
		return "", nil, fmt.Errorf("sign trust %s: %w", t.Issuer, err)
	}
	name = TrustName(t.Issuer)
	value, err = s.SignEntry(BucketKeys, name, data)
	return name, value, err
}

// OpenTrust checks a trust entry stored under name in BucketKeys: signed
// by a trusted event key for that name, valid, and named after its
// issuer.
func OpenTrust(name string, value []byte, keys EventKeyFunc) (*Trust, error) {
	if len(value) > MaxKeySize {
		return nil, fmt.Errorf("%w: trust entry of %d bytes, limit %d", ErrMalformed, len(value), MaxKeySize)
	}
	data, err := OpenEntry(BucketKeys, name, value, keys)
	if err != nil {
		return nil, err
	}
	var t Trust
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%w: trust entry: %w", ErrMalformed, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%w: trust entry: %w", ErrMalformed, err)
	}
	if TrustName(t.Issuer) != name {
		return nil, fmt.Errorf("%w: trust entry for %s stored as %s", ErrMisplaced, t.Issuer, name)
	}
	return &t, nil
}

// SignExternalKey returns the BucketKeys entry of key k of trusted
// external issuer iss, whose tokens live at most maxTTL, and the name it
// is stored under (ExternalKeyName). k's kid is the provider's, and its
// alg one the provider signs with.
func (s *Signer) SignExternalKey(iss string, k JWK, maxTTL time.Duration) (name string, value []byte, err error) {
	if err := CheckIssuer(iss); err != nil {
		return "", nil, fmt.Errorf("sign external key: %w", err)
	}
	if _, err := k.ExternalPublicKey(); err != nil {
		return "", nil, fmt.Errorf("sign external key of %s: %w", iss, err)
	}
	e := &Event{ID: NewID(), Type: TypeKeyPublished, Time: time.Now().UTC(), Actor: s.issuer,
		Key: &Key{ID: k.Kid, Algorithm: k.Alg, JWK: &k, Issuer: iss, MaxTTL: int64((maxTTL + time.Second - 1) / time.Second)}}
	s.claims(e, BucketKeys)
	payload, err := Encode(e)
	if err != nil {
		return "", nil, err
	}
	protected, signature, err := s.sign(payload)
	if err != nil {
		return "", nil, fmt.Errorf("sign external key %s: %w", k.Kid, err)
	}
	value = []byte(protected + "." + b64(payload) + "." + signature)
	if len(value) > MaxKeySize {
		return "", nil, fmt.Errorf("sign external key %s: entry of %d bytes, limit %d", truncateKid(k.Kid), len(value), MaxKeySize)
	}
	return ExternalKeyName(iss, k), value, nil
}

// RevokedExternalKid returns the name, after RevokedKeyPrefix, of the
// permanent record of the revocation of key kid of external issuer iss:
// an issuer never publishes that key again, whatever the provider's key
// set says.
func RevokedExternalKid(iss, kid string) string {
	return RevokedExternalPrefix + hashName(iss+"\x00"+kid)
}

// RevokedExternalPrefix starts every RevokedExternalKid.
const RevokedExternalPrefix = "ext-"

// KeyRequest is the message a verifier publishes on SubjectKeyRequest when
// a token names a kid it does not hold for a trusted external issuer.
type KeyRequest struct {
	Issuer string `json:"iss"`
	Kid    string `json:"kid"`
}

// Signal formats (Signal.Format).
const (
	// SignalLogout is an OpenID Connect back-channel logout token.
	SignalLogout = "logout"
	// SignalPush is a SET delivered by push (RFC 8935).
	SignalPush = "push"
	// SignalPoll is a SET fetched by poll (RFC 8936).
	SignalPoll = "poll"
)

// MaxSignalToken bounds the raw signed token a Signal records, in bytes.
const MaxSignalToken = 16 << 10

// Signal is the body of a TypeSignalReceived event: a logout token or SET
// received from outside, who sent it and what it caused.
type Signal struct {
	Format string `json:"format"`
	// Issuer is the token's iss, JTI its jti.
	Issuer string `json:"iss"`
	JTI    string `json:"jti"`
	// Sender is who delivered it: the credential that pushed it, the
	// endpoint it was polled from, or the address a logout came from.
	Sender string `json:"sender,omitempty"`
	// Events are the event type URIs the token carries.
	Events []string `json:"events,omitempty"`
	// Token is the raw signed token, as received.
	Token string `json:"token"`
	// Outcome is "revoked" (Kind, Value and Seq say which revocation) or
	// "recorded" (nothing to enforce: Note says why).
	Outcome string `json:"outcome"`
	Kind    Kind   `json:"kind,omitempty"`
	Value   string `json:"value,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Validate reports whether sg is a well formed signal body.
func (sg *Signal) Validate() error {
	var errs []error
	switch sg.Format {
	case SignalLogout, SignalPush, SignalPoll:
	default:
		errs = append(errs, fmt.Errorf("unknown signal format %q", sg.Format))
	}
	switch sg.Outcome {
	case "revoked":
		if !sg.Kind.Valid() {
			errs = append(errs, errors.New("a revoking signal needs a kind"))
		}
	case "recorded":
	default:
		errs = append(errs, fmt.Errorf("unknown signal outcome %q", sg.Outcome))
	}
	if err := CheckIssuer(sg.Issuer); err != nil {
		errs = append(errs, err)
	}
	for name, v := range map[string]string{"jti": sg.JTI, "sender": sg.Sender, "value": sg.Value} {
		if len(v) > MaxValueLen || !utf8.ValidString(v) {
			errs = append(errs, fmt.Errorf("signal %s must be at most %d bytes of UTF-8", name, MaxValueLen))
		}
	}
	if len(sg.Events) > 8 {
		errs = append(errs, errors.New("at most 8 signal events"))
	}
	if sg.Token == "" || len(sg.Token) > MaxSignalToken || len(sg.Note) > 1024 {
		errs = append(errs, fmt.Errorf("signal token must be 1 to %d bytes, note at most 1024", MaxSignalToken))
	}
	return errors.Join(errs...)
}
