package browser

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

	"github.com/heraldsec/herald/verifier"
)

// issuerTimeout bounds one call to the issuer's OAuth endpoints.
const issuerTimeout = 10 * time.Second

// errSessionEnded means the issuer refused a session's refresh token for
// good (RFC 6749 invalid_grant): ended, revoked, expired, or reused. The
// browser must log in again.
var errSessionEnded = fmt.Errorf("%w: session ended", verifier.ErrRevoked)

// issuerClient calls the issuer's token (RFC 6749 section 6) and session
// end endpoints on behalf of browser sessions. It is
// safe for concurrent use.
type issuerClient struct {
	base         string
	clientID     string
	clientSecret string
	hc           *http.Client
}

// tokenAnswer is the part of a token response the sidecar uses.
type tokenAnswer struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	SessionID    string `json:"session_id"`
	Error        string `json:"error"`
}

// refresh rotates refreshToken. It fails with errSessionEnded when the
// issuer refuses the grant, with another error when it could not answer
// (unreachable, rate limited, 5xx): then the session may still be alive.
func (c *issuerClient) refresh(ctx context.Context, refreshToken string) (*tokenAnswer, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	var ans tokenAnswer
	code, err := c.post(ctx, "/oauth2/token", form, &ans)
	switch {
	case err != nil:
		return nil, err
	case code == http.StatusOK && ans.AccessToken != "" && ans.RefreshToken != "":
		if !strings.EqualFold(ans.TokenType, "Bearer") {
			// A DPoP-bound session needs a key the browser holds, not a cookie.
			return nil, fmt.Errorf("%w: token type %q; cookie sessions need Bearer tokens", errSessionEnded, ans.TokenType)
		}
		return &ans, nil
	case code == http.StatusBadRequest && (ans.Error == "invalid_grant" || ans.Error == "invalid_dpop_proof"):
		return nil, fmt.Errorf("%w: issuer says %s", errSessionEnded, ans.Error)
	}
	return nil, fmt.Errorf("refresh session: issuer answered %d %s", code, ans.Error)
}

// errSessionInUse: the issuer did not end a session on an idle timeout,
// because its refresh token was rotated since: another replica serves it.
var errSessionInUse = errors.New("the session is in use on another replica")

// issuerSessionEnd is the issuer's endpoint that ends a session on proof
// of one of its refresh tokens, current or used (issuer.SessionEndPath).
const issuerSessionEnd = "/v1/sessions/end"

// endSession ends session sid at the issuer, proven by refreshToken: the
// session's current refresh token or one it used up, so that a cookie whose
// token another replica or a copy of the cookie rotated since still ends
// it (RFC 7009 revocation takes a used token for unknown and ends
// nothing). It returns nil only when the issuer answered that the session
// is ended and its revocation published; the issuer publishes it to every
// verifier.
//
// With ifCurrent the issuer ends it only if refreshToken is the session's
// current one, and else answers errSessionInUse: another replica has
// refreshed it since, so it is not idle.
func (c *issuerClient) endSession(ctx context.Context, sid, refreshToken, why string, ifCurrent bool) error {
	form := url.Values{"session_id": {sid}, "refresh_token": {refreshToken}, "reason": {why}}
	if ifCurrent {
		form.Set("if_current", "true")
	}
	var ans struct {
		SessionID string `json:"session_id"`
		Error     string `json:"error"`
	}
	code, err := c.post(ctx, issuerSessionEnd, form, &ans)
	switch {
	case err != nil:
		return fmt.Errorf("end session: %w", err)
	case code == http.StatusOK && ans.SessionID == sid:
		return nil
	case code == http.StatusOK:
		return fmt.Errorf("end session: the issuer answered for session %q", ans.SessionID)
	case code == http.StatusConflict && ans.Error == "session_in_use":
		return errSessionInUse
	}
	return fmt.Errorf("end session: issuer answered %d %s", code, ans.Error)
}

// post sends form to the issuer's path and decodes a JSON answer into out.
// The caller's cancellation does not abandon the call: a rotation the
// issuer made must reach the browser, or the session is lost.
func (c *issuerClient) post(ctx context.Context, path string, form url.Values, out any) (int, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), issuerTimeout)
	defer cancel()
	if c.clientID != "" && c.clientSecret == "" {
		form.Set("client_id", c.clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, fmt.Errorf("call issuer: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.clientSecret != "" {
		req.SetBasicAuth(url.QueryEscape(c.clientID), url.QueryEscape(c.clientSecret)) // RFC 6749 section 2.3.1
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("call issuer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, fmt.Errorf("call issuer %s: %w", path, err)
	}
	if out != nil && len(body) > 0 && json.Unmarshal(body, out) != nil && resp.StatusCode == http.StatusOK {
		return 0, fmt.Errorf("call issuer %s: answer is not JSON", path)
	}
	return resp.StatusCode, nil
}
