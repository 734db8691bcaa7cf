//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"
)

// The identity provider tests run a real OpenID provider: panva's
// oidc-provider (testdata/oidc-provider, its version pinned in
// package.json and package-lock.json) on Node.js, installed with npm into
// the test's temporary directory, and sign in through its own login and
// consent pages with headless Chromium.

// oidcProviderSource is the directory of the provider's package and script.
const oidcProviderSource = "testdata/oidc-provider"

// The client and the API the provider knows: the tests are the client,
// and Herald's verifiers guard the API.
const (
	idpClientID = "app"
	idpResource = "https://api.test"
	idpAudience = "https://api.test"
	// idpClientSecret is a test value, not a secret of any deployment.
	idpClientSecret = "app-client-secret-for-the-idp-tests"
	// backchannelLogoutEvent is the member of a logout token's events
	// claim that makes it one (OpenID Connect Back-Channel Logout 1.0 §2.4).
	backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"
)

// providerReady is the line the provider prints once it serves.
var providerReady = regexp.MustCompile(`oidc-provider ready issuer=(\S+)`)

// idpConfig is the provider's configuration file (see provider.mjs).
type idpConfig struct {
	Port                  int    `json:"port"`
	JWKSFile              string `json:"jwks_file"`
	ClientID              string `json:"client_id"`
	ClientSecret          string `json:"client_secret"`
	RedirectURI           string `json:"redirect_uri"`
	PostLogoutRedirectURI string `json:"post_logout_redirect_uri,omitempty"`
	BackchannelLogoutURI  string `json:"backchannel_logout_uri"`
	Resource              string `json:"resource"`
	Audience              string `json:"audience"`
	CookieKey             string `json:"cookie_key"`
}

// idpKey is a signing key of the provider.
type idpKey struct {
	kid string
	key *rsa.PrivateKey
}

// newIDPKey generates an RSA key named kid.
func newIDPKey(t *testing.T, kid string) idpKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return idpKey{kid: kid, key: k}
}

// jwk returns k as a private JSON Web Key for RS256.
func (k idpKey) jwk() map[string]string {
	b := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.Bytes()) }
	p := k.key
	return map[string]string{
		"kty": "RSA", "kid": k.kid, "use": "sig", "alg": "RS256",
		"n": b(p.N), "e": b(big.NewInt(int64(p.E))), "d": b(p.D),
		"p": b(p.Primes[0]), "q": b(p.Primes[1]),
		"dp": b(p.Precomputed.Dp), "dq": b(p.Precomputed.Dq), "qi": b(p.Precomputed.Qinv),
	}
}

// installOIDCProvider installs the provider's package into a temporary
// directory (see installNodePackage).
func installOIDCProvider(t *testing.T) string {
	t.Helper()
	return installNodePackage(t, oidcProviderSource, "the identity provider tests")
}

// oidcProvider is a running OpenID provider.
type oidcProvider struct {
	t      *testing.T
	dir    string
	cfg    idpConfig
	proc   *proc
	issuer string // its issuer URL, http://127.0.0.1:port
	meta   idpMetadata
}

// idpMetadata is what the tests read of the provider's discovery document.
type idpMetadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	JWKSURI               string `json:"jwks_uri"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
	BackchannelLogout     bool   `json:"backchannel_logout_supported"`
	BackchannelSession    bool   `json:"backchannel_logout_session_supported"`
}

// startOIDCProvider installs and starts the provider with cfg, signing
// with keys[0] and publishing all keys. A zero cfg.Port picks a free port;
// the client, resource and cookie key are filled in when empty.
func startOIDCProvider(t *testing.T, cfg idpConfig, keys ...idpKey) *oidcProvider {
	t.Helper()
	dir := installOIDCProvider(t)
	if cfg.Port == 0 {
		_, port, _ := net.SplitHostPort(freeAddr(t))
		cfg.Port, _ = strconv.Atoi(port)
	}
	if cfg.ClientID == "" {
		cfg.ClientID, cfg.ClientSecret = idpClientID, idpClientSecret
	}
	if cfg.Resource == "" {
		cfg.Resource, cfg.Audience = idpResource, idpAudience
	}
	if cfg.CookieKey == "" {
		cfg.CookieKey = randomSecret(t)
	}
	cfg.JWKSFile = filepath.Join(dir, "jwks.json")
	p := &oidcProvider{t: t, dir: dir, cfg: cfg}
	p.start(keys...)
	return p
}

// start writes the keys and the configuration and starts the provider on
// its port, waiting until it serves its discovery document.
func (p *oidcProvider) start(keys ...idpKey) {
	p.t.Helper()
	if len(keys) == 0 {
		p.t.Fatal("the provider needs a signing key")
	}
	set := struct {
		Keys []map[string]string `json:"keys"`
	}{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	writeJSON := func(name string, v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			p.t.Fatal(err)
		}
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			p.t.Fatal(err)
		}
		return path
	}
	writeJSON("jwks.json", set)
	cfgFile := writeJSON("config.json", p.cfg)
	p.proc = startProc(p.t, "oidc-provider", nil, "node", filepath.Join(p.dir, "provider.mjs"), cfgFile)
	p.issuer = p.proc.waitLog(providerReady, 30*time.Second)[1]
	if want := fmt.Sprintf("http://127.0.0.1:%d", p.cfg.Port); p.issuer != want {
		p.t.Fatalf("provider issuer %s, want %s", p.issuer, want)
	}
	p.meta = idpMetadata{}
	getJSON(p.t, p.issuer+"/.well-known/openid-configuration", &p.meta)
}

// restart stops the provider and starts it again on the same port and
// issuer URL with keys, as an identity provider rotating its signing key
// would: the new key first signs, the old one is still published.
// Its sessions and grants are lost, as in memory.
func (p *oidcProvider) restart(keys ...idpKey) {
	p.t.Helper()
	p.proc.kill()
	p.start(keys...)
}

// getJSON GETs url and decodes its JSON body into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %.300s", url, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %.300s", url, err, body)
	}
}

// keyfunc returns a jwt.Keyfunc that finds a token's RS256 key by kid in
// the provider's published JWKS, fetched now.
func (p *oidcProvider) keyfunc() jwt.Keyfunc {
	p.t.Helper()
	var set struct {
		Keys []struct {
			Kty, Kid, Use, Alg, N, E string
		} `json:"keys"`
	}
	getJSON(p.t, p.meta.JWKSURI, &set)
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		n, errN := base64.RawURLEncoding.DecodeString(k.N)
		e, errE := base64.RawURLEncoding.DecodeString(k.E)
		if k.Kty != "RSA" || errN != nil || errE != nil {
			p.t.Fatalf("the provider publishes a key that is not a public RSA key: %+v", k)
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	return func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return nil, fmt.Errorf("kid %q is not in the provider's JWKS", kid)
	}
}

// idpTokens is the provider's token response.
type idpTokens struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	TokenType   string `json:"token_type"`
	Scope       string `json:"scope"`
}

// idpAccessClaims is what the tests read of a JWT access token.
type idpAccessClaims struct {
	jwt.RegisteredClaims
	SID      string `json:"sid"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

// parseAccess verifies a JWT access token of the provider against its
// published keys and returns its claims and kid.
func (p *oidcProvider) parseAccess(token string) (idpAccessClaims, string) {
	p.t.Helper()
	var c idpAccessClaims
	tok, err := jwt.ParseWithClaims(token, &c, p.keyfunc(), jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(p.issuer), jwt.WithAudience(p.cfg.Audience), jwt.WithExpirationRequired())
	if err != nil {
		p.t.Fatalf("the access token does not verify with the provider's keys: %v", err)
	}
	if typ, _ := tok.Header["typ"].(string); typ != "at+jwt" {
		p.t.Errorf("access token typ %q, want at+jwt (RFC 9068)", typ)
	}
	kid, _ := tok.Header["kid"].(string)
	return c, kid
}

// logoutClaims is a logout token's claims.
type logoutClaims struct {
	jwt.RegisteredClaims
	SID    string                    `json:"sid"`
	Events map[string]map[string]any `json:"events"`
	Nonce  *string                   `json:"nonce"`
}

// parseLogout verifies a logout token of the provider as OpenID Connect
// Back-Channel Logout 1.0 §2.6 asks a receiver to, and returns its claims.
func (p *oidcProvider) parseLogout(token string) (logoutClaims, error) {
	var c logoutClaims
	tok, err := jwt.ParseWithClaims(token, &c, p.keyfunc(), jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(p.issuer), jwt.WithAudience(p.cfg.ClientID), jwt.WithIssuedAt())
	switch {
	case err != nil:
		return c, fmt.Errorf("logout token does not verify: %w", err)
	case tok.Header["typ"] != nil && tok.Header["typ"] != "logout+jwt":
		return c, fmt.Errorf("logout token typ %v", tok.Header["typ"])
	case c.Events == nil || c.Events[backchannelLogoutEvent] == nil:
		return c, fmt.Errorf("logout token events %v lack %s", c.Events, backchannelLogoutEvent)
	case c.Nonce != nil:
		return c, errors.New("logout token carries a nonce")
	case c.SID == "" || c.Subject == "" || c.ID == "":
		return c, fmt.Errorf("logout token lacks sid, sub or jti: %+v", c)
	}
	return c, nil
}

// idpClient is the tests' OpenID client: its redirect URI is served by an
// httptest server that hands each authorization code to the login waiting
// for its state.
type idpClient struct {
	srv     *httptest.Server
	mu      sync.Mutex
	waiting map[string]chan url.Values // by state
}

// newIDPClient serves the client's redirect URI.
func newIDPClient(t *testing.T) *idpClient {
	c := &idpClient{waiting: map[string]chan url.Values{}}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c.mu.Lock()
		ch := c.waiting[q.Get("state")]
		delete(c.waiting, q.Get("state"))
		c.mu.Unlock()
		if ch == nil {
			http.Error(w, "unknown state", http.StatusBadRequest)
			return
		}
		ch <- q
		io.WriteString(w, `<!DOCTYPE html><html><body><p id="callback">signed in</p></body></html>`)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// redirectURI is the client's registered redirect URI.
func (c *idpClient) redirectURI() string { return c.srv.URL + "/callback" }

// expect registers state and returns the channel its callback arrives on.
func (c *idpClient) expect(state string) <-chan url.Values {
	ch := make(chan url.Values, 1)
	c.mu.Lock()
	c.waiting[state] = ch
	c.mu.Unlock()
	return ch
}

// idpBrowser is headless Chromium; each login runs in its own browser
// context (its own cookies), so two logins are two sessions at the
// provider.
type idpBrowser struct {
	t   *testing.T
	ctx context.Context
}

// newIDPBrowser starts headless Chromium with the flags this machine
// needs; it stops when the test ends.
func newIDPBrowser(t *testing.T) *idpBrowser {
	t.Helper()
	exe := chromium(t)
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-background-networking", true),
		// Every page of these tests is on the loopback interface; the
		// provider's pages also import a web font, which must neither be
		// fetched nor hold up their load.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"))
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	return &idpBrowser{t: t, ctx: bctx}
}

// idpSession is one browser context signed in at the provider, with the
// tokens its login yielded.
type idpSession struct {
	b      *idpBrowser
	ctx    context.Context
	user   string
	tokens idpTokens
	claims idpAccessClaims // of the access token
	kid    string          // of the access token
}

// do runs actions in the session's tab, failing the test with the page's
// address and text when they do not complete in time.
func (s *idpSession) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	s.b.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		pctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		defer cancel()
		page, _ := chromedp.Run(pctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
		s.b.t.Fatalf("%s: %v\npage: %.500s", what, err, page)
	}
}

// login signs user in at p through its login and consent pages in a new
// browser context, exchanges the authorization code for tokens with the
// resource indicator, and checks the access token is a JWT the
// provider signed, for that user, with a sid.
func (b *idpBrowser) login(p *oidcProvider, c *idpClient, user string) *idpSession {
	t := b.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // open its tab on ctx, not on a step's shorter context
		t.Fatalf("open a browser context: %v", err)
	}
	s := &idpSession{b: b, ctx: ctx, user: user}

	state, nonce, codeVerifier := randomSecret(t), randomSecret(t), randomSecret(t)+randomSecret(t)
	challenge := sha256.Sum256([]byte(codeVerifier))
	q := url.Values{
		"client_id":             {p.cfg.ClientID},
		"response_type":         {"code"},
		"scope":                 {"openid api"},
		"redirect_uri":          {c.redirectURI()},
		"resource":              {p.cfg.Resource},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}
	callback := c.expect(state)
	s.do("open the provider's login page", chromedp.Navigate(p.meta.AuthorizationEndpoint+"?"+q.Encode()),
		chromedp.WaitVisible(chromedp.CSS(`input[name="login"]`)))
	s.do("sign in as "+user, chromedp.SendKeys(chromedp.CSS(`input[name="login"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "any password"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="prompt"][value="consent"] ~ button`)))
	s.do("consent", chromedp.Click(chromedp.CSS(`button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("#callback")))
	var cb url.Values
	select {
	case cb = <-callback:
	case <-t.Context().Done():
		t.Fatal("no authorization code arrived")
	}
	code := cb.Get("code")
	if code == "" || cb.Get("iss") != p.issuer {
		t.Fatalf("callback %v: want a code and iss %s", cb, p.issuer)
	}

	form := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {c.redirectURI()},
		"resource":      {p.cfg.Resource},
		"code_verifier": {codeVerifier},
	}
	req, err := http.NewRequestWithContext(t.Context(), "POST", p.meta.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(p.cfg.ClientID), url.QueryEscape(p.cfg.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &s.tokens) != nil {
		t.Fatalf("token request: %d %.300s", resp.StatusCode, body)
	}
	s.claims, s.kid = p.parseAccess(s.tokens.AccessToken)
	if s.claims.Subject != user || s.claims.SID == "" || s.claims.ClientID != p.cfg.ClientID {
		t.Fatalf("access token claims %+v: want sub %s, a sid, client_id %s", s.claims, user, p.cfg.ClientID)
	}
	var id struct {
		jwt.RegisteredClaims
		SID   string `json:"sid"`
		Nonce string `json:"nonce"`
	}
	if _, err := jwt.ParseWithClaims(s.tokens.IDToken, &id, p.keyfunc(), jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(p.issuer), jwt.WithAudience(p.cfg.ClientID)); err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if id.SID != s.claims.SID || id.Nonce != nonce || id.Subject != user {
		t.Fatalf("ID token sid %q nonce %q sub %q: want the access token's sid %q, the request's nonce, %s",
			id.SID, id.Nonce, id.Subject, s.claims.SID, user)
	}
	return s
}

// logout signs the session out at the provider through its
// end_session_endpoint and confirmation page (RP-initiated logout): the
// provider then POSTs a logout token for the session's sid to the client's
// back-channel logout URI, and shows its signed-out page only once that
// POST was answered.
func (s *idpSession) logout(p *oidcProvider) {
	s.b.t.Helper()
	s.do("open the provider's logout page", chromedp.Navigate(p.meta.EndSessionEndpoint),
		chromedp.WaitVisible(chromedp.CSS("#logout-yes")))
	s.do("confirm the logout", chromedp.Click(chromedp.CSS("#logout-yes")), chromedp.WaitVisible(chromedp.CSS("#signed-out")))
}
