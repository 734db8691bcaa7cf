package bus

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
)

// Role is what a client may do on Herald's bus. A secured embedded server
// (ServerAuth) gives each nkey user the permissions of its role;
// deploy/nats/accounts.conf gives the same to the users of a NATS cluster.
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

// Names of the streams behind the buckets, as the JetStream API names them.
const (
	streamKeys      = "KV_" + BucketKeys
	streamVerifiers = "KV_" + BucketVerifiers
	streamBFF       = "KV_" + BucketBFF
)

// readStream returns the JetStream API subjects that read stream: its
// info, ephemeral and ordered consumers (create, info, next, delete),
// direct and API gets, and flow control replies. None of them changes
// the stream.
func readStream(stream string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.CONSUMER.CREATE." + stream,
		"$JS.API.CONSUMER.CREATE." + stream + ".>",
		"$JS.API.CONSUMER.INFO." + stream + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*",
		"$JS.API.CONSUMER.DELETE." + stream + ".*",
		"$JS.API.DIRECT.GET." + stream,
		"$JS.API.DIRECT.GET." + stream + ".>",
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.FC." + stream + ".>",
	}
}

// Permissions returns the NATS permissions of r: nil (no restriction)
// for RoleIssuer, none at all for an unknown role. They are allow lists: what a role does not need, it may
// not do. A push consumer's deliver subject is its creator's choice, so a
// verifier could aim one that reads a bucket it writes (HERALD_BFF) at a
// stream's subject; no role but the issuer subscribes to a stream's
// subjects, so such a delivery finds no interest and is never sent, and
// verifiers refuse unsigned events anyway. No role but the issuer reads
// HERALD_VERIFIERS through a consumer.
func (r Role) Permissions() *server.Permissions {
	switch r {
	case RoleVerifier:
		return VerifierPermissions("")
	case RoleDashboard:
		pub := []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
			"$JS.API.STREAM.INFO." + streamVerifiers, "$JS.API.DIRECT.GET." + streamVerifiers + ".>"}
		for _, s := range []string{StreamRevocations, StreamAudit, streamKeys} {
			pub = append(pub, readStream(s)...)
		}
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>", SubjectFleetPrefix + ">"}},
		}
	case RoleIssuer:
		return nil
	}
	nothing := &server.SubjectPermission{Deny: []string{">"}} // a role this version does not know
	return &server.Permissions{Publish: nothing, Subscribe: nothing}
}

// VerifierPermissions returns the permissions of RoleVerifier for the
// verifier with the given id: it may write only its own heartbeat and
// announce only as itself. An empty id allows any verifier id, for a
// credential that several verifiers share (herald dev's verifier.nk).
func VerifierPermissions(id string) *server.Permissions {
	self := ">"
	if id != "" {
		self = id
	}
	pub := []string{"$JS.API.INFO", "$JS.API.STREAM.INFO." + streamVerifiers,
		SubjectKVPrefix(BucketVerifiers) + self, SubjectFleetPrefix + self}
	pub = append(pub, readStream(StreamRevocations)...)
	pub = append(pub, readStream(StreamSnapshots)...)
	pub = append(pub, readStream(streamKeys)...)
	// Cookie sessions' refresh claims: sealed entries verifiers write and
	// watch (verifier/refreshrelay.go).
	pub = append(pub, SubjectKVPrefix(BucketBFF)+">")
	pub = append(pub, readStream(streamBFF)...)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{VerifierInboxPrefix + ".>"}},
	}
}

// SubjectKVPrefix returns the prefix of the subjects a bucket's entries
// are written on: $KV.<bucket>.<key>.
func SubjectKVPrefix(bucket string) string { return "$KV." + bucket + "." }
