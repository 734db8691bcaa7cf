package issuer

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/ratelimit"
)

// Client is a registered confidential client, as the API shows it.
type Client struct {
	ID      string    `json:"client_id"`
	Name    string    `json:"name"`
	Scope   string    `json:"scope,omitempty"`
	Created time.Time `json:"created"`
	Rotated time.Time `json:"rotated,omitzero"`
	Revoked bool      `json:"revoked,omitempty"`
	// RequireDPoP binds every token of the client to a DPoP key.
	RequireDPoP bool `json:"require_dpop,omitempty"`
	// Audiences are the services the client's tokens may be for.
	Audiences []string `json:"audiences,omitempty"`
	// Secret is shown once, when the client is created or its secret rotated.
	Secret string `json:"client_secret,omitempty"`
}

// ClientRequest is the body of POST /v1/clients.
type ClientRequest struct {
	Name  string `json:"name"`
	Scope string `json:"scope,omitempty"`
	// RequireDPoP binds every token of the client to a DPoP key.
	RequireDPoP bool `json:"require_dpop,omitempty"`
	// Audiences are the services the client's tokens may be for (aud);
	// default the issuer's audience.
	Audiences []string `json:"audiences,omitempty"`
}

func invalidClient(desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc}
}

// client returns the registered client id, if there is one.
func (s *Service) client(id string) (*clientRecord, bool, error) {
	b, ok, err := s.state.Get(clientKey(id))
	if err != nil || !ok {
		return nil, false, err
	}
	var c clientRecord
	if err := decodeJSON(b, &c); err != nil {
		return nil, false, err
	}
	return &c, true, nil
}

// CreateClient registers a confidential client for the client_credentials
// grant. The secret is returned once; only its bcrypt hash is kept.
func (s *Service) CreateClient(ctx context.Context, req ClientRequest, actor, source string) (*Client, error) {
	if err := checkName("client", req.Name); err != nil {
		return nil, err
	}
	if err := checkText("scope", req.Scope, 1024); err != nil {
		return nil, err
	}
	secret, hash, err := s.newClientSecret()
	if err != nil {
		return nil, err
	}
	now := s.now()
	rec := &clientRecord{ID: "cl_" + randomID(12), Name: req.Name, Scope: req.Scope, SecretHash: hash, Created: now,
		RequireDPoP: req.RequireDPoP, Audiences: req.Audiences}
	_, err = s.outbox.commit(ctx, func(c *change) error {
		if err := c.put(clientKey(rec.ID), rec); err != nil {
			return err
		}
		c.emit(s.clientEvent(now, actor, source, "client.create", rec.ID))
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := rec.public()
	out.Secret = secret
	return out, nil
}

// RotateClientSecret gives a client a new secret; the old one stops working.
func (s *Service) RotateClientSecret(ctx context.Context, id, actor, source string) (*Client, error) {
	secret, hash, err := s.newClientSecret()
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out *Client
	_, err = s.outbox.commit(ctx, func(c *change) error {
		var rec clientRecord
		if ok, err := c.get(clientKey(id), &rec); err != nil {
			return err
		} else if !ok {
			return errNoClient
		}
		if rec.Revoked {
			return badRequest("client is revoked")
		}
		rec.SecretHash, rec.Rotated = hash, now
		if err := c.put(clientKey(id), &rec); err != nil {
			return err
		}
		c.emit(s.clientEvent(now, actor, source, "client.rotate", id))
		out = rec.public()
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.Secret = secret
	return out, nil
}

// ListClients returns every registered client, without secrets.
func (s *Service) ListClients() ([]Client, error) {
	out := []Client{}
	err := s.state.Scan(keyClient, func(_ string, b []byte) error {
		var rec clientRecord
		if err := decodeJSON(b, &rec); err != nil {
			return err
		}
		out = append(out, *rec.public())
		return nil
	})
	return out, err
}

var errNoClient = &Error{Status: http.StatusNotFound, Code: "not_found", Description: "no such client"}

func (s *Service) clientEvent(now time.Time, actor, source, action, id string) *bus.Event {
	return &bus.Event{ID: bus.NewID(), Type: bus.TypeAdminClient, Time: now, Actor: actor,
		Admin: &bus.Admin{Action: action, Source: source, Kind: bus.KindClient, Value: id}}
}

func (c *clientRecord) public() *Client {
	return &Client{ID: c.ID, Name: c.Name, Scope: c.Scope, Created: c.Created, Rotated: c.Rotated, Revoked: c.Revoked,
		RequireDPoP: c.RequireDPoP, Audiences: c.Audiences}
}

func (s *Service) newClientSecret() (secret string, hash []byte, err error) {
	secret = "hcs_" + randomSecret(32)
	hash, err = bcrypt.GenerateFromPassword([]byte(secret), s.cfg.ClientSecretCost)
	if err != nil {
		return "", nil, fmt.Errorf("hash client secret: %w", err)
	}
	return secret, hash, nil
}

// dummyHash is compared against when a client does not exist, so that
// unknown and known client ids take the same time.
func (s *Service) dummyHash() []byte {
	s.dummyOnce.Do(func() {
		s.dummy, _ = bcrypt.GenerateFromPassword([]byte("herald-dummy-secret"), s.cfg.ClientSecretCost)
	})
	return s.dummy
}

// clientAuth is the client authentication of a token-endpoint request
// (RFC 6749 section 2.3.1): HTTP Basic or client_id/client_secret in the
// form. A public client sends only client_id.
type clientAuth struct {
	ID, Secret string
	source     string // the source address, for the limits on failures
}

// parseClientAuth reads the client credentials of r, whose form is parsed.
func parseClientAuth(r *http.Request) (clientAuth, error) {
	a := clientAuth{source: ratelimit.Source(r.RemoteAddr)}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return a, invalidClient("unsupported authorization scheme")
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return a, invalidClient("malformed basic credentials")
		}
		id, secret, ok := strings.Cut(string(raw), ":")
		if !ok {
			return a, invalidClient("malformed basic credentials")
		}
		// RFC 6749 section 2.3.1: both are form-urlencoded first.
		if a.ID, err = url.QueryUnescape(id); err != nil {
			return a, invalidClient("malformed basic credentials")
		}
		if a.Secret, err = url.QueryUnescape(secret); err != nil {
			return a, invalidClient("malformed basic credentials")
		}
		if r.PostForm.Get("client_secret") != "" {
			return a, badRequest("use one client authentication method")
		}
		return a, nil
	}
	a.ID, a.Secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	return a, nil
}

// checkClientForSession checks that a refresh comes from the session's
// client: a registered (confidential) client must authenticate; a public
// one may name itself, and must name itself right. Clients are registered
// per replica: a session of a client registered on another replica is
// refused here, since its secret cannot be checked.
func (s *Service) checkClientForSession(sess *sessionRecord, a clientAuth) error {
	_, ok, err := s.client(sess.ClientID)
	if err != nil {
		return err
	}
	if ok {
		if a.ID != sess.ClientID {
			return invalidGrant("refresh token was issued to another client")
		}
		_, err := s.authenticate(a)
		return err
	}
	if sess.Registered {
		return invalidClient(fmt.Sprintf("client %s is not registered on this issuer replica", sess.ClientID))
	}
	if a.ID != "" && a.ID != sess.ClientID {
		return invalidGrant("refresh token was issued to another client")
	}
	return nil
}

// clientCredentials runs the client_credentials grant (RFC 6749 section
// 4.4): a short-lived access token for the client itself, no refresh token.
func (s *Service) clientCredentials(ctx context.Context, a clientAuth, scope, proof string) (*TokenResponse, error) {
	rec, err := s.authenticate(a)
	if err != nil {
		return nil, err
	}
	p, err := s.checkProof(proof)
	if err != nil {
		return nil, err
	}
	jkt := proofJKT(p)
	if rec.RequireDPoP && jkt == "" {
		return nil, invalidDPoP("this client must send a DPoP proof")
	}
	if err := s.awaitCaughtUp(ctx); err != nil {
		return nil, err
	}
	// The client is authenticated: its proof may be remembered.
	if err := s.recordProof(p); err != nil {
		return nil, err
	}
	granted := rec.Scope
	if scope != "" {
		allowed := strings.Fields(rec.Scope)
		for _, sc := range strings.Fields(scope) {
			if !slices.Contains(allowed, sc) {
				return nil, &Error{Status: http.StatusBadRequest, Code: "invalid_scope",
					Description: fmt.Sprintf("scope %q is not allowed for this client", sc)}
			}
		}
		granted = strings.Join(strings.Fields(scope), " ")
	}
	now := s.now()
	access, _, issued, err := s.mint(now, grant{subject: rec.ID, clientID: rec.ID, scope: granted, ttl: s.cfg.AccessTTL, jkt: jkt},
		"client:"+rec.ID)
	if err != nil {
		return nil, err
	}
	if _, err := s.outbox.commit(ctx, func(c *change) error { c.emit(issued); return nil }); err != nil {
		return nil, err
	}
	s.metrics.issue(ctx, "client_credentials")
	return &TokenResponse{AccessToken: access, TokenType: tokenType(jkt), ExpiresIn: int64(s.cfg.AccessTTL / time.Second),
		Scope: granted}, nil
}
