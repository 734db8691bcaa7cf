// Package verifier checks Herald access tokens locally and runs the
// verifier sidecar.
//
// The library: a Verifier checks a token's size, header, signature (with a
// key from the HERALD_KEYS bucket, held by a KeySet), claims and the
// denylist, and returns Claims or an error wrapping one of the Err* reasons.
// It makes no network call.
//
// The sidecar: a Follower applies the HERALD revocation stream to a Pebble
// denylist (package store) in order, checking that sequences are contiguous;
// a Sidecar ties keys, follower and verifier together and serves /v1/verify,
// /v1/status, /healthz and /readyz. It gives no verdict (503) until it has
// caught up with the stream.
//
// # Usage
//
//	sc, err := verifier.OpenSidecar(cfg, conn) // conn from bus.Connect
//	...
//	err = sc.Run(ctx) // until ctx ends
//	sc.Close()
//
// # Concurrency
//
// Verifier, KeySet, Follower and Sidecar are safe for concurrent use.
// Sidecar.Run owns every goroutine it starts and returns after they stop.
package verifier
