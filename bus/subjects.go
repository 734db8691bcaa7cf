package bus

import "strings"

// Stream, bucket and subject names. They are part of the public contract
// (docs/reference/bus.md, "Events"): dashboards, SIEMs and plain NATS consumers depend on them.
const (
	// StreamRevocations is the stream every verifier applies in order. It holds
	// revocations only, so its sequence numbers are contiguous for verifiers
	// and a gap means lost events.
	StreamRevocations = "HERALD"
	// StreamAudit holds everything else: issuance, sessions, keys, admin actions.
	StreamAudit = "HERALD_AUDIT"
	// BucketKeys is the key-value bucket of public keys verifiers may trust, by kid.
	BucketKeys = "HERALD_KEYS"
	// BucketSessions is the key-value bucket where issuer replicas share
	// sessions and the hashes of their refresh tokens, changed only by
	// compare-and-set (bus/sessions.go).
	BucketSessions = "HERALD_SESSIONS"
	// BucketRefreshRelay is the cookie-session refresh relay: the key-value
	// bucket where verifier sidecars with cookie sessions claim a session's
	// refresh and hand its sealed result to the other replicas
	// (bus/refreshrelay.go). Its name keeps the HERALD_BFF of earlier
	// versions: verifiers, NATS permissions (deploy/nats/accounts.conf) and
	// existing deployments name it so.
	BucketRefreshRelay = "HERALD_BFF"

	// SubjectRevokePrefix prefixes revocation subjects: herald.revoke.<kind>.
	SubjectRevokePrefix = "herald.revoke."
	// SubjectIssuePrefix prefixes token issuance subjects: herald.issue.<tenant>.
	SubjectIssuePrefix = "herald.issue."
	// SubjectSessionPrefix prefixes session subjects: herald.session.<action>.
	SubjectSessionPrefix = "herald.session."
	// SubjectKeyPrefix prefixes key subjects: herald.key.<action>.
	SubjectKeyPrefix = "herald.key."
	// SubjectAdminPrefix prefixes admin action subjects: herald.admin.<action>.
	SubjectAdminPrefix = "herald.admin."
	// SubjectSignalPrefix prefixes the subjects of signals received from
	// outside (TypeSignalReceived): herald.signal.received.
	SubjectSignalPrefix = "herald.signal."
	// SubjectKeyRequest is where a verifier asks, over core NATS, for the
	// keys of a trusted external issuer to be fetched again: it met a kid
	// it does not know (KeyRequest). Issuers answer at a bounded rate.
	SubjectKeyRequest = "herald.keyrequest"

	// NoTenant is the subject token used for events without a tenant, since a
	// NATS subject token cannot be empty.
	NoTenant = "_"
)

// RevokeSubject returns the subject a revocation of kind k is published on.
func RevokeSubject(k Kind) string { return SubjectRevokePrefix + k.String() }

// IssueSubject returns the subject a token issued for tenant is published on.
// Characters that NATS gives a meaning to in subjects are replaced by '_'.
func IssueSubject(tenant string) string {
	if tenant == "" {
		return SubjectIssuePrefix + NoTenant
	}
	return SubjectIssuePrefix + subjectToken(tenant)
}

// subjectToken maps s to a single valid subject token.
func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f:
			return '_'
		}
		return r
	}, s)
}

// SubjectKVPrefix returns the prefix of the subjects a bucket's entries
// are written on: $KV.<bucket>.<key>.
func SubjectKVPrefix(bucket string) string { return "$KV." + bucket + "." }

// BucketStream returns the name of the stream behind a key-value bucket,
// as the JetStream API names it: KV_<bucket>.
func BucketStream(bucket string) string { return "KV_" + bucket }

// Names of the streams behind the buckets (BucketStream).
const (
	streamKeys         = "KV_" + BucketKeys
	streamRefreshRelay = "KV_" + BucketRefreshRelay
)
