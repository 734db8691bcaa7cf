// Package natsserver runs Herald's embedded NATS server with JetStream,
// for herald dev and herald issuer, the benchmarks and tests. The
// libraries (bus, verifier, issuer, store) do not import it: an
// application embedding a verifier connects to a NATS server and compiles
// none.
//
// Start runs a server that syncs every write before acknowledging it,
// alone, as a node of a JetStream cluster (Config.Cluster), or linked to
// a hub as a leaf node (Config.Leaf).
//
// Its security: EnsureAuthFiles makes and reuses the CA, server
// certificate and per-role nkey seeds (auth.go, certs.go) with which
// Config.Auth makes a server require TLS and an nkey; each user gets the
// NATS permissions of its bus.Role (permissions.go). Clients sign in with
// bus.Config.NkeyFile or bus.Config.CredsFile.
//
// # Concurrency
//
// Server is safe for concurrent use.
package natsserver
