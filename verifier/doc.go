// Package verifier checks Herald access tokens locally: the library an
// application embeds.
//
// A Verifier checks a token's size, header, signature (with a key from the
// HERALD_KEYS bucket, held by a KeySet), claims and the denylist, and
// returns Claims or an error wrapping one of the Err* reasons. It makes no
// network call. A token that passed every check is remembered (by its
// SHA-256, in a bounded cache, never past its exp) so that the next Verify
// of it skips the signature; the denylist is checked on every call, from
// memory. Bound tokens need a DPoP proof (RFC 9449), checked by
// VerifyRequest. Middleware admits HTTP requests with a valid token and
// puts the claims in the request context (ClaimsFrom).
//
// A Follower applies the HERALD revocation stream to a Pebble denylist
// (package store, opened with OpenDenylist) in order, checking that
// sequences are contiguous and starting from a snapshot when one is
// usable. A LiveSet ends the requests in flight that a revocation matches.
//
// The process around the library is package verifier/sidecar (HTTP API,
// proxy mode, staleness, fleet heartbeats), which also assembles the
// browser session layer of package verifier/browser. Neither is imported
// here.
//
// # Usage
//
// Embedded in a service, run a sidecar without its HTTP server
// (sidecar.Config.NoListen) and wrap handlers with Middleware(sc.Verifier(),
// h); see ExampleMiddleware.
//
// # Concurrency
//
// Verifier, KeySet, Follower and LiveSet are safe for concurrent use.
package verifier
