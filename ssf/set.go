package ssf

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/secretfile"
)

// Item is one SET a Herald event becomes, before it is addressed to a
// stream and signed.
type Item struct {
	// Type is the event type URI, the one member of events.
	Type string
	// Subject is the sub_id claim.
	Subject Subject
	// Event holds the event's members (reason_admin, event_timestamp,
	// initiating_entity; state; status, reason).
	Event map[string]any
	// Index numbers the Items of one Herald event (a bulk revocation
	// becomes one per value), for JTI.
	Index int
}

// Map returns what Herald event e becomes for a transmitter whose iss is
// iss: nothing for an event no CAEP or RISC event fits (revocations of a
// token, a key or everything, revocations limited to another issuer,
// every event that is not a revocation).
//
// What is transmitted, always as a CAEP session-revoked event with
// event_timestamp (the revocation time, seconds), initiating_entity (see
// InitiatingEntity) and reason_admin ({"en": the revocation's reason, or
// a default text}):
//
//	session (sid)        complex {session: opaque sid}
//	subject (sub)        iss_sub {iss, sub}
//	tenant               complex {tenant: opaque tenant}
//	client (client_id)   complex {application: opaque client_id}
//
// A bulk revocation becomes one Item per value, Index counting from 0.
// Only revocations of Herald's own tokens are transmitted: those whose
// Issuer is empty (every issuer's tokens, Herald's among them) or iss. A
// revocation limited to another issuer is that issuer's to announce.
func Map(e *bus.Event, iss string) []Item {
	if e == nil || e.Type != bus.TypeRevocation || e.Revocation == nil {
		return nil
	}
	r := e.Revocation
	if r.Issuer != "" && r.Issuer != iss {
		return nil
	}
	var subject func(v string) Subject
	switch r.Kind {
	case bus.KindSession:
		subject = func(v string) Subject { return Complex(map[string]Subject{"session": Opaque(v)}) }
	case bus.KindSubject:
		subject = func(v string) Subject { return IssSub(iss, v) }
	case bus.KindTenant:
		subject = func(v string) Subject { return Complex(map[string]Subject{"tenant": Opaque(v)}) }
	case bus.KindClient:
		subject = func(v string) Subject { return Complex(map[string]Subject{"application": Opaque(v)}) }
	default:
		return nil // token, key, all: no CAEP or RISC event fits
	}
	reason := r.Reason
	if reason == "" {
		reason = defaultReasons[r.Kind]
	}
	var items []Item
	for _, v := range r.AllValues() {
		if v == "" {
			continue
		}
		items = append(items, Item{
			Type:    EventSessionRevoked,
			Subject: subject(v),
			Event: map[string]any{
				"event_timestamp":   r.At.Unix(),
				"initiating_entity": InitiatingEntity(e.Actor),
				"reason_admin":      map[string]string{"en": reason},
			},
			Index: len(items),
		})
	}
	return items
}

// defaultReasons are the reason_admin texts of revocations that give no
// reason.
var defaultReasons = map[bus.Kind]string{
	bus.KindSession: "The session was revoked.",
	bus.KindSubject: "Every session of the user was revoked.",
	bus.KindTenant:  "Every session of the tenant was revoked.",
	bus.KindClient:  "Every session of the application was revoked.",
}

// InitiatingEntity returns the CAEP initiating_entity of a revocation
// made by actor (bus.Event.Actor):
//
//   - "policy" for "herald", the issuer itself (a refresh token used
//     twice ends its session);
//   - "system" for "client:<id>" (a client ending a session at logout or
//     on a timeout, or revoking a token it holds) and "signal:<iss>" (a
//     security signal received from another issuer or transmitter);
//   - "admin" for every other actor: the name of the admin credential or
//     operator that asked for it.
func InitiatingEntity(actor string) string {
	switch {
	case actor == "herald":
		return "policy"
	case strings.HasPrefix(actor, "client:"), strings.HasPrefix(actor, "signal:"):
		return "system"
	}
	return "admin"
}

// Verification returns the verification event of stream streamID (SSF
// 1.0 section 8.1.4.1): its sub_id is the stream, opaque; state echoes
// the receiver's, and is left out when "" (Herald asked for it).
func Verification(streamID, state string) Item {
	ev := map[string]any{}
	if state != "" {
		ev["state"] = state
	}
	return Item{Type: EventVerification, Subject: Opaque(streamID), Event: ev}
}

// StreamUpdated returns the stream-updated event telling the receiver of
// stream streamID that Herald changed its status (SSF 1.0 section
// 8.1.5); reason is left out when "".
func StreamUpdated(streamID, status, reason string) Item {
	ev := map[string]any{"status": status}
	if reason != "" {
		ev["reason"] = reason
	}
	return Item{Type: EventStreamUpdated, Subject: Opaque(streamID), Event: ev}
}

// JTI returns the jti of Item index of Herald event eventID on stream
// streamID: the same on every issuer replica and every retransmission.
// It is the first 16 bytes of SHA-256(streamID NUL eventID NUL index),
// base64url: 22 characters.
func JTI(streamID, eventID string, index int) string {
	sum := sha256.Sum256([]byte(streamID + "\x00" + eventID + "\x00" + strconv.Itoa(index)))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// Claims are a SET's claims (RFC 8417, SSF 1.0 section 4). There is
// never a sub or an exp claim.
type Claims struct {
	Issuer   string
	JTI      string
	IssuedAt int64
	Audience []string
	TXN      string
	Subject  Subject
	Type     string
	Event    map[string]any
}

// Signer signs SETs RS256 with the transmitter key.
type Signer struct {
	key    *rsa.PrivateKey
	kid    string
	header string // the encoded JOSE header, the same for every SET
	jwks   []byte
}

// MinKeyBits is the smallest transmitter key (the CAEP interoperability
// profile's RS256 with at least 2048 bits).
const MinKeyBits = 2048

// NewSigner returns a Signer for key, which must have at least MinKeyBits
// and at most bus.MaxRSABits (what Herald's own receivers accept).
func NewSigner(key *rsa.PrivateKey) (*Signer, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("ssf: transmitter key: %w", err)
	}
	jwk, err := bus.NewJWK(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("ssf: transmitter key: %w", err)
	}
	jwks, err := json.Marshal(struct {
		Keys []bus.JWK `json:"keys"`
	}{[]bus.JWK{jwk}})
	if err != nil {
		return nil, fmt.Errorf("ssf: transmitter key set: %w", err)
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{bus.AlgRS256, jwk.Kid, "secevent+jwt"})
	if err != nil {
		return nil, fmt.Errorf("ssf: SET header: %w", err)
	}
	return &Signer{key: key, kid: jwk.Kid, header: base64.RawURLEncoding.EncodeToString(hdr), jwks: jwks}, nil
}

// checkKey checks a transmitter key: consistent, MinKeyBits to
// bus.MaxRSABits.
func checkKey(key *rsa.PrivateKey) error {
	if key == nil {
		return errors.New("no key")
	}
	if bits := key.N.BitLen(); bits < MinKeyBits || bits > bus.MaxRSABits {
		return fmt.Errorf("an RSA key of %d bits: want %d to %d", bits, MinKeyBits, bus.MaxRSABits)
	}
	if err := key.Validate(); err != nil {
		return fmt.Errorf("invalid RSA key: %w", err)
	}
	return nil
}

// KeyID returns the kid of the transmitter key: its RFC 7638 thumbprint.
func (s *Signer) KeyID() string { return s.kid }

// Sign returns c as a compact JWS with typ secevent+jwt. Signing the same
// claims twice gives the same bytes (RSASSA-PKCS1-v1_5 is deterministic,
// the encoding fixed), so a retransmission by any replica sharing the key
// is identical.
//
// The header is {"alg":"RS256","kid":KeyID(),"typ":"secevent+jwt"}; the
// claims iss, jti, iat, aud (a string for one audience, else an array),
// txn (left out when empty), sub_id and events, in that order, with the
// event's members sorted by name. Issuer, JTI, Type, Subject and at least
// one audience are required.
func (s *Signer) Sign(c *Claims) (string, error) {
	switch {
	case c == nil:
		return "", errors.New("ssf: sign: no claims")
	case c.Issuer == "" || c.JTI == "" || c.Type == "":
		return "", errors.New("ssf: sign: iss, jti and the event type are required")
	case c.Subject.IsZero():
		return "", errors.New("ssf: sign: sub_id is required")
	case len(c.Audience) == 0:
		return "", errors.New("ssf: sign: aud is required")
	}
	payload, err := encodeClaims(c)
	if err != nil {
		return "", err
	}
	signing := s.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(nil, s.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", fmt.Errorf("ssf: sign: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// encodeClaims returns the JSON of c, members in the order Sign
// documents.
func encodeClaims(c *Claims) ([]byte, error) {
	var aud any = c.Audience
	if len(c.Audience) == 1 {
		aud = c.Audience[0]
	}
	ev := c.Event
	if ev == nil {
		ev = map[string]any{}
	}
	payload, err := json.Marshal(struct {
		Iss    string                    `json:"iss"`
		JTI    string                    `json:"jti"`
		Iat    int64                     `json:"iat"`
		Aud    any                       `json:"aud"`
		TXN    string                    `json:"txn,omitempty"`
		SubID  Subject                   `json:"sub_id"`
		Events map[string]map[string]any `json:"events"`
	}{c.Issuer, c.JTI, c.IssuedAt, aud, c.TXN, c.Subject, map[string]map[string]any{c.Type: ev}})
	if err != nil {
		return nil, fmt.Errorf("ssf: sign: encode claims: %w", err)
	}
	return payload, nil
}

// JWKS returns the JSON Web Key Set served at the transmitter's jwks_uri:
// the public transmitter key, use sig, alg RS256, kid its RFC 7638
// thumbprint. The caller must not change the slice.
func (s *Signer) JWKS() []byte { return s.jwks }

// PublicKey returns the public transmitter key.
func (s *Signer) PublicKey() *rsa.PublicKey { return &s.key.PublicKey }

// LoadOrCreateKey reads the transmitter key from path (PKCS#8 PEM, mode
// 0600 or stricter), or creates a 2048-bit one there when the file does
// not exist (created reports that). A missing parent directory is created
// with mode 0700. It refuses a file others may read
// (*secretfile.ModeError), a file that is not one PKCS#8 PEM private key,
// a key that is not RSA, and an RSA key of fewer than MinKeyBits or more
// than bus.MaxRSABits bits.
func LoadOrCreateKey(path string) (key *rsa.PrivateKey, created bool, err error) {
	key, err = loadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("ssf: transmitter key directory: %w", err)
	}
	key, err = rsa.GenerateKey(rand.Reader, MinKeyBits)
	if err != nil {
		return nil, false, fmt.Errorf("ssf: generate transmitter key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("ssf: encode transmitter key: %w", err)
	}
	if err := secretfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, false, fmt.Errorf("ssf: write transmitter key: %w", err)
	}
	// Read it back: what is on disk is the key every later start uses.
	if key, err = loadKey(path); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// loadKey reads the transmitter key file at path.
func loadKey(path string) (*rsa.PrivateKey, error) {
	b, err := secretfile.Read("SSF transmitter key", path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("ssf: %w", err)
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("ssf: transmitter key %s: want one PKCS#8 PEM block (PRIVATE KEY); convert with openssl pkcs8 -topk8 -nocrypt", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("ssf: transmitter key %s: %w", path, err)
	}
	key, ok := parsed.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("ssf: transmitter key %s: a %T, want an RSA key (SETs are signed RS256)", path, parsed)
	}
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("ssf: transmitter key %s: %w", path, err)
	}
	return key, nil
}
