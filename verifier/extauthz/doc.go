// Package extauthz serves Envoy's external authorization over gRPC
// (envoy.service.auth.v3.Authorization/Check), the API of Envoy's
// ext_authz filters (HTTP and network) and of Istio's CUSTOM
// authorization action, from a verifier.
//
// A Check gives the verdict the sidecar's /v1/verify gives about the same
// request (verifier.Verifier.Decide): the request's method, scheme, host,
// path and headers come from the CheckRequest's attributes. An admitted
// request is answered OK with the identity headers to set on the upstream
// request (every X-Herald-* header the client sent that the verdict does
// not set is removed) and the token's claims as dynamic metadata; a
// refused one with UNAUTHENTICATED and the 401 and WWW-Authenticate
// challenge /v1/verify answers; no verdict (not caught up, or stale with
// on-stale deny) with UNAVAILABLE and a 503 with Retry-After.
//
// The package is apart from package verifier and its sidecar so that a
// program that embeds either does not compile gRPC.
//
// # Usage
//
//	srv, err := extauthz.New(extauthz.Config{Verifier: sc.Verifier()})
//	...
//	err = srv.Serve(ctx, ln) // until ctx ends
//
// # Concurrency
//
// Server is safe for concurrent use. Serve owns the gRPC server's
// goroutines and returns after they stop.
package extauthz
