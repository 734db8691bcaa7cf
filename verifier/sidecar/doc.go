// Package sidecar is the verifier process: it assembles the verifier
// library (package verifier) into a running service that follows the
// HERALD_KEYS bucket and the HERALD revocation stream into a Pebble
// denylist and answers over HTTP: /v1/verify, /v1/status, /healthz,
// /readyz and /metrics.
//
// In proxy mode (Config.Upstream) it forwards every other path to the
// application with the X-Herald-* identity headers, and its own endpoints
// move to Config.AdminAddr; with Config.Cookies it puts the browser
// session layer of package verifier/browser in front of that proxy. It
// gives no verdict (503) until it has caught up with the stream, nor, by
// default, once it has been cut off from the bus for longer than
// Config.MaxStaleness. Requests in flight (proxied streams, WebSockets,
// verifier.Middleware handlers) are ended when a revocation matching their token is
// applied. Every sidecar reports a heartbeat to the HERALD_VERIFIERS
// bucket (bus.Fleet).
//
// # Usage
//
//	sc, err := sidecar.Open(cfg, conn) // conn from bus.Connect
//	...
//	err = sc.Run(ctx) // until ctx ends
//	sc.Close()
//
// # Concurrency
//
// Sidecar is safe for concurrent use. Run owns every goroutine it starts
// and returns after they stop.
package sidecar
