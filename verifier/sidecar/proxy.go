package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/verifier"
)

// proxy is the sidecar's proxy mode: it stands in front of the application
// as oauth2-proxy does. A request with a valid token goes to the upstream
// with the token's identity in the X-Herald-* headers; any X-Herald-*
// header the client sent is removed first; other requests get 401 (or 503
// while the sidecar gives no verdict) and never reach the upstream.
//
// Requests it forwards are tracked (see verifier.LiveSet): a WebSocket, a
// Server-Sent Events stream or any long response is cut when a revocation
// matching its token is applied.
type proxy struct {
	rp      *httputil.ReverseProxy
	inner   http.Handler
	v       *verifier.Verifier
	log     *slog.Logger
	timeout time.Duration
}

// parseUpstream checks the --upstream URL: http or https, with a host, and
// nothing that a proxy target cannot use.
func parseUpstream(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("upstream %q: scheme must be http or https", raw)
	case u.Host == "":
		return nil, fmt.Errorf("upstream %q: no host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("upstream %q: credentials in the URL are not supported", raw)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("upstream %q: no query or fragment allowed", raw)
	}
	return u, nil
}

func newProxy(upstream *url.URL, v *verifier.Verifier, log *slog.Logger) *proxy {
	p := &proxy{v: v, log: log}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.Host = pr.In.Host // the application sees the name it was called by
			pr.SetXForwarded()
			verifier.StripHeaders(pr.Out.Header)
			if c, ok := verifier.ClaimsFrom(pr.In.Context()); ok {
				verifier.SetIdentity(pr.Out.Header, c)
			}
			if v.Stale() {
				pr.Out.Header.Set(verifier.HeaderStale, "true")
			}
		},
		ErrorHandler: p.upstreamError,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	p.inner = verifier.Middleware(v, http.HandlerFunc(p.forward))
	return p
}

// ServeHTTP implements http.Handler.
func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Strip before anything else reads the request; Rewrite strips the
	// outgoing copy again, after the Transport's own header handling.
	verifier.StripHeaders(r.Header)
	p.inner.ServeHTTP(w, r)
}

// forward sends a request upstream. Requests a token or a session
// admitted (claims in their context) may stream for as long as the
// upstream does: the server's read and write timeouts, which bound
// unauthenticated clients, are lifted; a revocation, the client or the
// upstream ends them. Anonymous requests (public paths in cookie mode)
// keep the timeouts.
//
// Only WebSocket upgrades are tunnelled: after any upgrade the connection
// is bytes the verifier no longer reads, and a backend that keeps parsing
// HTTP on it (h2c, a custom protocol) would serve requests nobody checked.
// Other upgrades are refused with 400 before they reach the upstream.
func (p *proxy) forward(w http.ResponseWriter, r *http.Request) {
	if up := upgradeType(r.Header); up != "" && !strings.EqualFold(up, "websocket") {
		p.log.Debug("upgrade refused", "upgrade", up, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("Connection", "close")
		httpserve.WriteJSON(w, http.StatusBadRequest, map[string]string{
			"error": "invalid_request", "error_description": "only WebSocket upgrades are proxied",
		})
		return
	}
	if _, admitted := verifier.ClaimsFrom(r.Context()); admitted {
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Time{})  // not supported by every ResponseWriter; the default timeouts then stay
		_ = rc.SetWriteDeadline(time.Time{}) // likewise
	}
	if len(w.Header()) > 0 {
		// httputil.ReverseProxy sends an upstream 1xx (103 Early Hints)
		// with the response headers set so far, then clears them: the
		// headers the sidecar set (a re-issued session cookie, no-store,
		// X-Herald-Stale) are held back and put on the final response, or
		// the error, by the hooks holdHooks installs.
		held := &heldHeaders{dst: w.Header(), h: w.Header().Clone()}
		clear(w.Header())
		r = r.WithContext(context.WithValue(r.Context(), heldKey{}, held))
	}
	p.rp.ServeHTTP(w, r)
}

// heldHeaders are the response headers the sidecar set on a request before
// forwarding it, held back from any 1xx response until the final one.
type heldHeaders struct {
	dst  http.Header // the response's headers
	h    http.Header
	once sync.Once
}

type heldKey struct{}

// restoreHeld adds the headers held for the request of ctx back to its
// response, once.
func restoreHeld(ctx context.Context) {
	if held, ok := ctx.Value(heldKey{}).(*heldHeaders); ok {
		held.once.Do(func() {
			for k, vs := range held.h {
				for _, v := range vs {
					held.dst.Add(k, v)
				}
			}
		})
	}
}

// holdHooks wraps the proxy's ModifyResponse and ErrorHandler, as they are
// set once the proxy and its browser session layer are built, so that the
// headers forward held back are on the final response (before the hook
// reads or changes them) or on the error answer.
func (p *proxy) holdHooks() {
	modify, fail := p.rp.ModifyResponse, p.rp.ErrorHandler
	p.rp.ModifyResponse = func(resp *http.Response) error {
		restoreHeld(resp.Request.Context())
		if modify != nil {
			return modify(resp)
		}
		return nil
	}
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		restoreHeld(r.Context())
		fail(w, r, err)
	}
}

// upgradeType returns the protocol a request asks to upgrade to, as
// httputil.ReverseProxy reads it: the Upgrade header when Connection names
// "upgrade", else "" (the proxy then drops Upgrade as a hop-by-hop header).
func upgradeType(h http.Header) string {
	for _, v := range h.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// upstreamError answers 502 when the upstream cannot be reached, and
// nothing when the request was ended by a revocation or the client.
func (p *proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		if cause := context.Cause(r.Context()); errors.Is(cause, verifier.ErrRevoked) {
			p.log.Info("proxied request ended by revocation", "path", r.URL.Path, "reason", cause.Error())
			verifier.WriteRefusal(w, cause)
		}
		return
	}
	p.log.Warn("upstream unreachable", "path", r.URL.Path, "err", err)
	httpserve.WriteJSON(w, http.StatusBadGateway, map[string]string{
		"error": "bad_gateway", "error_description": "the upstream did not answer",
	})
}
