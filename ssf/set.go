package ssf

import (
	"crypto/rsa"
	"errors"

	"github.com/heraldsec/herald/bus"
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
func Map(e *bus.Event, iss string) []Item { return nil }

// JTI returns the jti of Item index of Herald event eventID on stream
// streamID: the same on every issuer replica and every retransmission.
func JTI(streamID, eventID string, index int) string { return "" }

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
	key *rsa.PrivateKey
	kid string
}

// MinKeyBits is the smallest transmitter key (the CAEP interoperability
// profile's RS256 with at least 2048 bits).
const MinKeyBits = 2048

// NewSigner returns a Signer for key, which must have at least MinKeyBits.
func NewSigner(key *rsa.PrivateKey) (*Signer, error) { return nil, errors.New("ssf: not implemented") }

// KeyID returns the kid of the transmitter key: its RFC 7638 thumbprint.
func (s *Signer) KeyID() string { return s.kid }

// Sign returns c as a compact JWS with typ secevent+jwt. Signing the same
// claims twice gives the same bytes (RSASSA-PKCS1-v1_5 is deterministic,
// the encoding fixed), so a retransmission by any replica sharing the key
// is identical.
func (s *Signer) Sign(c *Claims) (string, error) { return "", errors.New("ssf: not implemented") }

// JWKS returns the JSON Web Key Set served at the transmitter's jwks_uri:
// the public transmitter key, use sig, alg RS256.
func (s *Signer) JWKS() []byte { return nil }

// LoadOrCreateKey reads the transmitter key from path (PKCS#8 PEM, mode
// 0600 or stricter), or creates a 2048-bit one there when the file does
// not exist (created reports that).
func LoadOrCreateKey(path string) (key *rsa.PrivateKey, created bool, err error) {
	return nil, false, errors.New("ssf: not implemented")
}
