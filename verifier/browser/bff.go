package browser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
)

// Defaults for Config.
const (
	DefaultIdle   = 2 * time.Hour
	DefaultMaxAge = 24 * time.Hour
	// DefaultRefreshWait bounds how long a request whose access token has
	// expired waits for another replica's refresh of its session.
	DefaultRefreshWait = 5 * time.Second
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
	// OwnPrefix is reserved for the browser session endpoints (ServeOwn).
	OwnPrefix = "/.herald/"
)

// Why a browser session ends at the sidecar.
var (
	errIdle        = fmt.Errorf("%w: session idle for too long", verifier.ErrExpired)
	errTooOld      = fmt.Errorf("%w: session reached its maximum age", verifier.ErrExpired)
	errRefreshDown = fmt.Errorf("%w: the issuer could not refresh the session", verifier.ErrNotReady)
)

// Config turns on browser sessions in proxy mode (the
// backend-for-frontend pattern): the browser holds only an HttpOnly
// __Host- cookie, and the sidecar turns it into the identity headers,
// refreshes the access token behind it and ends it on logout, timeouts and
// revocations.
type Config struct {
	// IssuerURL is the base URL of the issuer's OAuth endpoints
	// (/oauth2/token, /oauth2/revoke). Required.
	IssuerURL string
	// KeyFile holds the cookie sealing secret (base64 of at least 32
	// bytes, mode 0600 or 0400). Replicas that share it open each other's
	// cookies. Required; created at first start when missing. A sidecar
	// defaults it to DefaultKeyFile in its data directory.
	KeyFile string
	// Idle ends a session without a request for this long. Default
	// DefaultIdle; it has a precision of a minute.
	Idle time.Duration
	// MaxAge ends a session this long after login, whatever its activity.
	// Default DefaultMaxAge.
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
	// RefreshWait is how long a request whose access token has expired
	// waits for the refresh another replica claimed (HERALD_BFF) before it
	// is refused as a session that cannot go on (401, or the login page).
	// Default DefaultRefreshWait.
	RefreshWait time.Duration
	// SweepEvery is how often the sidecar ends, at the issuer, the sessions
	// it served that are past a timeout, without waiting for a request.
	// Default: a twentieth of the shorter timeout, between 1s and 1m.
	SweepEvery time.Duration
	// HTTPClient calls the issuer. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the session clock: the idle and absolute timeouts, the
	// refresh grace and what the layer remembers. Default time.Now. Token
	// lifetimes are judged by the Verifier's own clock.
	Now func() time.Time
}

// EnsureDefaults fills the zero fields of c with their defaults. New calls
// it; a caller that validates c before New calls it first.
func (c *Config) EnsureDefaults() {
	if c.Idle == 0 {
		c.Idle = DefaultIdle
	}
	if c.MaxAge == 0 {
		c.MaxAge = DefaultMaxAge
	}
	if c.RefreshWait == 0 {
		c.RefreshWait = DefaultRefreshWait
	}
	if c.SweepEvery == 0 {
		c.SweepEvery = min(max(min(c.Idle, c.MaxAge)/20, time.Second), seenEvery)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: issuerTimeout}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.IssuerURL = strings.TrimRight(c.IssuerURL, "/")
}

// Validate reports every problem with c at once; call it after
// EnsureDefaults.
func (c *Config) Validate() error {
	return errors.Join(c.validate()...)
}

// validate returns every problem with c.
func (c *Config) validate() []error {
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
		if !localPath(p) || strings.HasPrefix(p, OwnPrefix) {
			errs = append(errs, fmt.Errorf("cookie sessions: public path %q: want a path starting with one /", p))
		}
	}
	if c.RefreshWait < 0 || c.RefreshWait > bus.DefaultRefreshRelayTTL {
		errs = append(errs, fmt.Errorf("cookie sessions: refresh wait %s: want at most %s", c.RefreshWait, bus.DefaultRefreshRelayTTL))
	}
	if s := c.SweepEvery; s != 0 && (s < 10*time.Millisecond || s > time.Hour) {
		errs = append(errs, fmt.Errorf("cookie sessions: sweep every %s: want between 10ms and 1h", c.SweepEvery))
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

// Sessions is the browser session layer in front of a proxy to the
// application. Every request's session cookie is opened, checked against
// the timeouts, its access token verified with the Verifier (keys, claims,
// denylist) and refreshed when near expiry; the upstream gets the identity
// headers, never the cookie. It is safe for concurrent use.
type Sessions struct {
	cfg  Config
	up   Upstream
	v    *verifier.Verifier
	seal *sealer
	csrf *csrfGuard
	iss  *issuerClient
	rly  *refreshRelay // shares refreshes with the other replicas; nil without a bus
	log  *slog.Logger

	mu         sync.Mutex
	handles    map[string]*handleState   // browser sessions refreshed or ended here, by handle
	flights    map[string]*flight        // refreshes under way, by handle
	served     map[string]*servedSession // browser sessions served here, for the sweep (sessionsweep.go)
	servedFull bool                      // served reached maxServed; logged once
	puts       int
}

// bffRequest travels in a proxied request's context to the proxy's
// rewrite and response hooks.
type bffRequest struct {
	st   *cookieState // the session that admitted the request; nil if anonymous
	csrf string       // its CSRF token
	hdr  http.Header  // the response's headers, where a refreshed cookie may already be
}

type bffKey struct{}

var _ http.Handler = (*Sessions)(nil)

// Upstream is the proxy to the application that Sessions stands in front
// of.
type Upstream struct {
	// Proxy is the reverse proxy to the application. New wraps its
	// Rewrite, ModifyResponse and ErrorHandler (which must be set): the
	// CSRF token goes upstream, the login handoff comes back.
	Proxy *httputil.ReverseProxy
	// Forward sends a request through Proxy, admitted (claims in its
	// context) or anonymous (a public path).
	Forward http.Handler
	// Bearer admits a request by its Authorization header and forwards it,
	// as proxy mode without cookies does.
	Bearer http.Handler
}

// New puts browser sessions in front of up, verifying their tokens with
// v. It fills the zero fields of cfg and fails if cfg is not valid or its
// key file cannot be read or created. conn, when not nil, shares refreshes
// with the other replicas (HERALD_BFF). Call Run for the timeouts' sweep.
func New(cfg Config, v *verifier.Verifier, up Upstream, conn *bus.Conn, log *slog.Logger) (*Sessions, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("browser sessions: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	p := up.Proxy
	secret, err := loadCookieKey(cfg.KeyFile, true)
	if err != nil {
		return nil, err
	}
	seal, err := newSealer(secret)
	if err != nil {
		return nil, err
	}
	b := &Sessions{cfg: cfg, up: up, v: v, seal: seal, csrf: newCSRFGuard(seal), log: log,
		iss:     &issuerClient{base: cfg.IssuerURL, clientID: cfg.ClientID, clientSecret: cfg.ClientSecret, hc: cfg.HTTPClient},
		handles: make(map[string]*handleState), flights: make(map[string]*flight), served: make(map[string]*servedSession)}
	if conn != nil {
		b.rly = &refreshRelay{conn: conn, seal: seal, patience: cfg.RefreshWait, now: cfg.Now, log: log}
	}
	if cfg.LoginPath != "" {
		b.cfg.PublicPaths = append(append([]string(nil), cfg.PublicPaths...), cfg.LoginPath)
	}
	rewrite := p.Rewrite
	p.Rewrite = func(pr *httputil.ProxyRequest) {
		rewrite(pr)
		if br, ok := pr.In.Context().Value(bffKey{}).(*bffRequest); ok && br.csrf != "" {
			pr.Out.Header.Set(HeaderCSRF, br.csrf)
		}
	}
	p.ModifyResponse = b.modifyResponse
	fail := p.ErrorHandler
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) { b.upstreamError(w, r, err, fail) }
	return b, nil
}

// ServeHTTP implements http.Handler: it admits a request by its session
// cookie (or its bearer token, as plain proxy mode does) and forwards it.
func (b *Sessions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	verifier.StripHeaders(r.Header)
	cookies := takeCookie(r.Header) // the upstream never sees the session cookie
	br := &bffRequest{hdr: w.Header()}
	r = r.WithContext(context.WithValue(r.Context(), bffKey{}, br))
	if r.Header.Get("Authorization") != "" {
		// Not sent by a browser on its own, so not forgeable cross-site.
		b.up.Bearer.ServeHTTP(w, r)
		return
	}
	if err := b.csrf.checkOrigin(r); err != nil {
		writeForbidden(w, err)
		return
	}
	public := b.public(r)
	var (
		c   *verifier.Claims
		kid string
	)
	if len(cookies) > 0 {
		st, sc, skid, err := b.session(r.Context(), w, cookies)
		switch {
		case errors.Is(err, verifier.ErrNotReady):
			verifier.WriteRefusal(w, err)
			return
		case err != nil:
			b.log.Debug("session cookie refused", "reason", verifier.Reason(err), "remote", r.RemoteAddr)
			http.SetCookie(w, clearedCookie())
			if !public {
				b.refuse(w, r, err)
				return
			}
		default:
			br.st, c, kid = st, sc, skid
		}
	} else if !public {
		b.refuse(w, r, verifier.ErrMissing)
		return
	}
	if err := b.csrf.checkToken(r, br.st); err != nil {
		writeForbidden(w, err)
		return
	}
	if c == nil {
		b.up.Forward.ServeHTTP(w, r)
		return
	}
	br.csrf = b.seal.csrfToken(br.st.Handle)
	ctx, done := b.admit(r.Context(), br.st, c)
	defer done()
	b.v.ServeAdmitted(w, r.WithContext(ctx), c, kid, b.up.Forward)
}

// refuse answers a request without a valid session: 303 to the login page
// for a page view when one is configured, else 401.
func (b *Sessions) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if b.cfg.LoginPath != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && acceptsHTML(r) {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, b.cfg.LoginPath, http.StatusSeeOther)
		return
	}
	verifier.WriteRefusal(w, err)
}

func acceptsHTML(r *http.Request) bool { return strings.Contains(r.Header.Get("Accept"), "text/html") }

// public reports whether r's path is under one of the public paths. A
// path the upstream could read differently (encoded slashes, dot
// segments) is not public.
func (b *Sessions) public(r *http.Request) bool {
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
