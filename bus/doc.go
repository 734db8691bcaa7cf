// Package bus owns Herald's event vocabulary and its use of NATS JetStream.
//
// The vocabulary: Event with its typed bodies (Revocation, Session, Token,
// Key, Admin), Kind, the stream, bucket and subject names (subjects.go),
// the JSON wire format (Encode, Decode) and public keys as JWK (jwk.go).
//
// The transport: StartServer runs an embedded NATS server with JetStream
// that syncs every write before acknowledging it; Connect, EnsureStreams,
// Publish (which waits for the JetStream acknowledgement) and Follow (an
// ordered read of a stream from a given sequence).
//
// The security of the bus: Role (issuer, verifier, dashboard) and its NATS
// permissions (roles.go); EnsureAuthFiles makes and reuses the CA, server
// certificate and per-role nkey seeds with which ServerConfig.Auth makes
// an embedded server require TLS and an nkey (auth.go, certs.go); clients
// sign in with Config.NkeyFile or Config.CredsFile.
//
// # Concurrency
//
// Conn and Server are safe for concurrent use. Follow delivers on one
// goroutine at a time; the function it returns stops delivery and waits.
package bus
