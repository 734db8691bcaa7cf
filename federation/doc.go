// Package federation makes Herald trust external identity providers
// (Keycloak, Okta, Entra ID...): the issuer reads each trusted provider's
// keys and publishes them on the bus, so that verifiers accept the
// provider's access tokens without ever calling it, and the signals
// receiver checks the provider's logout tokens and Security Event Tokens.
//
// # Model
//
// A trusted issuer (Issuer) is configured by its issuer URL, from a trust
// file (LoadFile) or a list of URLs (FromURLs). For each one, a Federation
// reads the OpenID Connect discovery document at URL +
// /.well-known/openid-configuration, or else the RFC 8414 authorization
// server metadata; the document must name the issuer exactly (OpenID
// Connect Discovery 1.0 section 4.3). It then reads the key set at its
// jwks_uri and keeps the signing keys Herald can check: RSA of 2048 bits
// or more, EC P-256 and Ed25519, with a kid, at most MaxKeys. An SSF
// transmitter's SET keys come from the jwks_uri of its
// /.well-known/ssf-configuration instead (Issuer.SSF). Redirects are not
// followed, bodies are bounded, every request has a timeout.
//
// For an issuer whose access tokens verifiers accept (Issuer.Tokens), the
// Federation writes into bus.BucketKeys one trust entry (bus.Trust,
// signed by the issuer's event key) and one entry per key, bound to the
// issuer (bus.Signer.SignExternalKey). Verifiers learn them by watching
// the bucket. An entry is written only when its content changed, compare
// and set, so several issuer replicas running the same configuration do
// not churn the bucket. A key the provider no longer lists stays for a
// grace period (by default the issuer's max token lifetime, so tokens it
// signed still verify until they expire), then is removed. Each replica
// remembers in memory since when a key is missing: a restarted replica
// starts counting again, which only delays the removal, and a replica
// removes a key only after a successful fetch that lacks it, so a
// replica that cannot reach the provider never removes nor restores
// keys. A key an admin revoked (Config.Revoked) is removed at once and
// never published again. When Run starts, the trust entries and keys of
// issuers no longer configured for tokens are removed: the bucket's
// names under bus.TrustPrefix and bus.ExternalKeyPrefix belong to this
// deployment. (During a rolling change of the trust configuration, old
// and new replicas disagree until the old ones are gone.)
//
// # Refresh
//
// Each issuer is fetched again when its key set's Cache-Control max-age
// (or Expires) says, within Config.MinRefresh and MaxRefresh, every
// Config.Refresh when it says nothing. A failed refresh keeps the last
// good keys, is shown by Status, and is retried after 30 s, doubling up
// to 5 min. A verifier meeting an unknown kid asks for a refresh on
// bus.SubjectKeyRequest; one issuer replica (queue group QueueGroup)
// refreshes the issuer unless it did less than MinPromptInterval ago, so
// no flood of requests makes more than one fetch per interval. The state
// is per configured issuer only: requests naming others grow nothing.
//
// # Usage
//
//	issuers, err := federation.LoadFile(path)
//	fed, err := federation.New(federation.Config{Issuers: issuers, Conn: conn})
//	g.Go("federation", fed.Run)
//	k, pub, ok := fed.KeyOrRefresh(ctx, iss, kid) // the signals receiver
//
// # Concurrency
//
// A Federation's methods are safe for concurrent use. Run owns one
// goroutine per issuer and one that removes the entries of issuers no
// longer trusted; all have returned when Run does.
//
// # Readiness
//
// An unreachable provider does not make Herald's issuer unready: its last
// good keys stay published and in use. Status and Healthy show it, for
// /readyz detail and the dashboard.
package federation
