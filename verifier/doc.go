// Package verifier checks Herald access tokens locally and runs the
// verifier sidecar.
//
// The library: a Verifier checks a token's size, header, signature (with a
// key from the HERALD_KEYS bucket, held by a KeySet), claims and the
// denylist, and returns Claims or an error wrapping one of the Err* reasons.
// It makes no network call. A token that passed every check is remembered
// (by its SHA-256, in a bounded cache, never past its exp) so that the next
// Verify of it skips the signature; the denylist is checked on every call,
// from memory. Middleware admits HTTP requests with a valid token and puts
// the claims in the request context (ClaimsFrom).
//
// The sidecar: a Follower applies the HERALD revocation stream to a Pebble
// denylist (package store) in order, checking that sequences are contiguous;
// a Sidecar ties keys, follower and verifier together and serves /v1/verify,
// /v1/status, /healthz, /readyz and /metrics, and in proxy mode
// (SidecarConfig.Upstream) forwards every other path to the application
// with the X-Herald-* identity headers; with SidecarConfig.Cookies it is
// also the application's browser session layer (a sealed, HttpOnly
// __Host-herald cookie in place of tokens, refreshed, ended on logout,
// timeouts and revocations, with CSRF checks). It gives no verdict (503) until it
// has caught up with the stream, nor, by default, once it has been cut off
// from the bus for longer than SidecarConfig.MaxStaleness. Requests in
// flight (proxied streams, WebSockets, Middleware handlers) are ended when
// a revocation matching their token is applied. Every sidecar reports a
// heartbeat to the HERALD_VERIFIERS bucket (bus.Fleet).
//
// # Usage
//
//	sc, err := verifier.OpenSidecar(cfg, conn) // conn from bus.Connect
//	...
//	err = sc.Run(ctx) // until ctx ends
//	sc.Close()
//
// Embedded in a service: set SidecarConfig.NoListen, run the sidecar, and
// wrap handlers with Middleware(sc.Verifier(), h); see ExampleMiddleware.
//
// # Concurrency
//
// Verifier, KeySet, Follower and Sidecar are safe for concurrent use.
// Sidecar.Run owns every goroutine it starts and returns after they stop.
package verifier
