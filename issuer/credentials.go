package issuer

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/ratelimit"
	"github.com/heraldsec/herald/store"
)

// Scopes of admin credentials. ScopeAdmin includes every other scope.
const (
	ScopeAdmin    = "admin"    // everything: keys, clients, credentials
	ScopeRevoke   = "revoke"   // revocations and ending sessions, and read
	ScopeSessions = "sessions" // creating sessions (a login service)
	ScopeRead     = "read"     // lists, fleet, events
	// ScopeSignals pushes Shared Signals SETs (POST /ssf/push): the
	// credential a transmitter is given, which can do nothing else.
	ScopeSignals = "signals"
)

var validScopes = []string{ScopeAdmin, ScopeRevoke, ScopeSessions, ScopeRead, ScopeSignals}

// BootstrapCredential is the name of the credential from HERALD_ADMIN_TOKEN
// or admin.token: it has every scope.
const BootstrapCredential = "admin"

const keyCredential = "cred/" // cred/<name> -> credentialRecord

// credentialRecord is a named admin credential. Tokens have 256 random
// bits, so a SHA-256 of the token is a safe verifier to store.
type credentialRecord struct {
	Name    string    `json:"name"`
	Scopes  []string  `json:"scopes"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
	Rotated time.Time `json:"rotated,omitzero"`
}

// Credential is a named admin credential as the API shows it.
type Credential struct {
	Name    string    `json:"name"`
	Scopes  []string  `json:"scopes"`
	Created time.Time `json:"created"`
	Rotated time.Time `json:"rotated,omitzero"`
	// Token is shown once, when the credential is created or rotated.
	Token string `json:"token,omitempty"`
}

// CredentialRequest is the body of POST /v1/credentials.
type CredentialRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

// principal is who made an admin request.
type principal struct {
	name   string
	scopes []string
	hash   string // of the credential's token; "" for the bootstrap credential
}

// has reports whether p may act in scope. admin implies every scope, and
// revoke implies read.
func (p *principal) has(scope string) bool {
	return slices.Contains(p.scopes, ScopeAdmin) || slices.Contains(p.scopes, scope) ||
		(scope == ScopeRead && slices.Contains(p.scopes, ScopeRevoke))
}

// credentials holds the named credentials in memory, keyed by token hash,
// backed by the state store.
type credentials struct {
	bootstrap [32]byte
	failures  *ratelimit.Limiter
	log       *slog.Logger

	mu     sync.RWMutex
	byHash map[string]*principal
}

// loadCredentials returns the credentials: the bootstrap admin token and
// the named credentials read from state, with failures limited on the
// clock now.
func loadCredentials(state *store.DB, bootstrap adminAuth, now func() time.Time, log *slog.Logger) (*credentials, error) {
	c := &credentials{bootstrap: bootstrap.sum, byHash: make(map[string]*principal),
		failures: newAuthLimiter(now), log: log}
	err := state.Scan(keyCredential, func(_ string, b []byte) error {
		var rec credentialRecord
		if err := decodeJSON(b, &rec); err != nil {
			return err
		}
		c.byHash[rec.Hash] = &principal{name: rec.Name, scopes: rec.Scopes, hash: rec.Hash}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	return c, nil
}

// authenticate returns who presents the bearer token of r, or nil. A
// source whose failures are over the limit gets nil without its token being
// checked, so the endpoints that take either an admin credential or client
// authentication (introspection, RFC 7009 revocation) are no way around
// the limit either.
func (c *credentials) authenticate(r *http.Request) *principal {
	p, _ := c.check(r)
	return p
}

// check is authenticate that also says, when the source of r is over the
// failure limit, how long until it may try again.
func (c *credentials) check(r *http.Request) (*principal, time.Duration) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, 0
	}
	// One attempt is taken from the source's budget before the token is
	// looked at, and given back if it was right: concurrent guesses cannot
	// overdraw the budget.
	src := ratelimit.Source(r.RemoteAddr)
	attempt, wait := c.failures.Reserve(src)
	if attempt == nil {
		return nil, wait
	}
	// Comparison is of SHA-256 hashes: constant-time for the bootstrap
	// token, and a map lookup by hash for named ones, whose timing says
	// nothing about how close a guess was to a token.
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	var p *principal
	if subtle.ConstantTimeCompare(sum[:], c.bootstrap[:]) == 1 {
		p = &principal{name: BootstrapCredential, scopes: []string{ScopeAdmin}}
	} else {
		c.mu.RLock()
		p = c.byHash[hex.EncodeToString(sum[:])]
		c.mu.RUnlock()
	}
	if p != nil {
		attempt.Cancel()
	} else if c.failures.Empty(src) {
		// At most once per authFailureEvery per source, since refused
		// requests are not checked: a flood must not flood the log.
		c.log.Warn("admin authentication failures over the limit; source refused for now",
			"source", src, "limit", authFailureBurst, "retry_every", authFailureEvery)
	}
	return p, 0
}

// still reports whether p, who authenticated earlier, still holds its
// credential with scope: a deleted or rotated credential does not.
func (c *credentials) still(p *principal, scope string) bool {
	if p == nil || !p.has(scope) {
		return false
	}
	if p.hash == "" {
		return p.name == BootstrapCredential
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byHash[p.hash] == p
}

func (c *credentials) set(old, hash string, p *principal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old != "" {
		delete(c.byHash, old)
	}
	if hash != "" {
		c.byHash[hash] = p
	}
}

func checkScopes(scopes []string) error {
	if len(scopes) == 0 {
		return badRequest("scopes are required: admin, revoke, sessions, read or signals")
	}
	for _, sc := range scopes {
		if !slices.Contains(validScopes, sc) {
			return badRequest(fmt.Sprintf("unknown scope %q: want admin, revoke, sessions, read or signals", sc))
		}
	}
	return nil
}

// CreateCredential makes a named admin credential with the given scopes.
func (s *Service) CreateCredential(ctx context.Context, req CredentialRequest, actor, source string) (*Credential, error) {
	if err := checkName("credential", req.Name); err != nil {
		return nil, err
	}
	if req.Name == BootstrapCredential {
		return nil, badRequest("the name admin is the bootstrap credential's")
	}
	if err := checkScopes(req.Scopes); err != nil {
		return nil, err
	}
	return s.writeCredential(ctx, req.Name, req.Scopes, actor, source, "credential.create")
}

// RotateCredential gives a named credential a new token.
func (s *Service) RotateCredential(ctx context.Context, name, actor, source string) (*Credential, error) {
	return s.writeCredential(ctx, name, nil, actor, source, "credential.rotate")
}

var errNoCredential = &Error{Status: http.StatusNotFound, Code: "not_found", Description: "no such credential"}

func (s *Service) writeCredential(ctx context.Context, name string, scopes []string, actor, source, action string) (*Credential, error) {
	token := "hrld_" + randomSecret(32)
	sum := sha256.Sum256([]byte(token))
	hash := hex.EncodeToString(sum[:])
	now := s.now()
	var rec credentialRecord
	var old string
	_, err := s.outbox.commit(ctx, func(c *change) error {
		ok, err := c.get(keyCredential+name, &rec)
		switch {
		case err != nil:
			return err
		case action == "credential.create" && ok:
			return &Error{Status: http.StatusConflict, Code: "conflict", Description: "a credential with this name exists"}
		case action == "credential.rotate" && !ok:
			return errNoCredential
		case ok:
			old, rec.Rotated = rec.Hash, now
		default:
			rec = credentialRecord{Name: name, Scopes: scopes, Created: now}
		}
		rec.Hash = hash
		if err := c.put(keyCredential+name, &rec); err != nil {
			return err
		}
		c.emit(s.adminEvent(now, bus.TypeAdminCredential, actor, source, action, name, ""))
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.creds.set(old, hash, &principal{name: rec.Name, scopes: rec.Scopes, hash: hash})
	return &Credential{Name: rec.Name, Scopes: rec.Scopes, Created: rec.Created, Rotated: rec.Rotated, Token: token}, nil
}

// DeleteCredential removes a named credential; its token stops working.
func (s *Service) DeleteCredential(ctx context.Context, name, actor, source string) error {
	var rec credentialRecord
	_, err := s.outbox.commit(ctx, func(c *change) error {
		if ok, err := c.get(keyCredential+name, &rec); err != nil {
			return err
		} else if !ok {
			return errNoCredential
		}
		if err := c.del(keyCredential + name); err != nil {
			return err
		}
		c.emit(s.adminEvent(s.now(), bus.TypeAdminCredential, actor, source, "credential.delete", name, ""))
		return nil
	})
	if err != nil {
		return err
	}
	s.creds.set(rec.Hash, "", nil)
	return nil
}

// ListCredentials returns the named credentials, without tokens.
func (s *Service) ListCredentials() ([]Credential, error) {
	out := []Credential{{Name: BootstrapCredential, Scopes: []string{ScopeAdmin}}}
	err := s.state.Scan(keyCredential, func(_ string, b []byte) error {
		var rec credentialRecord
		if err := decodeJSON(b, &rec); err != nil {
			return err
		}
		out = append(out, Credential{Name: rec.Name, Scopes: rec.Scopes, Created: rec.Created, Rotated: rec.Rotated})
		return nil
	})
	return out, err
}

// adminEvent returns an audit event of an admin action.
func (s *Service) adminEvent(now time.Time, t bus.Type, actor, source, action, value, reason string) *bus.Event {
	return &bus.Event{ID: bus.NewID(), Type: t, Time: now, Actor: actor,
		Admin: &bus.Admin{Action: action, Source: source, Value: value, Reason: reason}}
}
