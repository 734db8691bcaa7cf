// Package ssf makes Herald an OpenID Shared Signals Framework 1.0
// transmitter: receivers (SaaS that accept the company's SSO, partners,
// other Herald deployments) create event streams and receive Herald's
// revocations as CAEP Security Event Tokens, pushed (RFC 8935) or polled
// (RFC 8936).
//
// The pieces:
//   - stream.go: a stream's configuration as SSF 1.0 shows it, and the
//     strict reading of what a receiver sends to create, update or
//     replace one;
//   - subject.go: subject identifiers and the SSF subject matching rules;
//   - set.go: what each Herald revocation becomes (the mapping to CAEP),
//     and the SETs themselves, signed RS256 with the transmitter key;
//   - transmitter.go: streams kept in the bucket HERALD_SSF_STREAMS,
//     each with a durable JetStream consumer on the stream HERALD_SSF
//     (which sources HERALD and keeps revocations longer), so any issuer
//     replica serves any stream and a receiver that was away gets every
//     event in order; slots.go bounds them;
//   - run.go: setting up the bus, and the replica's view of the streams
//     that drives its push workers;
//   - push.go and poll.go: the two deliveries (RFC 8935, RFC 8936);
//   - keys.go: the transmitter keys every replica serves;
//   - http.go: the stream management API, the poll endpoint and the
//     transmitter configuration metadata, behind an authenticator the
//     issuer provides.
//
// The package does no authentication of its own: the issuer verifies
// the receiver's access token and hands the handler the receiver's
// client id and scopes.
package ssf
