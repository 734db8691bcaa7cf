// Package issuer is Herald's central authority: it mints RFC 9068 access
// tokens for sessions, keeps the signing keys, takes revocations from the
// admin API, and publishes every one of these as an event on NATS
// JetStream before it reports success.
//
// # Usage
//
//	svc, err := issuer.Open(ctx, cfg, conn) // conn from bus.Connect
//	...
//	err = svc.Run(ctx) // serves HTTP until ctx ends
//	svc.Close()
//
// # Concurrency
//
// A Service is safe for concurrent use. Run owns every goroutine it starts
// and returns only after they have stopped.
//
// Several Services (replicas, each with its own data directory and signing
// key) may serve one fleet: sessions and refresh-token hashes live in the
// HERALD_SESSIONS bucket and change only by compare-and-set, so any replica
// serves any session and two concurrent refreshes of one token, wherever
// they arrive, have exactly one winner (sessionstore.go).
package issuer
