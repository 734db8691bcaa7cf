package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heraldsec/herald/federation"
)

// DefaultSSFPollScope is the scope a poller authenticating with client
// credentials asks for: what a transmitter's poll endpoint requires (CAEP
// interoperability profile, section 2.7; Herald's own ssf.manage).
const DefaultSSFPollScope = "ssf.manage"

// Bounds of a poller's token requests.
const (
	// pollTokenTimeout bounds one token request.
	pollTokenTimeout = 10 * time.Second
	// pollTokenMaxResponse bounds a token response, in bytes.
	pollTokenMaxResponse = 64 << 10
	// pollTokenMaxLen bounds the access token itself.
	pollTokenMaxLen = 16 << 10
	// pollTokenMargin is how long before its expiry a token is replaced
	// (at most half its lifetime, so that a short-lived token is still
	// used more than once).
	pollTokenMargin = 30 * time.Second
)

// errPollUnauthorized is a poll endpoint's 401.
var errPollUnauthorized = errors.New("poll answered 401 Unauthorized")

// pollAuth is the bearer token of a poller: a static one, or one obtained
// from the transmitter's token endpoint with the OAuth client credentials
// grant (RFC 6749 section 4.4, client_secret_basic) and kept until shortly
// before it expires. It is used by its poller's goroutine only.
type pollAuth struct {
	p      SSFPoll
	client *http.Client
	now    func() time.Time
	// discover returns the token endpoint when p.TokenURL is empty.
	discover func(ctx context.Context) (string, error)

	tokenURL string    // the token endpoint, once known
	token    string    // the current token, if any
	renew    time.Time // when to replace it; zero: when refused
}

// newPollAuth returns the authentication of poller p.
func (s *Service) newPollAuth(p SSFPoll) *pollAuth {
	a := &pollAuth{p: p, now: s.cfg.Now, tokenURL: p.TokenURL,
		client: &http.Client{Timeout: pollTokenTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if p.Token != "" {
		a.token = p.Token
		return a
	}
	iss, _ := pollIssuer(s.cfg.Trust, p.URL)
	a.discover = func(ctx context.Context) (string, error) {
		if s.fed == nil || iss == "" {
			return "", fmt.Errorf("no trusted issuer at the origin of %.128s: set its token URL", p.URL)
		}
		u, err := s.fed.TokenEndpoint(ctx, iss)
		if err != nil {
			return "", fmt.Errorf("token endpoint of %s: %w", iss, err)
		}
		return u, nil
	}
	return a
}

// renewable reports whether a refused token can be replaced.
func (a *pollAuth) renewable() bool { return a.p.Token == "" }

// get returns the bearer token, obtaining a new one if there is none or
// it is due for renewal; fresh says whether it was just obtained.
func (a *pollAuth) get(ctx context.Context, log logger) (token string, fresh bool, err error) {
	if a.token != "" && (a.renew.IsZero() || a.now().Before(a.renew)) {
		return a.token, false, nil
	}
	a.token = ""
	if a.tokenURL == "" {
		if a.tokenURL, err = a.discover(ctx); err != nil {
			return "", false, err
		}
	}
	start := a.now()
	tok, lifetime, err := a.request(ctx)
	if err != nil {
		if a.p.TokenURL == "" {
			a.tokenURL = "" // discovered again next time: the provider may have moved it
		}
		return "", false, err
	}
	a.token, a.renew = tok, time.Time{}
	if lifetime > 0 {
		a.renew = start.Add(lifetime - min(pollTokenMargin, lifetime/2))
	}
	log.Debug("SSF poll token obtained", "url", a.p.URL, "token_url", a.tokenURL, "expires_in", lifetime)
	return a.token, true, nil
}

// drop forgets a token the poll endpoint refused.
func (a *pollAuth) drop() {
	if a.renewable() {
		a.token = ""
	}
}

// logger is what pollAuth logs with.
type logger interface {
	Debug(msg string, args ...any)
}

// tokenResponse is what a poller reads of a token response (RFC 6749
// section 5.1) or error response (section 5.2).
type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        *int64 `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// request asks the token endpoint for a token, and returns it with its
// lifetime (zero if the response states none). Errors name the endpoint
// and its answer, never the secret nor a token.
func (a *pollAuth) request(ctx context.Context) (string, time.Duration, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {a.pollScope()}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("token request to %.128s: %w", a.tokenURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 section 2.3.1: both form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(a.p.ClientID), url.QueryEscape(a.p.ClientSecret))
	resp, err := a.client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token request to %.128s: %w", a.tokenURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, pollTokenMaxResponse+1))
	if err != nil {
		return "", 0, fmt.Errorf("token response of %.128s: %w", a.tokenURL, err)
	}
	if len(data) > pollTokenMaxResponse {
		return "", 0, fmt.Errorf("token response of %.128s larger than %d bytes", a.tokenURL, pollTokenMaxResponse)
	}
	var tr tokenResponse
	jsonErr := json.Unmarshal(data, &tr)
	if resp.StatusCode != http.StatusOK {
		if jsonErr == nil && tr.Error != "" {
			return "", 0, fmt.Errorf("token endpoint %.128s refused client %.128q: %s %.64q: %.256q", a.tokenURL, a.p.ClientID, resp.Status, tr.Error, tr.ErrorDescription)
		}
		return "", 0, fmt.Errorf("token endpoint %.128s answered %s", a.tokenURL, resp.Status)
	}
	switch {
	case jsonErr != nil:
		return "", 0, fmt.Errorf("token response of %.128s: %w", a.tokenURL, jsonErr)
	case tr.AccessToken == "":
		return "", 0, fmt.Errorf("token response of %.128s: no access_token", a.tokenURL)
	case len(tr.AccessToken) > pollTokenMaxLen || !isTokenChars(tr.AccessToken):
		return "", 0, fmt.Errorf("token response of %.128s: access_token is not a bearer token of at most %d characters", a.tokenURL, pollTokenMaxLen)
	case !strings.EqualFold(tr.TokenType, "Bearer"):
		return "", 0, fmt.Errorf("token response of %.128s: token_type %.32q, want Bearer", a.tokenURL, tr.TokenType)
	case tr.ExpiresIn != nil && *tr.ExpiresIn < 0:
		return "", 0, fmt.Errorf("token response of %.128s: negative expires_in", a.tokenURL)
	}
	var lifetime time.Duration
	if tr.ExpiresIn != nil {
		lifetime = time.Duration(min(*tr.ExpiresIn, int64(24*time.Hour/time.Second))) * time.Second
	}
	return tr.AccessToken, lifetime, nil
}

// pollScope returns the scope the poller asks for.
func (a *pollAuth) pollScope() string {
	if a.p.Scope != "" {
		return a.p.Scope
	}
	return DefaultSSFPollScope
}

// isTokenChars reports whether s has only the characters of an RFC 6750
// b64token.
func isTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/=", c) >= 0) {
			return false
		}
	}
	return true
}

// pollIssuer returns the trusted issuer whose token endpoint serves poll
// URL u: among those of u's origin, the one whose path is the longest
// prefix of u's path, else the only one.
func pollIssuer(trust []federation.Issuer, u string) (string, bool) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", false
	}
	var best string
	bestLen, sameOrigin, only := -1, 0, ""
	for _, is := range trust {
		iu, err := url.Parse(is.URL)
		if err != nil || iu.Scheme != pu.Scheme || !strings.EqualFold(iu.Host, pu.Host) {
			continue
		}
		sameOrigin++
		only = is.URL
		p := strings.TrimSuffix(iu.Path, "/")
		if (pu.Path == p || strings.HasPrefix(pu.Path, p+"/")) && len(p) > bestLen {
			best, bestLen = is.URL, len(p)
		}
	}
	switch {
	case best != "":
		return best, true
	case sameOrigin == 1:
		return only, true
	}
	return "", false
}
