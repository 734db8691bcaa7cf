package bus

import "fmt"

// Role is what a client may do on Herald's bus. A secured embedded server
// (natsserver.Auth) gives each nkey user the permissions of its role
// (natsserver.Permissions); deploy/nats/accounts.conf gives the same to
// the users of a NATS cluster.
type Role string

// The roles.
const (
	// RoleIssuer may do everything: create the streams and buckets,
	// publish events, write HERALD_KEYS, read everything.
	RoleIssuer Role = "issuer"
	// RoleVerifier may follow HERALD, read HERALD_SNAPSHOTS, watch and read HERALD_KEYS, write
	// heartbeats to HERALD_VERIFIERS and announce on herald.fleet.<id>.
	// It may not publish events, write keys, create, change, purge or
	// delete a stream, read HERALD_AUDIT, or subscribe to anything but its
	// own inboxes: a stolen verifier credential cannot revoke, add a key
	// or rewrite history.
	RoleVerifier Role = "verifier"
	// RoleDashboard reads: both streams and HERALD_KEYS through
	// JetStream consumers, a verifier's heartbeat by id, and the fleet's
	// announcements. It publishes nothing but JetStream API reads.
	RoleDashboard Role = "dashboard"
)

// Roles lists every role.
func Roles() []Role { return []Role{RoleIssuer, RoleVerifier, RoleDashboard} }

// ParseRole returns the role named s.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown bus role %q (want issuer, verifier or dashboard)", s)
}

// VerifierInboxPrefix is the inbox prefix of verifier connections
// (Config.InboxPrefix): the verifier role may subscribe to nothing else,
// so it reads neither the issuer's nor the dashboards' replies.
const VerifierInboxPrefix = "_INBOX_verifier"

// InboxPrefix returns the Config.InboxPrefix clients of role r use:
// VerifierInboxPrefix for verifiers, empty (_INBOX) for the others.
func (r Role) InboxPrefix() string {
	if r == RoleVerifier {
		return VerifierInboxPrefix
	}
	return ""
}
