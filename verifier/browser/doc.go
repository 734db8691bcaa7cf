// Package browser is the browser session layer of the verifier sidecar in
// proxy mode (the backend-for-frontend pattern): the browser holds only a
// sealed, HttpOnly __Host-herald cookie, and Sessions turns it into the
// identity headers for the application, refreshes the access token behind
// it at the issuer (sharing refreshes between replicas through the
// HERALD_BFF bucket), checks CSRF, and ends the session on logout, on its
// idle and absolute timeouts and on revocation.
//
// It verifies tokens with a verifier.Verifier through its exported API
// (Check, ServeAdmitted, WriteRefusal) and forwards through the proxy it
// is given as a Upstream (an *httputil.ReverseProxy and http.Handlers).
// Package verifier/sidecar builds it when cookie sessions are configured;
// this package never imports the sidecar.
//
// # Usage
//
//	s, err := browser.New(cfg, v, browser.Upstream{Proxy: rp, Forward: fwd, Bearer: bearer}, conn, log)
//	mux.Handle("/", s)
//	mux.HandleFunc(browser.OwnPrefix, s.ServeOwn)
//	err = s.Run(ctx) // the timeouts' sweep, until ctx ends
//
// # Concurrency
//
// Sessions is safe for concurrent use. Config.Now is the one clock of the
// layer; token lifetimes are judged by the Verifier's own.
package browser
