package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
)

// catchUpWait is how long a request that would mint waits for the
// revocation follower to catch up before it is answered errCatchingUp:
// long enough for a replica that just started on a short stream.
const catchUpWait = 2 * time.Second

// awaitCaughtUp returns nil once the revocation follower has caught up
// with the stream, so that nothing is minted that a revocation the replica
// has not applied yet covers; errCatchingUp if it has not within
// s.catchUpWait or ctx ends.
func (s *Service) awaitCaughtUp(ctx context.Context) error {
	if s.ownEventKeyRevoked() {
		return errOwnEventKeyRevoked
	}
	if s.follow.CaughtUp() {
		return nil
	}
	wait := s.catchUpWait
	if wait == 0 {
		wait = catchUpWait
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for !s.follow.CaughtUp() {
		select {
		case <-ctx.Done():
			return errCatchingUp
		case <-deadline.C:
			return errCatchingUp
		case <-poll.C:
		}
	}
	return nil
}

// ownEventKeyRevoked reports whether a pinned root key revoked the event
// key this replica signs with: what it signs is refused everywhere.
func (s *Service) ownEventKeyRevoked() bool {
	return s.trusted.EventKeyRevoked(s.eventKey.kid)
}

// grant describes an access token to mint.
type grant struct {
	subject, tenant, clientID, sessionID, scope string
	ttl                                         time.Duration
	jkt                                         string   // DPoP key the token is bound to, if any
	audience                                    []string // default: the issuer's audience
}

// mint signs an access token for g with the current key and returns it
// with the token.issued event that reports it. It refuses with
// errCatchingUp until the revocation follower has caught up (see
// awaitCaughtUp).
func (s *Service) mint(now time.Time, g grant, actor string) (string, *verifier.Claims, *bus.Event, error) {
	if !s.follow.CaughtUp() {
		return "", nil, nil, errCatchingUp
	}
	claims := &verifier.Claims{
		Issuer:    s.cfg.IssuerURL,
		Subject:   g.subject,
		Audience:  g.audiences(s.cfg.Audience),
		IssuedAt:  verifier.NewNumericDate(now),
		ExpiresAt: verifier.NewNumericDate(now.Add(g.ttl).Truncate(time.Second)),
		ID:        randomID(16),
		ClientID:  g.clientID,
		SessionID: g.sessionID,
		// Scopes separated by single spaces, none around them: a
		// verifier refuses a scope a header would not carry unchanged.
		Scope:  strings.Join(strings.Fields(g.scope), " "),
		Tenant: g.tenant,
	}
	if g.jkt != "" {
		claims.Confirmation = &verifier.Confirmation{JKT: g.jkt}
	}
	key := s.keys.Current()
	token, err := sign(key, claims)
	if err != nil {
		return "", nil, nil, err
	}
	ev := &bus.Event{
		ID: bus.NewID(), Type: bus.TypeTokenIssued, Time: now, Actor: actor,
		Token: &bus.Token{ID: claims.ID, SessionID: g.sessionID, Subject: g.subject, Tenant: g.tenant,
			ClientID: g.clientID, KeyID: key.kid, IssuedAt: claims.IssuedAt.Time, Expires: claims.ExpiresAt.Time},
	}
	return token, claims, ev, nil
}

// sign returns the compact JWS of claims signed with key, with the RFC 9068
// header typ at+jwt.
func sign(key *signingKey, claims *verifier.Claims) (string, error) {
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}{key.alg, "at+jwt", key.kid})
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(hdr) + "." + enc.EncodeToString(body)
	sig, err := key.method.Sign(input, key.priv)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return input + "." + enc.EncodeToString(sig), nil
}

func (g grant) audiences(def string) []string {
	if len(g.audience) > 0 {
		return g.audience
	}
	return []string{def}
}

// allowed checks requested scopes and audiences against what a registered
// client may ask for: a client's scope lists its scopes, its audiences the
// services its tokens may be presented to (default: the issuer's audience).
func (s *Service) allowed(c *clientRecord, scope string, audience []string) error {
	if c == nil {
		return nil
	}
	for _, sc := range strings.Fields(scope) {
		if !slices.Contains(strings.Fields(c.Scope), sc) {
			return &Error{Status: http.StatusBadRequest, Code: "invalid_scope",
				Description: fmt.Sprintf("scope %q is not allowed for client %s", sc, c.ID)}
		}
	}
	may := c.Audiences
	if len(may) == 0 {
		may = []string{s.cfg.Audience}
	}
	for _, a := range audience {
		if !slices.Contains(may, a) {
			return &Error{Status: http.StatusBadRequest, Code: "invalid_target",
				Description: fmt.Sprintf("audience %q is not allowed for client %s", a, c.ID)}
		}
	}
	return nil
}

// tokenType is the token_type of a token bound (DPoP) or not (Bearer).
func tokenType(jkt string) string {
	if jkt != "" {
		return "DPoP"
	}
	return "Bearer"
}

func invalidDPoP(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_dpop_proof", Description: desc}
}

// dpopReplayMax bounds the DPoP proofs the token endpoint remembers.
var dpopReplayMax = 1 << 16

// checkProof checks the DPoP proof of a token request (RFC 9449 section 5)
// and returns it, or nil when there is none. It does not remember the
// proof: recordProof does, once the proof's key is shown to be bound to a
// valid credential.
func (s *Service) checkProof(proof string) (*verifier.DPoPProof, error) {
	if proof == "" {
		return nil, nil
	}
	p, err := verifier.CheckDPoP(proof, http.MethodPost, s.cfg.IssuerURL+"/oauth2/token", "", s.now(), nil)
	if err != nil {
		return nil, invalidDPoP(err.Error())
	}
	return p, nil
}

// recordProof remembers p, whose key is bound to a valid credential, and
// refuses it if it was used before.
func (s *Service) recordProof(p *verifier.DPoPProof) error {
	if p == nil {
		return nil
	}
	return s.replay.record(p, s.now())
}

// proofJKT returns the thumbprint of p's key, or "" without a proof.
func proofJKT(p *verifier.DPoPProof) string {
	if p == nil {
		return ""
	}
	return p.JKT
}

// newRefreshToken returns a fresh refresh token of session sid and its
// hash, the only form in which it is stored. The token is
// hrt_<256 random bits, base64url>.<sid>: the random part is the secret,
// the session id (no secret: access tokens carry it as sid) lets any
// issuer replica find the session.
func newRefreshToken(sid string) (token, hash string) {
	token = "hrt_" + randomSecret(32) + "." + sid
	return token, hashToken(token)
}

// refreshTokenSession returns the session id a refresh token names, or ""
// when the token is not of the form newRefreshToken makes.
func refreshTokenSession(tok string) string {
	rest, ok := strings.CutPrefix(tok, "hrt_")
	if !ok {
		return ""
	}
	_, sid, ok := strings.Cut(rest, ".")
	if !ok || !validSID.MatchString(sid) {
		return ""
	}
	return sid
}

// TokenResponse is the answer of the token endpoint (RFC 6749 section 5.1).
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	SessionID    string `json:"session_id,omitempty"`
}
