package bus

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Type names what an event reports. It is the "type" member of the payload.
type Type string

// Event types. Revocations go to StreamRevocations; everything else to StreamAudit.
const (
	TypeRevocation     Type = "revocation"
	TypeSessionCreated Type = "session.created"
	// TypeSessionEnded reports a session ended by logout, DELETE or reuse
	// detection; the revocation that enforces it is a separate event.
	TypeSessionEnded Type = "session.ended"
	TypeTokenIssued  Type = "token.issued"
	TypeKeyPublished Type = "key.published"
	TypeKeyRetired   Type = "key.retired"
	TypeKeyRemoved   Type = "key.removed"
	TypeAdminRevoke  Type = "admin.revoke"
	// TypeAdminClient reports a change to a machine client: created,
	// secret rotated, deleted.
	TypeAdminClient Type = "admin.client"
	// TypeAdminKey reports a key rotation asked for by an admin.
	TypeAdminKey Type = "admin.key"
	// TypeAdminCredential reports a change to a named admin credential.
	TypeAdminCredential Type = "admin.credential"
	// TypeAdminSession reports a session ended by an admin.
	TypeAdminSession Type = "admin.session"
	// TypeAdminSSF reports an operator's change to a receiver's SSF
	// stream: its status set, or the stream deleted.
	TypeAdminSSF Type = "admin.ssf"
	// TypeSignalReceived reports a security signal received from outside:
	// an OpenID Connect back-channel logout token or a Shared Signals SET,
	// with what it caused.
	TypeSignalReceived Type = "signal.received"
)

// MaxValueLen bounds revocation values, subjects, tenants and other
// identifiers carried in events, in bytes.
const MaxValueLen = 256

// MaxEventSize bounds an encoded event, in bytes. Decode refuses larger
// ones. It stays below NATS's default max_payload of 1 MiB.
const MaxEventSize = 960 << 10

// MaxBulkValues bounds the values of one bulk revocation event.
const MaxBulkValues = 20000

// ErrMalformed is returned (wrapped) by Decode for payloads that are not a
// valid event.
var ErrMalformed = errors.New("bus: malformed event")

// Event is one entry of the event log. The JSON form is the public wire
// format: id (also the Nats-Msg-Id), type, time, actor, and exactly one
// kind-specific body matching type.
type Event struct {
	ID    string    `json:"id"`
	Type  Type      `json:"type"`
	Time  time.Time `json:"time"`
	Actor string    `json:"actor"`

	Revocation *Revocation `json:"revocation,omitempty"`
	Session    *Session    `json:"session,omitempty"`
	Token      *Token      `json:"token,omitempty"`
	Key        *Key        `json:"key,omitempty"`
	Admin      *Admin      `json:"admin,omitempty"`
	Snapshot   *Snapshot   `json:"snapshot,omitempty"`
	Signal     *Signal     `json:"signal,omitempty"`

	// SET holds the Security Event Token claims, filled when the event is
	// signed (see HeaderSignature).
	SET
}

// Revocation is the body of a TypeRevocation event. There is no un-revoke:
// a revocation ends only when Until passes, once every token it could match
// has expired.
type Revocation struct {
	Kind  Kind   `json:"kind"`
	Value string `json:"value,omitempty"`
	// Values holds many values of one kind in one event, for bulk
	// revocation; then Value is empty. At most MaxBulkValues.
	Values []string `json:"values,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// At is the revocation time: kinds that reject by issued-at reject tokens
	// with iat at or before it.
	At time.Time `json:"at"`
	// Until is when the revocation can be forgotten: At plus the longest
	// access token lifetime plus leeway.
	Until time.Time `json:"until"`
	// Issuer, if set, limits the revocation to the tokens whose iss it
	// is: Herald's own issuer or a trusted external one. Without it a
	// revocation matches the tokens of every issuer.
	Issuer string `json:"iss,omitempty"`
}

// Session is the body of a TypeSessionCreated event.
type Session struct {
	ID       string    `json:"sid"`
	Subject  string    `json:"sub"`
	Tenant   string    `json:"tenant,omitempty"`
	ClientID string    `json:"client_id,omitempty"`
	Scope    string    `json:"scope,omitempty"`
	Expires  time.Time `json:"expires"`
	// Reason says why a session ended (session.ended only).
	Reason string `json:"reason,omitempty"`
}

// Token is the body of a TypeTokenIssued event. It never holds the token itself.
type Token struct {
	ID        string    `json:"jti"`
	SessionID string    `json:"sid,omitempty"`
	Subject   string    `json:"sub"`
	Tenant    string    `json:"tenant,omitempty"`
	ClientID  string    `json:"client_id,omitempty"`
	KeyID     string    `json:"kid"`
	IssuedAt  time.Time `json:"iat"`
	Expires   time.Time `json:"exp"`
}

// Key is the body of key events: the kid and algorithm of a public key in
// BucketKeys.
type Key struct {
	ID        string `json:"kid"`
	Algorithm string `json:"alg"`
	// JWK is the public key itself, in the signed entries of BucketKeys.
	JWK *JWK `json:"jwk,omitempty"`
	// MaxTTL is, in the signed entries of BucketKeys, the longest lifetime
	// (exp - iat, in seconds) of a token the key signs: the issuer's
	// max_access_ttl. Verifiers refuse longer tokens; an entry without it
	// means DefaultMaxTokenLifetime.
	MaxTTL int64 `json:"max_ttl,omitempty"`
	// Issuer, in the entry of a trusted external issuer's key
	// (ExternalKeyPrefix), is that issuer: the key verifies only tokens
	// whose iss it is. Empty for Herald's own keys.
	Issuer string `json:"iss,omitempty"`
}

// Admin is the body of admin events: who did what, from where, and why.
type Admin struct {
	Action string `json:"action"`
	Source string `json:"source,omitempty"`
	Reason string `json:"reason,omitempty"`
	Kind   Kind   `json:"kind,omitempty"`
	Value  string `json:"value,omitempty"`
	// Seq is the HERALD stream sequence of the revocation this action caused.
	Seq uint64 `json:"seq,omitempty"`
	// Count is how many values a bulk action covered.
	Count int `json:"count,omitempty"`
	// Issuer is the iss a revocation was limited to, if any.
	Issuer string `json:"iss,omitempty"`
}

// NewID returns a new event id: 32 hex digits, a millisecond timestamp then
// random bits, so ids sort roughly by creation time.
func NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(fmt.Sprintf("bus: read random: %v", err)) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// Subject returns the subject e is published on.
func (e *Event) Subject() string {
	switch e.Type {
	case TypeRevocation:
		return RevokeSubject(e.Revocation.Kind)
	case TypeTokenIssued:
		return IssueSubject(e.Token.Tenant)
	case TypeSessionCreated, TypeSessionEnded:
		return SubjectSessionPrefix + strings.TrimPrefix(string(e.Type), "session.")
	case TypeKeyPublished, TypeKeyRetired, TypeKeyRemoved:
		return SubjectKeyPrefix + strings.TrimPrefix(string(e.Type), "key.")
	case TypeAdminRevoke, TypeAdminClient, TypeAdminKey, TypeAdminCredential, TypeAdminSession, TypeAdminSSF:
		return SubjectAdminPrefix + strings.TrimPrefix(string(e.Type), "admin.")
	case TypeSnapshotChunk:
		return SnapshotSubject(e.Snapshot.Index)
	case TypeSignalReceived:
		return SubjectSignalPrefix + "received"
	}
	return ""
}

// Stream returns the name of the stream e belongs to.
func (e *Event) Stream() string {
	switch e.Type {
	case TypeRevocation:
		return StreamRevocations
	case TypeSnapshotChunk:
		return StreamSnapshots
	}
	return StreamAudit
}

// Validate reports whether e is well formed: known type, a body that matches
// it and nothing else, bounded identifiers.
func (e *Event) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if e.ID == "" || len(e.ID) > 64 {
		bad("id must be 1 to 64 bytes")
	}
	if e.Time.IsZero() {
		bad("time is missing")
	}
	if len(e.Actor) > MaxValueLen {
		bad("actor is longer than %d bytes", MaxValueLen)
	}
	checkValue := func(name, v string, required bool) {
		switch {
		case required && v == "":
			bad("%s is missing", name)
		case len(v) > MaxValueLen:
			bad("%s is longer than %d bytes", name, MaxValueLen)
		case !utf8.ValidString(v):
			bad("%s is not valid UTF-8", name)
		}
	}
	bodies := 0
	for _, present := range []bool{e.Revocation != nil, e.Session != nil, e.Token != nil, e.Key != nil, e.Admin != nil, e.Snapshot != nil, e.Signal != nil} {
		if present {
			bodies++
		}
	}
	if bodies != 1 {
		bad("want exactly one body, have %d", bodies)
	}
	switch e.Type {
	case TypeRevocation:
		r := e.Revocation
		if r == nil {
			bad("revocation body is missing")
			break
		}
		if err := r.Validate(); err != nil {
			errs = append(errs, err)
		}
	case TypeSessionCreated, TypeSessionEnded:
		if e.Session == nil {
			bad("session body is missing")
			break
		}
		checkValue("sid", e.Session.ID, true)
		checkValue("sub", e.Session.Subject, true)
	case TypeTokenIssued:
		if e.Token == nil {
			bad("token body is missing")
			break
		}
		checkValue("jti", e.Token.ID, true)
		checkValue("sub", e.Token.Subject, true)
		checkValue("tenant", e.Token.Tenant, false)
	case TypeKeyPublished, TypeKeyRetired, TypeKeyRemoved:
		if e.Key == nil {
			bad("key body is missing")
			break
		}
		checkValue("kid", e.Key.ID, true)
		checkValue("key iss", e.Key.Issuer, false)
	case TypeSignalReceived:
		if e.Signal == nil {
			bad("signal body is missing")
			break
		}
		if err := e.Signal.Validate(); err != nil {
			errs = append(errs, err)
		}
	case TypeAdminRevoke, TypeAdminClient, TypeAdminKey, TypeAdminCredential, TypeAdminSession, TypeAdminSSF:
		if e.Admin == nil {
			bad("admin body is missing")
			break
		}
		checkValue("action", e.Admin.Action, true)
	case TypeSnapshotChunk:
		if e.Snapshot == nil {
			bad("snapshot body is missing")
			break
		}
		if err := e.Snapshot.Validate(); err != nil {
			errs = append(errs, err)
		}
	default:
		bad("unknown type %q", e.Type)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrMalformed, errors.Join(errs...))
	}
	return nil
}

// AllValues returns the values r revokes: Values for a bulk revocation,
// else Value (empty for KindAll).
func (r *Revocation) AllValues() []string {
	if len(r.Values) > 0 {
		return r.Values
	}
	return []string{r.Value}
}

// Validate reports whether r is a well formed revocation: a valid kind, a
// value (or bulk values) exactly when the kind needs one, a time, and
// Until after At.
func (r *Revocation) Validate() error {
	var errs []error
	switch {
	case !r.Kind.Valid():
		errs = append(errs, fmt.Errorf("invalid kind %d", uint8(r.Kind)))
	case len(r.Values) > 0 && (r.Value != "" || !r.Kind.NeedsValue()):
		errs = append(errs, fmt.Errorf("values need a kind with values and no value"))
	case len(r.Values) > MaxBulkValues:
		errs = append(errs, fmt.Errorf("more than %d values", MaxBulkValues))
	case r.Kind.NeedsValue() && r.Value == "" && len(r.Values) == 0:
		errs = append(errs, fmt.Errorf("kind %s needs a value", r.Kind))
	case !r.Kind.NeedsValue() && r.Value != "":
		errs = append(errs, fmt.Errorf("kind %s takes no value", r.Kind))
	}
	if len(r.Value) > MaxValueLen {
		errs = append(errs, fmt.Errorf("value is longer than %d bytes", MaxValueLen))
	}
	for i, v := range r.Values {
		if v == "" || len(v) > MaxValueLen || !utf8.ValidString(v) {
			errs = append(errs, fmt.Errorf("values[%d] must be 1 to %d bytes of UTF-8", i, MaxValueLen))
			break
		}
	}
	if !utf8.ValidString(r.Value) || !utf8.ValidString(r.Reason) {
		errs = append(errs, errors.New("value and reason must be valid UTF-8"))
	}
	if err := CheckIssuer(r.Issuer); r.Issuer != "" && err != nil {
		errs = append(errs, err)
	}
	if len(r.Reason) > 1024 {
		errs = append(errs, errors.New("reason is longer than 1024 bytes"))
	}
	if r.At.IsZero() {
		errs = append(errs, errors.New("at is missing"))
	}
	if !r.Until.After(r.At) {
		errs = append(errs, errors.New("until must be after at"))
	}
	return errors.Join(errs...)
}

// Encode returns the wire form of e after checking it is valid.
func Encode(e *Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	if len(b) > MaxEventSize {
		return nil, fmt.Errorf("%w: encoded to %d bytes, limit %d", ErrMalformed, len(b), MaxEventSize)
	}
	return b, nil
}

// Decode parses and validates the wire form of an event. Payloads that are
// too large, not a single JSON object or fail Validate return an error
// wrapping ErrMalformed. Unknown members are ignored so that older verifiers
// keep reading events from newer issuers.
func Decode(data []byte) (*Event, error) {
	if len(data) > MaxEventSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(data), MaxEventSize)
	}
	// encoding/json replaces invalid UTF-8 with U+FFFD, which would let a
	// changed value through unnoticed.
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var e Event
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}
