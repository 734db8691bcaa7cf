package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
)

// Service is the issuer: it signs tokens, takes revocations and publishes
// both as events.
type Service struct {
	cfg     Config
	conn    *bus.Conn
	keys    *keyring
	trusted *verifier.KeySet // HERALD_KEYS as verifiers see it, for JWKS
	admin   adminAuth
	ln      net.Listener
	log     *slog.Logger

	keyMu sync.Mutex // serializes key rotation and key revocation
}

// Open prepares an issuer: it creates or updates the streams and bucket,
// loads or creates the signing key and publishes it to HERALD_KEYS before
// anything is signed with it, loads or creates the admin token, and listens
// on cfg.HTTPAddr. Call Run to serve.
func Open(ctx context.Context, cfg Config, conn *bus.Conn) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("issuer config: %w", err)
	}
	log := cfg.Logger.With("component", "issuer")
	err := conn.EnsureStreams(ctx, bus.StreamConfig{
		RevocationMaxAge: cfg.revocationLifetime() + retentionMargin,
		Replicas:         cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	keys, created, err := openKeyring(filepath.Join(cfg.DataDir, "keys"), cfg.Algorithm)
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	if created {
		log.Info("signing key created", "kid", keys.Current().kid, "alg", keys.Current().alg)
	}
	for _, k := range keys.All() {
		if err := publishKey(ctx, conn, k); err != nil {
			return nil, fmt.Errorf("open issuer: %w", err)
		}
	}
	admin, path, created, err := loadAdminToken(cfg.AdminToken, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("open issuer: %w", err)
	}
	switch {
	case created:
		log.Info("admin token created", "file", path)
	case path != "":
		log.Info("admin token loaded", "file", path)
	default:
		log.Info("admin token from environment")
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("open issuer: listen: %w", err)
	}
	if cfg.IssuerURL == "" {
		cfg.IssuerURL = "http://" + ln.Addr().String()
	}
	return &Service{
		cfg: cfg, conn: conn, keys: keys, admin: admin, ln: ln, log: log,
		trusted: verifier.NewKeySet(nil, log),
	}, nil
}

// IssuerURL returns the iss claim of the tokens this issuer signs.
func (s *Service) IssuerURL() string { return s.cfg.IssuerURL }

// Addr returns the address the API listens on.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// URL returns the base http:// URL of the API.
func (s *Service) URL() string { return "http://" + s.ln.Addr().String() }

// Run serves the HTTP API until ctx ends and returns once it has stopped.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.trusted.Watch(ctx, s.conn) // returns nil when ctx ends
	}()
	s.log.Info("issuer ready", "http", s.URL(), "kid", s.keys.Current().kid, "issuer", s.cfg.IssuerURL)
	err := verifier.Serve(ctx, s.ln, newHandler(s))
	cancel()
	wg.Wait()
	return err
}

// Close releases the listener if Run never ran. It is safe to call more than once.
func (s *Service) Close() error {
	s.ln.Close()
	return nil
}

// SessionRequest is the body of POST /v1/sessions.
type SessionRequest struct {
	Subject  string   `json:"sub"`
	Tenant   string   `json:"tenant,omitempty"`
	ClientID string   `json:"client_id,omitempty"`
	Scope    string   `json:"scope,omitempty"`
	TTL      Duration `json:"ttl,omitempty"`
}

// SessionResponse is the answer to POST /v1/sessions.
type SessionResponse struct {
	SessionID   string `json:"session_id"`
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// CreateSession starts a session for req.Subject and returns its first
// access token. It answers only once the session.created and token.issued
// events are acknowledged by JetStream.
func (s *Service) CreateSession(ctx context.Context, req SessionRequest, actor string) (*SessionResponse, error) {
	if err := checkIdent("sub", req.Subject, true); err != nil {
		return nil, err
	}
	if err := checkIdent("tenant", req.Tenant, false); err != nil {
		return nil, err
	}
	if err := checkIdent("client_id", req.ClientID, false); err != nil {
		return nil, err
	}
	if err := checkText("scope", req.Scope, 1024); err != nil {
		return nil, err
	}
	ttl := time.Duration(req.TTL)
	switch {
	case ttl == 0:
		ttl = s.cfg.AccessTTL
	case ttl < time.Second:
		return nil, badRequest("ttl must be at least 1s")
	case ttl > s.cfg.MaxAccessTTL:
		return nil, badRequest(fmt.Sprintf("ttl must not exceed max_access_ttl (%s)", s.cfg.MaxAccessTTL))
	}
	clientID := req.ClientID
	if clientID == "" {
		clientID = s.cfg.ClientID
	}
	now := s.cfg.Now()
	sid := randomID(16)
	claims := &verifier.Claims{
		Issuer:    s.cfg.IssuerURL,
		Subject:   req.Subject,
		Audience:  []string{s.cfg.Audience},
		IssuedAt:  verifier.NewNumericDate(now),
		ExpiresAt: verifier.NewNumericDate(now.Add(ttl).Truncate(time.Second)),
		ID:        randomID(16),
		ClientID:  clientID,
		SessionID: sid,
		Scope:     req.Scope,
		Tenant:    req.Tenant,
	}
	key := s.keys.Current()
	token, err := sign(key, claims)
	if err != nil {
		return nil, err
	}
	_, err = s.conn.PublishAll(ctx, &bus.Event{
		ID: bus.NewID(), Type: bus.TypeSessionCreated, Time: now, Actor: actor,
		Session: &bus.Session{ID: sid, Subject: req.Subject, Tenant: req.Tenant, ClientID: clientID,
			Scope: req.Scope, Expires: claims.ExpiresAt.Time},
	}, &bus.Event{
		ID: bus.NewID(), Type: bus.TypeTokenIssued, Time: now, Actor: actor,
		Token: &bus.Token{ID: claims.ID, SessionID: sid, Subject: req.Subject, Tenant: req.Tenant,
			ClientID: clientID, KeyID: key.kid, IssuedAt: claims.IssuedAt.Time, Expires: claims.ExpiresAt.Time},
	})
	if err != nil {
		s.log.Error("session not created: events not acknowledged", "err", err)
		return nil, errUnavailable
	}
	return &SessionResponse{SessionID: sid, AccessToken: token, TokenType: "Bearer",
		ExpiresIn: int64(ttl / time.Second)}, nil
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

// RevocationRequest is the body of POST /v1/revocations.
type RevocationRequest struct {
	Kind   string `json:"kind"`
	Value  string `json:"value,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// RevocationResult is the answer to POST /v1/revocations.
type RevocationResult struct {
	ID  string    `json:"id"`
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
}

// Revoke publishes a revocation to the HERALD stream and answers once
// JetStream has acknowledged it; from then on it survives any crash. A key
// revocation first makes sure another key signs new tokens, and removes the
// revoked key from HERALD_KEYS after the revocation is acknowledged.
func (s *Service) Revoke(ctx context.Context, req RevocationRequest, actor, source string) (*RevocationResult, error) {
	kind, err := bus.ParseKind(req.Kind)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("unknown kind %q: want token, session, subject, client, tenant, key or all", req.Kind))
	}
	switch {
	case kind.NeedsValue() && req.Value == "":
		return nil, badRequest(fmt.Sprintf("kind %s needs a value", kind))
	case !kind.NeedsValue() && req.Value != "":
		return nil, badRequest(fmt.Sprintf("kind %s takes no value", kind))
	}
	if err := checkIdent("value", req.Value, false); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.Reason, 1024); err != nil {
		return nil, err
	}
	if kind == bus.KindKey {
		s.keyMu.Lock()
		defer s.keyMu.Unlock()
		if err := s.retireIfCurrent(ctx, req.Value); err != nil {
			return nil, err
		}
	}
	now := s.cfg.Now()
	rev := &bus.Event{
		ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: actor,
		Revocation: &bus.Revocation{Kind: kind, Value: req.Value, Reason: req.Reason,
			At: now, Until: now.Add(s.cfg.revocationLifetime())},
	}
	seq, err := s.conn.Publish(ctx, rev)
	if err != nil {
		s.log.Error("revocation not published", "kind", kind, "err", err)
		return nil, errUnavailable
	}
	s.log.Info("revoked", "kind", kind, "seq", seq, "actor", actor, "id", rev.ID)
	audit := &bus.Event{
		ID: bus.NewID(), Type: bus.TypeAdminRevoke, Time: now, Actor: actor,
		Admin: &bus.Admin{Action: "revoke", Source: source, Reason: req.Reason, Kind: kind, Value: req.Value, Seq: seq},
	}
	if _, err := s.conn.Publish(ctx, audit); err != nil {
		// The revocation is in force; only its audit record is missing.
		s.log.Error("audit event for revocation not published", "seq", seq, "err", err)
	}
	if kind == bus.KindKey {
		s.removeKey(ctx, req.Value)
	}
	// iat has milliseconds: once this call returns, let no token be issued
	// in the revocation's millisecond, so none issued afterwards is refused.
	if wait := now.Truncate(time.Millisecond).Add(time.Millisecond).Sub(s.cfg.Now()); wait > 0 {
		time.Sleep(wait)
	}
	return &RevocationResult{ID: rev.ID, Seq: seq, At: now}, nil
}

// retireIfCurrent makes a fresh key current, published before it signs,
// when kid is the key signing now.
func (s *Service) retireIfCurrent(ctx context.Context, kid string) error {
	if s.keys.Current().kid != kid {
		return nil
	}
	k, err := s.keys.generate(s.cfg.Algorithm)
	if err != nil {
		return err
	}
	if err := publishKey(ctx, s.conn, k); err != nil {
		s.log.Error("new signing key not published", "err", err)
		return errUnavailable
	}
	if err := s.keys.setCurrent(k); err != nil {
		return err
	}
	s.log.Info("signing key rotated", "kid", k.kid, "retired", kid)
	return nil
}

// removeKey deletes a revoked key from HERALD_KEYS and from disk. Failures
// are logged: verifiers already refuse the key from the revocation itself.
func (s *Service) removeKey(ctx context.Context, kid string) {
	kv, err := s.conn.Keys(ctx)
	if err == nil {
		err = kv.Delete(ctx, kid)
	}
	if err != nil {
		s.log.Error("revoked key not removed from bucket", "kid", kid, "err", err)
	}
	if s.keys.Has(kid) {
		if err := s.keys.remove(kid); err != nil {
			s.log.Error("revoked key not removed from disk", "kid", kid, "err", err)
		}
	}
}

// checkIdent checks an identifier: bounded, UTF-8, no control characters.
func checkIdent(name, v string, required bool) error {
	if required && v == "" {
		return badRequest(name + " is required")
	}
	if err := checkText(name, v, bus.MaxValueLen); err != nil {
		return err
	}
	return nil
}

func checkText(name, v string, maxLen int) error {
	if len(v) > maxLen {
		return badRequest(fmt.Sprintf("%s is longer than %d bytes", name, maxLen))
	}
	if !utf8.ValidString(v) {
		return badRequest(name + " is not valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return badRequest(name + " contains control characters")
		}
	}
	return nil
}

// Duration is a JSON duration: a number of seconds or a Go duration string
// such as "90s" or "5m".
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		secs, err := n.Int64()
		if err != nil || secs < 0 {
			return fmt.Errorf("ttl %s: want whole non-negative seconds", n)
		}
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("ttl: want seconds or a duration string")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("ttl %q: want a duration such as 90s or 5m", s)
	}
	*d = Duration(v)
	return nil
}
