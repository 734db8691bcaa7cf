// Package bus owns Herald's event vocabulary and its use of NATS JetStream.
//
// The vocabulary: Event with its typed bodies (Revocation, Session, Token,
// Key, Admin), Kind, the stream, bucket and subject names (subjects.go),
// the JSON wire format (Encode, Decode) and public keys as JWK (jwk.go).
//
// The transport, as a NATS client: Connect, EnsureStreams, Publish (which
// waits for the JetStream acknowledgement) and Follow (an ordered read of
// a stream from a given sequence). The embedded server is in
// bus/natsserver, which this package does not import: the libraries built
// on it compile no NATS server.
//
// The security of the bus: Role (issuer, verifier, dashboard), whose NATS
// permissions bus/natsserver grants; clients sign in with Config.NkeyFile
// or Config.CredsFile.
//
// # Concurrency
//
// Conn is safe for concurrent use. Follow delivers on one
// goroutine at a time; the function it returns stops delivery and waits.
package bus
