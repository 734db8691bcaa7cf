package verifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Defaults for CookieConfig.
const (
	DefaultCookieIdle   = 2 * time.Hour
	DefaultCookieMaxAge = 24 * time.Hour
)

// Browser session paths and headers.
const (
	// HeaderHandoff is the response header with which the application's
	// login handler hands the sidecar a new session: its value is the
	// refresh token of POST /v1/sessions. The sidecar always removes it
	// from upstream responses.
	HeaderHandoff = "Herald-Session"
	// LogoutPath ends the browser's session (POST).
	LogoutPath = "/.herald/logout"
	// ownPrefix is reserved for the sidecar's browser session endpoints.
	ownPrefix = "/.herald/"
)

// seenEvery is how stale the last-activity time in a cookie may get
// before a response re-issues the cookie; it is the precision of the idle
// timeout.
const seenEvery = time.Minute

// maxHandoffBytes bounds the refresh token an upstream hands over.
const maxHandoffBytes = 512

// endedMemory is how long a sidecar refuses, from memory, a session it
// ended; by then the session's revocation has long come back from the
// stream into the denylist.
const endedMemory = time.Hour

// Why a browser session ends at the sidecar.
var (
	errIdle        = fmt.Errorf("%w: session idle for too long", ErrExpired)
	errTooOld      = fmt.Errorf("%w: session reached its maximum age", ErrExpired)
	errRefreshDown = fmt.Errorf("%w: the issuer could not refresh the session", ErrNotReady)
)

// CookieConfig turns on browser sessions in proxy mode (the
// backend-for-frontend pattern): the browser holds only an HttpOnly
// __Host- cookie, and the sidecar turns it into the identity headers,
// refreshes the access token behind it and ends it on logout, timeouts and
// revocations.
type CookieConfig struct {
	// IssuerURL is the base URL of the issuer's OAuth endpoints
	// (/oauth2/token, /oauth2/revoke). Required.
	IssuerURL string
	// KeyFile holds the cookie sealing secret (base64 of at least 32
	// bytes, mode 0600 or 0400). Replicas that share it open each other's
	// cookies. Default: <DataDir>/cookie.key, created at first start.
	KeyFile string
	// Idle ends a session without a request for this long. Default
	// DefaultCookieIdle; it has a precision of a minute.
	Idle time.Duration
	// MaxAge ends a session this long after login, whatever its activity.
	// Default DefaultCookieMaxAge.
	MaxAge time.Duration
	// LoginPath, when set, is where a GET for an HTML page without a
	// valid session is redirected (303) instead of answered 401. It is
	// public.
	LoginPath string
	// PublicPaths are path prefixes forwarded without a session (the
	// login page and its assets): "/login" covers /login and /login/...
	// A valid cookie still sets the identity headers there.
	PublicPaths []string
	// ClientID and ClientSecret authenticate the sidecar to the issuer
	// when the sessions belong to a registered client. Default: none
	// (public client).
	ClientID, ClientSecret string
	// HTTPClient calls the issuer. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock of the idle and absolute timeouts. Default time.Now.
	Now func() time.Time
}

func (c *CookieConfig) setDefaults(dataDir string) {
	if c.KeyFile == "" {
		c.KeyFile = filepath.Join(dataDir, cookieKeyFile)
	}
	if c.Idle == 0 {
		c.Idle = DefaultCookieIdle
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultCookieMaxAge
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: issuerTimeout}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.IssuerURL = strings.TrimRight(c.IssuerURL, "/")
}

// validate returns every problem with c.
func (c *CookieConfig) validate() []error {
	var errs []error
	if u, err := url.Parse(c.IssuerURL); c.IssuerURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("cookie sessions: issuer URL %q: want the issuer's http(s) base URL", c.IssuerURL))
	}
	if c.Idle < time.Second || c.MaxAge < time.Second || c.Idle > c.MaxAge {
		errs = append(errs, fmt.Errorf("cookie sessions: idle %s and max age %s: want at least 1s each, idle at most the max age", c.Idle, c.MaxAge))
	}
	if c.LoginPath != "" && !localPath(c.LoginPath) {
		errs = append(errs, fmt.Errorf("cookie sessions: login path %q: want a path on this site, starting with one /", c.LoginPath))
	}
	for _, p := range c.PublicPaths {
		if !localPath(p) || strings.HasPrefix(p, ownPrefix) {
			errs = append(errs, fmt.Errorf("cookie sessions: public path %q: want a path starting with one /", p))
		}
	}
	if c.ClientSecret != "" && c.ClientID == "" {
		errs = append(errs, errors.New("cookie sessions: a client secret needs its client id"))
	}
	return errs
}

// localPath reports whether p is a clean absolute path on this site: not
// "//host" or "/\host", which browsers read as another site.
func localPath(p string) bool {
	return strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "//") && !strings.ContainsAny(p, "\\?#") &&
		(path.Clean(p) == p || path.Clean(p)+"/" == p)
}

// bff is the browser session layer in front of the proxy. Every request's
// session cookie is opened, checked against the timeouts, its access token
// verified with the sidecar's Verifier (keys, claims, denylist) and
// refreshed when near expiry; the upstream gets the identity headers, never
// the cookie. It is safe for concurrent use.
type bff struct {
	cfg  CookieConfig
	p    *proxy
	v    *Verifier
	seal *sealer
	csrf *csrfGuard
	iss  *issuerClient
	log  *slog.Logger

	mu      sync.Mutex
	handles map[string]*handleState // browser sessions refreshed or ended here, by handle
	flights map[string]*flight      // refreshes under way, by handle
	puts    int
}

// handleState is the newest state of a browser session this sidecar knows
// of, so that a request still carrying the cookie from before a refresh
// (sent before the browser stored the new one) uses the new tokens instead
// of presenting a used refresh token, which the issuer would take for
// theft; or the session's end, so that a cookie is refused here from the
// moment of logout, before the revocation comes back from the stream.
type handleState struct {
	st    *cookieState
	ended bool
	until time.Time // forgotten after
}

// flight is one refresh of a browser session; concurrent requests of that
// session wait for it instead of refreshing again (which the issuer would
// take for refresh token reuse).
type flight struct {
	done chan struct{}
	st   *cookieState
	c    *Claims
	kid  string
	err  error
}

// bffRequest travels in a proxied request's context to the proxy's
// rewrite and response hooks.
type bffRequest struct {
	st   *cookieState // the session that admitted the request; nil if anonymous
	csrf string       // its CSRF token
	hdr  http.Header  // the response's headers, where a refreshed cookie may already be
}

type bffKey struct{}

var _ http.Handler = (*bff)(nil)

// newBFF puts browser sessions in front of p. cfg has its defaults.
func newBFF(cfg CookieConfig, p *proxy, v *Verifier, log *slog.Logger) (*bff, error) {
	secret, err := loadCookieKey(cfg.KeyFile, true)
	if err != nil {
		return nil, err
	}
	seal, err := newSealer(secret)
	if err != nil {
		return nil, err
	}
	b := &bff{cfg: cfg, p: p, v: v, seal: seal, csrf: newCSRFGuard(seal), log: log,
		iss:     &issuerClient{base: cfg.IssuerURL, clientID: cfg.ClientID, clientSecret: cfg.ClientSecret, hc: cfg.HTTPClient},
		handles: make(map[string]*handleState), flights: make(map[string]*flight)}
	if cfg.LoginPath != "" {
		b.cfg.PublicPaths = append(append([]string(nil), cfg.PublicPaths...), cfg.LoginPath)
	}
	rewrite := p.rp.Rewrite
	p.rp.Rewrite = func(pr *httputil.ProxyRequest) {
		rewrite(pr)
		if br, ok := pr.In.Context().Value(bffKey{}).(*bffRequest); ok && br.csrf != "" {
			pr.Out.Header.Set(HeaderCSRF, br.csrf)
		}
	}
	p.rp.ModifyResponse = b.modifyResponse
	p.rp.ErrorHandler = b.upstreamError
	return b, nil
}

// ServeHTTP implements http.Handler: it admits a request by its session
// cookie (or its bearer token, as plain proxy mode does) and forwards it.
func (b *bff) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	stripHeraldHeaders(r.Header)
	cookies := takeCookie(r.Header) // the upstream never sees the session cookie
	br := &bffRequest{hdr: w.Header()}
	r = r.WithContext(context.WithValue(r.Context(), bffKey{}, br))
	if r.Header.Get("Authorization") != "" {
		// Not sent by a browser on its own, so not forgeable cross-site.
		b.p.ServeHTTP(w, r)
		return
	}
	if err := b.csrf.checkOrigin(r); err != nil {
		writeForbidden(w, err)
		return
	}
	public := b.public(r)
	var (
		c   *Claims
		kid string
	)
	if len(cookies) > 0 {
		st, sc, skid, err := b.session(r.Context(), w, cookies)
		switch {
		case errors.Is(err, ErrNotReady):
			writeRefusal(w, err)
			return
		case err != nil:
			b.log.Debug("session cookie refused", "reason", Reason(err), "remote", r.RemoteAddr)
			http.SetCookie(w, clearedCookie())
			if !public {
				b.refuse(w, r, err)
				return
			}
		default:
			br.st, c, kid = st, sc, skid
		}
	} else if !public {
		b.refuse(w, r, ErrMissing)
		return
	}
	if err := b.csrf.checkToken(r, br.st); err != nil {
		writeForbidden(w, err)
		return
	}
	if c == nil {
		b.p.forward(w, r)
		return
	}
	br.csrf = b.seal.csrfToken(br.st.Handle)
	b.v.serveAdmitted(w, r, c, kid, http.HandlerFunc(b.p.forward))
}

// refuse answers a request without a valid session: 303 to the login page
// for a page view when one is configured, else 401.
func (b *bff) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if b.cfg.LoginPath != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && acceptsHTML(r) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, b.cfg.LoginPath, http.StatusSeeOther)
		return
	}
	writeRefusal(w, err)
}

func acceptsHTML(r *http.Request) bool { return strings.Contains(r.Header.Get("Accept"), "text/html") }

// public reports whether r's path is under one of the public paths. A
// path the upstream could read differently (encoded slashes, dot
// segments) is not public.
func (b *bff) public(r *http.Request) bool {
	p := r.URL.Path
	if r.URL.RawPath != "" || !localPath(p) {
		return false
	}
	for _, pre := range b.cfg.PublicPaths {
		pre = strings.TrimSuffix(pre, "/")
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

// session admits the browser session of a request's cookie: it opens it,
// enforces the idle and absolute timeouts, verifies its access token,
// refreshes it when near expiry, and re-issues the cookie on w when its
// state changed. Errors wrap a reason: ErrNotReady when no verdict can be
// given now (the cookie is kept), any other when the session is over.
func (b *bff) session(ctx context.Context, w http.ResponseWriter, cookies []string) (*cookieState, *Claims, string, error) {
	if len(cookies) != 1 {
		return nil, nil, "", errCookie
	}
	sent, err := b.seal.open(cookies[0])
	if err != nil {
		return nil, nil, "", err
	}
	st, ended := b.newest(sent)
	if ended {
		return nil, nil, "", errSessionEnded
	}
	now := b.cfg.Now()
	switch {
	case now.Sub(time.Unix(st.Created, 0)) >= b.cfg.MaxAge:
		_ = b.end(ctx, st, "maximum age reached") // logged by end; the cookie is over anyway
		return nil, nil, "", errTooOld
	case now.Sub(time.Unix(st.Seen, 0)) >= b.cfg.Idle:
		_ = b.end(ctx, st, "idle timeout") // logged by end; the cookie is over anyway
		return nil, nil, "", errIdle
	}
	start := time.Now()
	c, kid, err := b.v.verify(st.Access)
	if (err == nil && b.dueForRefresh(c)) || errors.Is(err, ErrExpired) {
		nst, nc, nkid, rerr := b.refresh(ctx, st)
		switch {
		case nst != nil:
			st, c, kid, err = nst, nc, nkid, rerr
		case errors.Is(rerr, errSessionEnded):
			err = rerr
		case err == nil:
			// The access token still serves; a later request refreshes.
			b.log.Warn("session refresh failed; retrying on a later request", "sid", st.Session, "err", rerr)
		default:
			b.log.Warn("session refresh failed", "sid", st.Session, "err", rerr)
			err = errRefreshDown
		}
	}
	if err == nil && c.SessionID != st.Session {
		err = fmt.Errorf("%w: token of another session", ErrMalformed)
	}
	if err == nil && c.Confirmation != nil && c.Confirmation.JKT != "" {
		err = ErrDPoPRequired // a DPoP-bound token needs the key's holder, not a cookie
	}
	b.v.metrics.record(ctx, start, err)
	if err != nil && !errors.Is(err, ErrNotReady) {
		return nil, nil, "", err
	}
	if err == nil && now.Sub(time.Unix(st.Seen, 0)) >= seenEvery {
		next := *st
		next.Seen = now.Unix()
		st = &next
	}
	if st != sent {
		b.setCookie(w.Header(), st, now)
	}
	return st, c, kid, err
}

// dueForRefresh reports whether the access token behind a session has
// less than a third of its lifetime left.
func (b *bff) dueForRefresh(c *Claims) bool {
	life := c.ExpiresAt.Sub(c.IssuedAt.Time)
	return !b.v.cfg.Now().Before(c.ExpiresAt.Add(-life / 3))
}

// setCookie adds the Set-Cookie of st to h, living until the session's
// maximum age.
func (b *bff) setCookie(h http.Header, st *cookieState, now time.Time) {
	v, err := b.seal.seal(st)
	if err != nil {
		b.log.Error("seal session cookie", "sid", st.Session, "err", err)
		return
	}
	h.Add("Set-Cookie", sessionCookie(v, time.Unix(st.Created, 0).Add(b.cfg.MaxAge).Sub(now)).String())
	h.Set("Cache-Control", "no-store")
}

// newest returns the newest state this sidecar knows of the session st
// is a state of, and whether that session ended.
func (b *bff) newest(st *cookieState) (*cookieState, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.handles[st.Handle]
	switch {
	case h == nil:
		return st, false
	case h.ended:
		return st, true
	case h.st.Gen > st.Gen:
		n := *h.st
		n.Seen = max(n.Seen, st.Seen)
		return &n, false
	}
	return st, false
}

// remember records the newest state of a session, or its end, until
// until. The caller holds b.mu.
func (b *bff) remember(st *cookieState, ended bool, until time.Time) {
	if h := b.handles[st.Handle]; h != nil && !ended && (h.ended || h.st.Gen > st.Gen) {
		return
	}
	b.handles[st.Handle] = &handleState{st: st, ended: ended, until: until}
	if b.puts++; b.puts%1024 == 0 {
		now := time.Now()
		for k, h := range b.handles {
			if now.After(h.until) {
				delete(b.handles, k)
			}
		}
	}
}

// refresh rotates the session's tokens at the issuer, once for all the
// requests of a session that need it at the same time. It returns the new
// state whenever the issuer rotated, even if the new token then fails to
// verify, so that the new refresh token is not lost.
func (b *bff) refresh(ctx context.Context, st *cookieState) (*cookieState, *Claims, string, error) {
	b.mu.Lock()
	if h := b.handles[st.Handle]; h != nil && h.ended {
		b.mu.Unlock()
		return nil, nil, "", errSessionEnded
	} else if h != nil && h.st.Gen > st.Gen {
		// A refresh finished since st was read: its tokens are the live ones.
		next := h.st
		b.mu.Unlock()
		c, kid, err := b.v.verify(next.Access)
		return next, c, kid, err
	}
	if f := b.flights[st.Handle]; f != nil {
		b.mu.Unlock()
		select {
		case <-f.done:
			return f.st, f.c, f.kid, f.err
		case <-ctx.Done():
			return nil, nil, "", ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	b.flights[st.Handle] = f
	b.mu.Unlock()

	f.st, f.c, f.kid, f.err = b.rotate(ctx, st)

	b.mu.Lock()
	delete(b.flights, st.Handle)
	switch {
	case f.st != nil:
		b.remember(f.st, false, time.Now().Add(2*b.v.cfg.Leeway+lifetime(f.c)))
	case errors.Is(f.err, errSessionEnded):
		b.remember(st, true, time.Now().Add(endedMemory))
	}
	b.mu.Unlock()
	close(f.done)
	return f.st, f.c, f.kid, f.err
}

// lifetime is how long the token of c lives; a quarter hour when unknown.
func lifetime(c *Claims) time.Duration {
	if c == nil {
		return 15 * time.Minute
	}
	return c.ExpiresAt.Sub(c.IssuedAt.Time)
}

// rotate presents the session's refresh token to the issuer and returns
// the session's next state with the verified claims of its new access
// token.
func (b *bff) rotate(ctx context.Context, st *cookieState) (*cookieState, *Claims, string, error) {
	ans, err := b.iss.refresh(ctx, st.Refresh)
	if err != nil {
		return nil, nil, "", err
	}
	next := *st
	next.Gen++
	next.Access, next.Refresh = ans.AccessToken, ans.RefreshToken
	c, kid, err := b.v.verify(ans.AccessToken)
	if err != nil {
		return &next, nil, "", err
	}
	return &next, c, kid, nil
}

// end ends a session at the issuer, which publishes its revocation to
// every verifier, and refuses its cookie here from now on.
func (b *bff) end(ctx context.Context, st *cookieState, why string) error {
	b.mu.Lock()
	b.remember(st, true, time.Now().Add(endedMemory))
	b.mu.Unlock()
	if err := b.iss.revoke(ctx, st.Refresh); err != nil {
		b.log.Warn("could not end session at the issuer", "sid", st.Session, "why", why, "err", err)
		return err
	}
	b.log.Info("browser session ended", "sid", st.Session, "why", why)
	return nil
}

// login creates a browser session from the refresh token an upstream
// handed over: one refresh proves it live and leaves the application
// holding only a used token.
func (b *bff) login(ctx context.Context, refreshToken string) (*cookieState, error) {
	if refreshToken == "" || len(refreshToken) > maxHandoffBytes || strings.ContainsFunc(refreshToken, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return nil, errors.New("the handed-over refresh token is empty, too long or not printable")
	}
	ans, err := b.iss.refresh(ctx, refreshToken)
	if err != nil {
		return nil, err
	}
	c, _, err := b.v.verify(ans.AccessToken)
	if err == nil && (c.SessionID == "" || c.SessionID != ans.SessionID) {
		err = errors.New("the access token names another session")
	}
	if err == nil && c.Confirmation != nil && c.Confirmation.JKT != "" {
		err = errors.New("the session is bound to a DPoP key")
	}
	now := b.cfg.Now()
	st := &cookieState{Handle: newHandle(), Gen: 1, Session: ans.SessionID, Access: ans.AccessToken, Refresh: ans.RefreshToken,
		Created: now.Unix(), Seen: now.Unix()}
	if err != nil {
		_ = b.end(ctx, st, "login refused") // logged by end
		return nil, fmt.Errorf("verify the new session's token: %w", err)
	}
	b.log.Info("browser session created", "sid", st.Session, "sub", c.Subject)
	return st, nil
}

// handoffError is a login handoff that failed; the browser gets 502.
type handoffError struct{ err error }

func (e *handoffError) Error() string { return "login handoff: " + e.err.Error() }
func (e *handoffError) Unwrap() error { return e.err }

// modifyResponse removes the handoff header and any session cookie from
// every upstream response and, on a handoff, replaces the browser's
// session with the new one: new handle, new cookie, and the previous
// session ended at the issuer.
func (b *bff) modifyResponse(resp *http.Response) error {
	takeSetCookie(resp.Header) // only the sidecar sets the session cookie
	vals := resp.Header.Values(HeaderHandoff)
	resp.Header.Del(HeaderHandoff)
	if len(vals) == 0 {
		return nil
	}
	br, ok := resp.Request.Context().Value(bffKey{}).(*bffRequest)
	if !ok {
		return &handoffError{errors.New("no browser session layer on this request")}
	}
	if len(vals) > 1 {
		return &handoffError{fmt.Errorf("%d %s headers, want one", len(vals), HeaderHandoff)}
	}
	ctx := resp.Request.Context()
	st, err := b.login(ctx, vals[0])
	if err != nil {
		return &handoffError{err}
	}
	takeSetCookie(br.hdr) // a refreshed cookie of the previous session
	b.setCookie(resp.Header, st, b.cfg.Now())
	if br.st != nil {
		_ = b.end(ctx, br.st, "replaced by a new login") // logged by end
	}
	return nil
}

// upstreamError answers 502 for a failed login handoff, else as the proxy
// does.
func (b *bff) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	var he *handoffError
	if errors.As(err, &he) {
		b.log.Warn("login handoff failed", "path", r.URL.Path, "err", he.err)
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusBadGateway, map[string]string{
			"error": "bad_gateway", "error_description": "the login could not create a session",
		})
		return
	}
	b.p.upstreamError(w, r, err)
}

// serveOwn serves the sidecar's browser session endpoints under /.herald/.
func (b *bff) serveOwn(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != LogoutPath {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed", "error_description": "logout is a POST"})
		return
	}
	b.logout(w, r)
}

// logout ends the browser's session everywhere: at the issuer, which
// publishes its revocation to every verifier, and in the browser, whose
// cookie is cleared. Like any state-changing request it must come from the
// same origin, so another site cannot log the user out.
func (b *bff) logout(w http.ResponseWriter, r *http.Request) {
	if err := b.csrf.checkOrigin(r); err != nil {
		writeForbidden(w, err)
		return
	}
	var st *cookieState
	ended := false
	if cookies := takeCookie(r.Header); len(cookies) == 1 {
		if sent, err := b.seal.open(cookies[0]); err == nil {
			st, ended = b.newest(sent)
		}
	}
	if err := b.csrf.checkToken(r, st); err != nil {
		writeForbidden(w, err)
		return
	}
	if st != nil && !ended {
		if err := b.end(r.Context(), st, "logout"); err != nil {
			// The cookie stays, so that the user can try again.
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, http.StatusBadGateway, map[string]string{
				"error": "bad_gateway", "error_description": "the session could not be ended at the issuer; try again",
			})
			return
		}
	}
	http.SetCookie(w, clearedCookie())
	w.Header().Set("Cache-Control", "no-store")
	if acceptsHTML(r) {
		to := b.cfg.LoginPath
		if to == "" {
			to = "/"
		}
		http.Redirect(w, r, to, http.StatusSeeOther)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// takeCookie removes the session cookie from a request's Cookie headers
// and returns its values.
func takeCookie(h http.Header) []string {
	var vals []string
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return nil
	}
	kept := lines[:0:0]
	for _, line := range lines {
		var rest []string
		for part := range strings.SplitSeq(line, ";") {
			name, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.TrimSpace(name) == CookieName {
				vals = append(vals, strings.Trim(strings.TrimSpace(v), `"`))
				continue
			}
			if strings.TrimSpace(part) != "" {
				rest = append(rest, strings.TrimSpace(part))
			}
		}
		if len(rest) > 0 {
			kept = append(kept, strings.Join(rest, "; "))
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h["Cookie"] = kept
	}
	return vals
}

// takeSetCookie removes every Set-Cookie of the session cookie from h.
func takeSetCookie(h http.Header) {
	lines := h.Values("Set-Cookie")
	if len(lines) == 0 {
		return
	}
	kept := lines[:0:0]
	for _, line := range lines {
		name, _, _ := strings.Cut(line, "=")
		if !strings.EqualFold(strings.TrimSpace(name), CookieName) {
			kept = append(kept, line)
		}
	}
	h.Del("Set-Cookie")
	if len(kept) > 0 {
		h["Set-Cookie"] = kept
	}
}
