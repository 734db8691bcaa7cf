package issuer

import (
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/heraldsec/herald/bus"
)

// State keys in the issuer's Pebble store. Sessions live in the shared
// bucket HERALD_SESSIONS (sessionstore.go); the sess/, subsess/ and rt/
// keys are what versions before it kept, read once to move them there
// (legacysessions.go).
const (
	keySession    = "sess/"    // legacy: sess/<sid> -> sessionRecord
	keyBySubject  = "subsess/" // legacy: subsess/<sub>\x00<sid> -> empty: sessions of a subject
	keyRefresh    = "rt/"      // legacy: rt/<sha256 hex of the refresh token> -> refreshRecord
	keyClient     = "client/"  // client/<client_id> -> clientRecord
	keyCutoff     = "cut/"     // cut/<kind>/<value> -> cutoff: sessions created up to it end
	keyShare      = "share/"   // share/<kind>/<value> -> cutoff: not yet recorded in HERALD_SESSIONS
	keyRetiredKey = "retired/" // retired/<kid> -> time the key stopped signing
)

// sessionRecord is a session as the issuer replicas share it in
// HERALD_SESSIONS. It holds hashes of refresh tokens, never a token.
type sessionRecord struct {
	ID       string    `json:"sid"`
	Subject  string    `json:"sub"`
	Tenant   string    `json:"tenant,omitempty"`
	ClientID string    `json:"client_id"`
	Scope    string    `json:"scope,omitempty"`
	Audience []string  `json:"aud,omitempty"`
	Created  time.Time `json:"created"`
	// Seq is the session's place in HERALD_SESSIONS: the revision its
	// entry was created at (or, for sessions created before that, of its
	// subject index entry, written just before it). A cut-off entry with a
	// higher revision was written after the session began. Zero for
	// sessions made before it was recorded.
	Seq uint64 `json:"seq,omitempty"`
	// Placed marks an entry whose Seq is the revision it was created at:
	// written as 0, since the revision is known only once written, and
	// filled in from the entry's revision when read as created.
	Placed   bool      `json:"placed,omitempty"`
	Expires  time.Time `json:"expires"`       // absolute lifetime
	LastUsed time.Time `json:"last_used"`     // for the idle timeout
	Refresh  string    `json:"refresh"`       // hash of the current refresh token
	JKT      string    `json:"jkt,omitempty"` // the DPoP key its tokens are bound to
	Ended    bool      `json:"ended,omitempty"`
	EndedWhy string    `json:"ended_why,omitempty"`
	// Used holds the hashes of the last maxUsedRefresh refresh tokens
	// used up, oldest first: presenting one of them again is reuse.
	Used []string `json:"used,omitempty"`
	// Registered records that ClientID named a registered client when the
	// session was created: a refresh must then authenticate as it.
	Registered bool `json:"registered,omitempty"`
}

// live reports whether the session may still be refreshed at now.
func (s *sessionRecord) live(now time.Time, idle time.Duration) bool {
	return !s.Ended && now.Before(s.Expires) && now.Sub(s.LastUsed) < idle
}

// refreshRecord is a refresh token of the legacy form, known only by its
// hash: the index from such a token to its session.
type refreshRecord struct {
	SessionID string    `json:"sid"`
	Used      bool      `json:"used,omitempty"`
	Expires   time.Time `json:"expires"`
}

// clientRecord is a registered confidential client.
type clientRecord struct {
	ID         string    `json:"client_id"`
	Name       string    `json:"name"`
	Scope      string    `json:"scope,omitempty"`
	SecretHash []byte    `json:"secret_hash"` // bcrypt
	Created    time.Time `json:"created"`
	Rotated    time.Time `json:"rotated,omitempty"`
	Revoked    bool      `json:"revoked,omitempty"`
	// RequireDPoP: every token of this client, and of its sessions, is
	// bound to a DPoP key.
	RequireDPoP bool `json:"require_dpop,omitempty"`
	// Audiences are the services this client's tokens may name in aud.
	Audiences []string `json:"audiences,omitempty"`
}

// cutoff records a subject, client, tenant or all revocation made through
// this replica: sessions created up to At can no longer be refreshed. For
// a session revocation it stops that session, whenever created.
type cutoff struct {
	At time.Time `json:"at"`
}

func sessionKey(sid string) string      { return keySession + sid }
func subjectKey(sub, sid string) string { return keyBySubject + sub + "\x00" + sid }
func refreshKey(hash string) string     { return keyRefresh + hash }
func clientKey(id string) string        { return keyClient + id }
func cutoffKey(k bus.Kind, v string) string {
	return keyCutoff + k.String() + "/" + v
}
func shareKey(k bus.Kind, v string) string {
	return keyShare + k.String() + "/" + v
}

// hashToken returns the hex SHA-256 of an opaque token. Refresh tokens are
// 256-bit random, so a fast hash is enough; only the hash is stored.
func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}
