package natsserver

import (
	"github.com/nats-io/nats-server/v2/server"

	"github.com/heraldsec/herald/bus"
)

// Names of the streams behind the buckets, as the JetStream API names them.
var (
	streamKeys         = bus.BucketStream(bus.BucketKeys)
	streamVerifiers    = bus.BucketStream(bus.BucketVerifiers)
	streamRefreshRelay = bus.BucketStream(bus.BucketRefreshRelay)
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
// for bus.RoleIssuer, none at all for an unknown role. They are allow lists: what a role does not need, it may
// not do. A push consumer's deliver subject is its creator's choice, so a
// verifier could aim one that reads a bucket it writes (HERALD_BFF) at a
// stream's subject; no role but the issuer subscribes to a stream's
// subjects, so such a delivery finds no interest and is never sent, and
// verifiers refuse unsigned events anyway. No role but the issuer reads
// HERALD_VERIFIERS through a consumer.
func Permissions(r bus.Role) *server.Permissions {
	switch r {
	case bus.RoleVerifier:
		return VerifierPermissions("")
	case bus.RoleDashboard:
		pub := []string{"$JS.API.INFO", "$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST",
			"$JS.API.STREAM.INFO." + streamVerifiers, "$JS.API.DIRECT.GET." + streamVerifiers + ".>"}
		for _, s := range []string{bus.StreamRevocations, bus.StreamAudit, streamKeys} {
			pub = append(pub, readStream(s)...)
		}
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: pub},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>", bus.SubjectFleetPrefix + ">"}},
		}
	case bus.RoleIssuer:
		return nil
	}
	nothing := &server.SubjectPermission{Deny: []string{">"}} // a role this version does not know
	return &server.Permissions{Publish: nothing, Subscribe: nothing}
}

// VerifierPermissions returns the permissions of bus.RoleVerifier for the
// verifier with the given id: it may write only its own heartbeat and
// announce only as itself. An empty id allows any verifier id, for a
// credential that several verifiers share (herald dev's verifier.nk).
func VerifierPermissions(id string) *server.Permissions {
	self := ">"
	if id != "" {
		self = id
	}
	pub := []string{"$JS.API.INFO", "$JS.API.STREAM.INFO." + streamVerifiers,
		bus.SubjectKVPrefix(bus.BucketVerifiers) + self, bus.SubjectFleetPrefix + self,
		bus.SubjectKeyRequest}
	pub = append(pub, readStream(bus.StreamRevocations)...)
	pub = append(pub, readStream(bus.StreamSnapshots)...)
	pub = append(pub, readStream(streamKeys)...)
	// Cookie sessions' refresh claims: sealed entries verifiers write and
	// watch (verifier/refreshrelay.go).
	pub = append(pub, bus.SubjectKVPrefix(bus.BucketRefreshRelay)+">")
	pub = append(pub, readStream(streamRefreshRelay)...)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{bus.VerifierInboxPrefix + ".>"}},
	}
}
