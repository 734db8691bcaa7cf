package browser

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/heraldsec/herald/internal/httpserve"
)

// maxHandoffBytes bounds the refresh token an upstream hands over.
const maxHandoffBytes = 512

// login creates a browser session from the refresh token an upstream
// handed over: one refresh proves it live and leaves the application
// holding only a used token.
func (b *Sessions) login(ctx context.Context, refreshToken string) (*cookieState, error) {
	if refreshToken == "" || len(refreshToken) > maxHandoffBytes || strings.ContainsFunc(refreshToken, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return nil, errors.New("the handed-over refresh token is empty, too long or not printable")
	}
	ans, err := b.iss.refresh(ctx, refreshToken)
	if err != nil {
		return nil, err
	}
	c, _, err := b.v.Check(ans.AccessToken)
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
	b.mu.Lock()
	b.note(st, c, now)
	b.mu.Unlock()
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
func (b *Sessions) modifyResponse(resp *http.Response) error {
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
		_ = b.endSession(ctx, br.st, "replaced by a new login", false) // logged by endSession
	}
	return nil
}

// upstreamError answers 502 for a failed login handoff, else as the
// proxy's own handler fail does.
func (b *Sessions) upstreamError(w http.ResponseWriter, r *http.Request, err error, fail func(http.ResponseWriter, *http.Request, error)) {
	var he *handoffError
	if errors.As(err, &he) {
		b.log.Warn("login handoff failed", "path", r.URL.Path, "err", he.err)
		w.Header().Set("Cache-Control", "no-store")
		httpserve.WriteJSON(w, http.StatusBadGateway, map[string]string{
			"error": "bad_gateway", "error_description": "the login could not create a session",
		})
		return
	}
	fail(w, r, err)
}
