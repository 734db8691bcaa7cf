package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/verifier"
)

// Defaults for BaselineConfig.
const DefaultDelayTrials = 50

// Names of the designs the baseline compares.
const (
	DesignHerald        = "herald"
	DesignSidecar       = "herald-sidecar"
	DesignRedis         = "redis-denylist"
	DesignIntrospection = "introspection"
)

// BaselineConfig configures Baseline.
type BaselineConfig struct {
	// Dir holds all data. Required.
	Dir string
	// RedisServer is the redis-server executable. Default DefaultRedisServer.
	RedisServer string
	// Clients is how many concurrent keep-alive HTTP clients load each
	// design. Default DefaultClients.
	Clients int
	// LoadDuration is how long each design is loaded. Default DefaultLoadDuration.
	LoadDuration time.Duration
	// Tokens is how many distinct tokens are presented in turn. Default DefaultTokens.
	Tokens int
	// Denylist is how many unrelated revocations each denylist holds
	// (Herald's and Redis's). Default DefaultDenylist.
	Denylist int
	// DelayTrials is how many revocations per design measure its
	// revocation delay. Default DefaultDelayTrials.
	DelayTrials int
	// Rounds is how many interleaved rounds LoadDuration is split into.
	// Default DefaultRounds.
	Rounds int
	// MicroDuration is how long the denylist check and the Redis round
	// trip are each measured. Default DefaultMicroDuration.
	MicroDuration time.Duration
	// Progress, if not nil, receives progress lines.
	Progress *Progress
}

func (c *BaselineConfig) setDefaults() {
	if c.RedisServer == "" {
		c.RedisServer = DefaultRedisServer
	}
	if c.Clients <= 0 {
		c.Clients = DefaultClients
	}
	if c.LoadDuration <= 0 {
		c.LoadDuration = DefaultLoadDuration
	}
	if c.Tokens <= 0 {
		c.Tokens = DefaultTokens
	}
	if c.Denylist < 0 {
		c.Denylist = 0
	} else if c.Denylist == 0 {
		c.Denylist = DefaultDenylist
	}
	if c.DelayTrials <= 0 {
		c.DelayTrials = DefaultDelayTrials
	}
	if c.MicroDuration <= 0 {
		c.MicroDuration = DefaultMicroDuration
	}
	if c.Rounds <= 0 {
		c.Rounds = DefaultRounds
	}
}

// BaselineDesign is one design's figures.
type BaselineDesign struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Load is the same HTTP load on the design's application.
	Load Rate `json:"load"`
	// Delay is the revocation delay: from the revoking call returning to
	// the first refusal a client polling the application sees (the sample
	// ends when that refusal arrives, so it includes one request).
	Delay Summary `json:"revocation_delay"`
	// Revoke is how long the revoking call itself took.
	Revoke Summary `json:"revoke_call"`
	// HeraldSpeedup is Herald's (embedded) requests per second over this design's.
	HeraldSpeedup float64 `json:"herald_speedup"`
}

// BaselineResult is the outcome of Baseline.
type BaselineResult struct {
	Clients      int     `json:"clients"`
	Tokens       int     `json:"tokens"`
	Denylist     int     `json:"denylist_entries"`
	LoadSeconds  float64 `json:"load_seconds"`
	RedisVersion string  `json:"redis_version"`
	// Designs are Herald embedded, Herald's sidecar, the Redis denylist and
	// introspection, in that order.
	Designs []BaselineDesign `json:"designs"`
	// DenylistCheck is Herald's denylist check of one token in process:
	// the seven in-memory lookups Verify makes.
	DenylistCheck Micro `json:"denylist_check"`
	// RedisRoundTrip is the same check against Redis: one MGET of the
	// seven keys from one client.
	RedisRoundTrip Micro `json:"redis_round_trip"`
	// DenylistSpeedup is RedisRoundTrip over DenylistCheck, per call: the
	// target (at least 50).
	DenylistSpeedup float64 `json:"denylist_speedup"`
}

// Baseline measures, in one run on one machine, Herald against the two
// designs users pick instead of it: a shared Redis denylist checked on
// every request (redis-server started here, no persistence), and central
// introspection (RFC 7662, a call to the issuer on every request).
//
// Each design is an application: an HTTP server in this process that
// checks the bearer token of every request before answering it, and gets
// the same load from the same clients. Herald's application embeds the
// verifier (verifier.Middleware over a sidecar's Verifier: no call at
// all); Herald's sidecar application asks a sidecar's GET /v1/verify, as
// nginx auth_request does; the Redis application verifies the token with
// Herald's own verifier (signature cache on, no local denylist) and then
// asks Redis with one MGET of the seven keys Herald's denylist check
// reads; the introspection application POSTs the token to the issuer's
// /oauth2/introspect. Everything but Redis runs in this process, and all
// share the machine's cores with the load generator. Every call here
// crosses loopback only: in a deployment the sidecar stays on the
// application's host while Redis and the issuer are across the network.
func Baseline(ctx context.Context, cfg BaselineConfig) (_ *BaselineResult, err error) {
	cfg.setDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("baseline: dir is required")
	}
	p := cfg.Progress
	wrap := func(err error) error { return fmt.Errorf("baseline: %w", err) }
	env, err := startBaselineEnv(ctx, cfg, cfg.Tokens+4*cfg.DelayTrials)
	if err != nil {
		return nil, wrap(err)
	}
	defer func() {
		if cerr := env.Close(); cerr != nil && err == nil {
			err = wrap(cerr)
		}
	}()
	res := &BaselineResult{Clients: cfg.Clients, Tokens: cfg.Tokens, Denylist: cfg.Denylist,
		LoadSeconds: cfg.LoadDuration.Seconds(), RedisVersion: env.redis.version}
	load, trials := env.sessions[:cfg.Tokens], env.sessions[cfg.Tokens:]
	client := newLoadClient(cfg.Clients)
	defer client.CloseIdleConnections()
	specs := make([]rateSpec, len(env.designs))
	for i, d := range env.designs {
		specs[i] = httpSpec(client, cfg.Clients, d.name, func(ctx context.Context, w, n int) (*http.Request, error) {
			return d.check.request(ctx, load[(w*7919+n)%len(load)].AccessToken)
		}, wantStatus(http.StatusOK))
	}
	p.Phasef("baseline: the same load on each design in turn: %d clients, %s each in %d rounds", cfg.Clients, cfg.LoadDuration, cfg.Rounds)
	rates, err := compareRates(ctx, cfg.Rounds, loadWarmup, cfg.LoadDuration, p, specs...)
	if err != nil {
		return nil, wrap(err)
	}
	client.CloseIdleConnections()
	for i, d := range env.designs {
		p.Phasef("baseline: %s: revocation delay over %d revocations", d.name, cfg.DelayTrials)
		delay, calls, err := revocationDelay(ctx, client, d.check, d.revoke, trials[i*cfg.DelayTrials:(i+1)*cfg.DelayTrials], p)
		if err != nil {
			return nil, wrap(fmt.Errorf("%s: revocation delay: %w", d.name, err))
		}
		res.Designs = append(res.Designs, BaselineDesign{Name: d.name, Description: d.desc, Load: rates[i],
			Delay: Summarize(delay), Revoke: Summarize(calls)})
	}
	for i := range res.Designs {
		res.Designs[i].HeraldSpeedup = ratio(res.Designs[0].Load.PerSecond, res.Designs[i].Load.PerSecond)
	}

	p.Phasef("baseline: denylist check in process against a Redis round trip, %s each", cfg.MicroDuration)
	if res.DenylistCheck, res.RedisRoundTrip, err = denylistVersusRedis(ctx, cfg, env.redis.addr); err != nil {
		return nil, wrap(err)
	}
	res.DenylistSpeedup = ratio(res.RedisRoundTrip.NsPerOp, res.DenylistCheck.NsPerOp)
	return res, nil
}

// baselineEnv is everything the baseline's designs run on: Redis, NATS,
// the issuer, a sidecar, and one application per design.
type baselineEnv struct {
	redis    *redisServer
	core     *core
	pool     *redisPool
	sidecar  *benchSidecar
	keys     *keyWatch
	upstream *http.Client // the applications' own client
	apps     []*app
	designs  []design
	// sessions are live sessions, none revoked.
	sessions []*issuer.SessionResponse
}

// design is one design's application.
type design struct {
	name, desc string
	check      checker
	revoke     func(ctx context.Context, s *issuer.SessionResponse) error
}

// startBaselineEnv starts the baseline's parts and applications, with
// cfg.Denylist unrelated revocations in each denylist, and creates
// sessions sessions. cfg must have its defaults set.
func startBaselineEnv(ctx context.Context, cfg BaselineConfig, sessions int) (_ *baselineEnv, err error) {
	p := cfg.Progress
	env := &baselineEnv{}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()
	p.Phasef("baseline: starting redis-server, NATS, issuer, verifier")
	if env.redis, err = startRedis(ctx, cfg.RedisServer, cfg.Dir); err != nil {
		return nil, err
	}
	if env.core, err = startCore(ctx, cfg.Dir); err != nil {
		return nil, err
	}
	c := env.core
	// The same unrelated revocations in both denylists.
	if err := publishRevocations(ctx, c.conn, cfg.Denylist, "unrelated", p); err != nil {
		return nil, err
	}
	if env.pool, err = newRedisPool(ctx, env.redis.addr, cfg.Clients+2); err != nil {
		return nil, err
	}
	if err := fillRedis(ctx, env.pool, cfg.Denylist, "unrelated"); err != nil {
		return nil, err
	}
	if env.sidecar, err = c.startSidecar(ctx, "bench-baseline", filepath.Join(cfg.Dir, "verifier"), true); err != nil {
		return nil, err
	}
	if env.keys, err = startKeyWatch(ctx, c); err != nil {
		return nil, err
	}
	env.upstream = newLoadClient(cfg.Clients)
	rd, err := newRedisCheck(env.keys.set, env.pool)
	if err != nil {
		return nil, err
	}
	revokeSession := func(ctx context.Context, s *issuer.SessionResponse) error {
		_, err := c.svc.Revoke(ctx, issuer.RevocationRequest{Kind: "session", Value: s.SessionID}, "bench", "bench")
		return err
	}
	pool := env.pool
	for _, d := range []struct {
		name, desc string
		handler    http.Handler
		revoke     func(ctx context.Context, s *issuer.SessionResponse) error
	}{{
		DesignHerald, "Herald embedded: verifier.Middleware in the application, local signature check (cached) and local denylist, no call",
		verifier.Middleware(env.sidecar.Verifier(), http.HandlerFunc(hello)), revokeSession,
	}, {
		DesignSidecar, "Herald sidecar: the application asks the sidecar's GET /v1/verify per request (nginx auth_request)",
		sidecarCheck(env.upstream, env.sidecar.URL()+"/v1/verify"), revokeSession,
	}, {
		DesignRedis, "shared Redis denylist: local signature check (Herald's verifier, cached, no local denylist), then one MGET to Redis per request",
		rd,
		func(ctx context.Context, s *issuer.SessionResponse) error {
			_, err := pool.do(ctx, "SET", denyKey(bus.KindSession, s.SessionID), "1", "PX", strconv.FormatInt(revocationLifetime.Milliseconds(), 10))
			return err
		},
	}, {
		DesignIntrospection, "central introspection: the application POSTs the token to the issuer's /oauth2/introspect (RFC 7662) per request",
		introspectionCheck(env.upstream, c.svc.URL()+"/oauth2/introspect"), revokeSession,
	}} {
		a, err := startApp(ctx, d.handler)
		if err != nil {
			return nil, err
		}
		env.apps = append(env.apps, a)
		env.designs = append(env.designs, design{name: d.name, desc: d.desc, check: appChecker(a.URL() + "/hello"), revoke: d.revoke})
	}
	p.Phasef("baseline: creating %d sessions", sessions)
	if env.sessions, err = c.sessions(ctx, sessions, "bench-baseline", p); err != nil {
		return nil, err
	}
	if err := waitUntil(ctx, time.Minute, env.sidecar.Ready); err != nil {
		return nil, fmt.Errorf("sidecar not ready: %w", err)
	}
	return env, nil
}

// Close stops the applications, then everything they use, and reports
// every error. It is safe on a partly started environment.
func (env *baselineEnv) Close() error {
	var errs []error
	for _, a := range env.apps {
		errs = append(errs, a.Close())
	}
	if env.upstream != nil {
		env.upstream.CloseIdleConnections()
	}
	if env.keys != nil {
		env.keys.Close()
	}
	if env.sidecar != nil {
		errs = append(errs, env.sidecar.Close())
	}
	if env.pool != nil {
		env.pool.Close()
	}
	if env.core != nil {
		errs = append(errs, env.core.Close())
	}
	if env.redis != nil {
		errs = append(errs, env.redis.stop())
	}
	return errors.Join(errs...)
}

// hello is the application behind every design: it answers an admitted
// request with a small JSON body.
func hello(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// refuse answers as Herald's verifier does for a refused token (RFC 6750).
func refuse(w http.ResponseWriter, status int, reason string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="invalid_token", error_description=%q`, reason))
	}
	writeJSON(w, status, map[string]string{"error": "invalid_token", "error_description": reason})
}

// app is one design's application on a loopback port.
type app struct {
	ln     net.Listener
	cancel context.CancelFunc
	done   chan error
}

func startApp(ctx context.Context, h http.Handler) (*app, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("application: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &app{ln: ln, cancel: cancel, done: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.Handle("/hello", h)
	go func() { a.done <- httpserve.Serve(runCtx, ln, mux) }()
	return a, nil
}

// URL returns the application's base URL.
func (a *app) URL() string { return "http://" + a.ln.Addr().String() }

// Close shuts the application down and waits for it.
func (a *app) Close() error {
	a.cancel()
	return <-a.done
}

// appChecker asks an application with a token: 200 admits it, 401 with
// error_description revoked refuses it as revoked.
func appChecker(url string) checker {
	return checker{
		request: func(ctx context.Context, token string) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err == nil {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			return req, err
		},
		refused: func(status int, body []byte) (bool, error) {
			switch status {
			case http.StatusOK:
				return false, nil
			case http.StatusUnauthorized:
				var e struct {
					Description string `json:"error_description"`
				}
				if json.Unmarshal(body, &e) == nil && e.Description == "revoked" {
					return true, nil
				}
			}
			return false, fmt.Errorf("status %d: %s", status, bytes.TrimSpace(body))
		},
	}
}

// checker asks an application about a token.
type checker struct {
	request func(ctx context.Context, token string) (*http.Request, error)
	// refused reports whether the answer refuses the token as revoked; it
	// fails on an answer that is neither an admission nor that.
	refused func(status int, body []byte) (bool, error)
}

// sidecarCheck admits requests that a sidecar's /v1/verify accepts.
func sidecarCheck(client *http.Client, verifyURL string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, verifyURL, nil)
		if err != nil {
			refuse(w, http.StatusInternalServerError, err.Error())
			return
		}
		req.Header.Set("Authorization", r.Header.Get("Authorization"))
		status, body, err := do(client, req)
		switch {
		case err != nil:
			refuse(w, http.StatusBadGateway, err.Error())
		case status == http.StatusOK:
			hello(w, r)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(body)
		}
	})
}

// introspectionCheck admits requests whose token the issuer's RFC 7662
// endpoint says is active, asking with the admin credential.
func introspectionCheck(client *http.Client, endpoint string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, err := verifier.BearerToken(r)
		if err != nil {
			refuse(w, http.StatusUnauthorized, verifier.Reason(err))
			return
		}
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, endpoint, strings.NewReader(url.Values{"token": {tok}}.Encode()))
		if err != nil {
			refuse(w, http.StatusInternalServerError, err.Error())
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+benchAdminToken)
		status, body, err := do(client, req)
		if err != nil || status != http.StatusOK {
			refuse(w, http.StatusBadGateway, fmt.Sprintf("introspection: %d %v", status, err))
			return
		}
		var ir struct {
			Active bool   `json:"active"`
			Reason string `json:"herald_reason"`
		}
		if err := json.Unmarshal(body, &ir); err != nil {
			refuse(w, http.StatusBadGateway, "introspection: "+err.Error())
			return
		}
		if !ir.Active {
			refuse(w, http.StatusUnauthorized, ir.Reason)
			return
		}
		hello(w, r)
	})
}

// do sends req and returns the answer's status and body.
func do(client *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}

// revocationDelay revokes each session in turn with revoke and polls the
// application with its token, one request after another, until it
// refuses it. A sample runs from revoke returning to the arrival of the
// first refusal.
func revocationDelay(ctx context.Context, client *http.Client, ch checker,
	revoke func(context.Context, *issuer.SessionResponse) error, sessions []*issuer.SessionResponse, p *Progress) (delays, calls []time.Duration, err error) {
	ask := func(tok string) (bool, error) {
		req, err := ch.request(ctx, tok)
		if err != nil {
			return false, err
		}
		status, body, err := do(client, req)
		if err != nil {
			return false, err
		}
		return ch.refused(status, body)
	}
	for i, s := range sessions {
		if refused, err := ask(s.AccessToken); err != nil || refused {
			return nil, nil, fmt.Errorf("token %d before its revocation: refused %v, %v", i, refused, err)
		}
		t0 := time.Now()
		if err := revoke(ctx, s); err != nil {
			return nil, nil, fmt.Errorf("revoke %d: %w", i, err)
		}
		returned := time.Now()
		deadline := returned.Add(DefaultSettleTimeout)
		for {
			refused, err := ask(s.AccessToken)
			if err != nil {
				return nil, nil, fmt.Errorf("token %d after its revocation: %w", i, err)
			}
			if refused {
				break
			}
			if time.Now().After(deadline) {
				return nil, nil, fmt.Errorf("token %d still accepted %s after its revocation", i, DefaultSettleTimeout)
			}
		}
		delays = append(delays, time.Since(returned))
		calls = append(calls, returned.Sub(t0))
		p.Step("revocations", i+1, len(sessions))
	}
	return delays, calls, nil
}

// fillRedis writes n unrelated token revocations to Redis, as the Redis
// design's denylist would hold them.
func fillRedis(ctx context.Context, pool *redisPool, n int, prefix string) error {
	const chunk = 1000
	args := make([]string, 0, 1+2*chunk)
	for i := 0; i < n; {
		args = append(args[:0], "MSET")
		for ; i < n && len(args) < 1+2*chunk; i++ {
			args = append(args, denyKey(bus.KindToken, fmt.Sprintf("%s-%d", prefix, i)), "1")
		}
		if _, err := pool.do(ctx, args...); err != nil {
			return fmt.Errorf("fill redis: %w", err)
		}
	}
	return nil
}

// keyWatch follows HERALD_KEYS into a key set, as a verifier does, for
// the Redis design's own signature checks.
type keyWatch struct {
	set    *verifier.KeySet
	conn   *bus.Conn
	cancel context.CancelFunc
	done   chan struct{}
}

func startKeyWatch(ctx context.Context, c *core) (*keyWatch, error) {
	conn, err := c.connect(ctx, "bench-keys")
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	k := &keyWatch{set: verifier.NewKeySet(nil, c.log), conn: conn, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		_ = k.set.Watch(runCtx, conn) // returns nil once runCtx ends
	}()
	if err := waitUntil(ctx, time.Minute, k.set.Loaded); err != nil {
		k.Close()
		return nil, fmt.Errorf("keys not loaded: %w", err)
	}
	return k, nil
}

// Close stops the watch and closes its connection.
func (k *keyWatch) Close() {
	k.cancel()
	<-k.done
	k.conn.Close()
}

// redisCheck is the shared-Redis-denylist design's check: Herald's
// verifier for the signature and claims (cache on, no local denylist),
// then one MGET to Redis of the keys Herald's denylist check reads.
type redisCheck struct {
	v    *verifier.Verifier
	pool *redisPool
}

func newRedisCheck(keys *verifier.KeySet, pool *redisPool) (*redisCheck, error) {
	v, err := verifier.New(verifier.Config{Issuer: benchIssuer, Audience: benchAudience}, keys, nil, nil)
	if err != nil {
		return nil, err
	}
	return &redisCheck{v: v, pool: pool}, nil
}

// ServeHTTP admits the request if its token verifies and Redis holds no
// revocation matching it.
func (rc *redisCheck) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, err := verifier.BearerToken(r)
	if err != nil {
		refuse(w, http.StatusUnauthorized, verifier.Reason(err))
		return
	}
	c, err := rc.v.Verify(r.Context(), tok)
	if err != nil {
		refuse(w, http.StatusUnauthorized, verifier.Reason(err))
		return
	}
	keys := checkKeys(c.ID, c.SessionID, tokenKid(tok), c.Subject, c.ClientID, c.Tenant)
	v, err := rc.pool.do(r.Context(), append([]string{"MGET"}, keys...)...)
	vals, ok := v.([]any)
	if err != nil || !ok || len(vals) != len(keys) {
		refuse(w, http.StatusServiceUnavailable, fmt.Sprintf("denylist: %v", err))
		return
	}
	// Token, session and key entries deny outright; subject, client,
	// tenant and all hold the revocation time (Unix ms) and deny tokens
	// issued at or before it, as Herald's kinds do.
	for i, val := range vals {
		s, ok := val.(string)
		if !ok {
			continue
		}
		if i < 3 {
			refuse(w, http.StatusUnauthorized, "revoked")
			return
		}
		if at, err := strconv.ParseInt(s, 10, 64); err == nil && c.IssuedAt.UnixMilli() <= at {
			refuse(w, http.StatusUnauthorized, "revoked")
			return
		}
	}
	hello(w, r)
}

// tokenKid returns the kid of a compact JWS's header, "" if it has none.
func tokenKid(tok string) string {
	seg, _, _ := strings.Cut(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return ""
	}
	var h struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &h)
	return h.Kid
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// denylistVersusRedis measures Herald's denylist check of one token (the
// seven lookups Verify makes, in memory, against cfg.Denylist unrelated
// entries) and the same check as one MGET round trip to Redis.
func denylistVersusRedis(ctx context.Context, cfg BaselineConfig, addr string) (check, redis Micro, err error) {
	db, err := store.Open(filepath.Join(cfg.Dir, "denylist-check"), store.Options{Logger: quietLogger()})
	if err != nil {
		return Micro{}, Micro{}, err
	}
	defer db.Close()
	if err := fillDenylist(db, cfg.Denylist, "unrelated"); err != nil {
		return Micro{}, Micro{}, err
	}
	const n = 1024
	keys := make([][]string, n)
	for i := range keys {
		id := fmt.Sprintf("%032x", i)
		keys[i] = checkKeys(id, id, "kid-"+id[:8], "bench-"+id[:8], "bench", "acme")
	}
	conn, err := dialRedis(ctx, addr)
	if err != nil {
		return Micro{}, Micro{}, err
	}
	defer conn.Close()
	var revoked int
	ms, err := compareMicros(ctx, cfg.MicroDuration,
		func(i int) error {
			k := keys[i%n]
			for _, key := range k[:3] {
				if db.Contains(key) {
					revoked++
				}
			}
			for _, key := range k[3:] {
				if _, ok := db.Lookup(key); ok {
					revoked++
				}
			}
			return nil
		},
		func(i int) error {
			_, err := conn.do(append([]string{"MGET"}, keys[i%n]...)...)
			return err
		})
	if err != nil {
		return Micro{}, Micro{}, fmt.Errorf("denylist check against redis round trip: %w", err)
	}
	if revoked != 0 {
		return Micro{}, Micro{}, fmt.Errorf("denylist check: %d lookups found entries, want none", revoked)
	}
	check, redis = ms[0], ms[1]
	return check, redis, nil
}
