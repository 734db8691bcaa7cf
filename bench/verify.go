package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/verifier"
)

// Defaults for VerifyConfig.
const (
	DefaultMicroDuration = time.Second
	DefaultDenylist      = 10_000
	DefaultTokens        = 1000
)

// VerifyConfig configures Verify.
type VerifyConfig struct {
	// Dir holds all data. Required.
	Dir string
	// MicroDuration is how long each in-process case runs. Default DefaultMicroDuration.
	MicroDuration time.Duration
	// Denylist is how many unrelated revocations the denylist holds.
	// Default DefaultDenylist.
	Denylist int
	// Tokens is how many distinct tokens are presented in turn. Default DefaultTokens.
	Tokens int
	// Clients is how many concurrent keep-alive HTTP clients load
	// /v1/verify. Default DefaultClients.
	Clients int
	// LoadDuration is how long the HTTP load is measured. Default DefaultLoadDuration.
	LoadDuration time.Duration
	// Progress, if not nil, receives progress lines.
	Progress *Progress
}

func (c *VerifyConfig) setDefaults() {
	if c.MicroDuration <= 0 {
		c.MicroDuration = DefaultMicroDuration
	}
	if c.Denylist < 0 {
		c.Denylist = 0
	} else if c.Denylist == 0 {
		c.Denylist = DefaultDenylist
	}
	if c.Tokens <= 0 {
		c.Tokens = DefaultTokens
	}
	if c.Clients <= 0 {
		c.Clients = DefaultClients
	}
	if c.LoadDuration <= 0 {
		c.LoadDuration = DefaultLoadDuration
	}
}

// VerifyAlgorithm is the in-process cost of checking one token signed
// with one algorithm.
type VerifyAlgorithm struct {
	Algorithm string `json:"algorithm"`
	// Raw is golang-jwt alone: parse and verify the signature into map
	// claims, with the same key and tokens. The baseline.
	Raw Micro `json:"raw_golang_jwt"`
	// Uncached is Herald's Verify with its cache off: every check,
	// signature included, and the denylist.
	Uncached Micro `json:"uncached"`
	// Cached is Herald's Verify of a token seen before: the cache hit,
	// the key still trusted, and the denylist.
	Cached Micro `json:"cached"`
	// CachedSpeedup is Raw over Cached, per call: the target (at least 30).
	CachedSpeedup float64 `json:"cached_speedup"`
	// UncachedRatio is Uncached over Raw: what Herald's extra checks cost
	// when the signature must be verified.
	UncachedRatio float64 `json:"uncached_ratio"`
}

// VerifyResult is the outcome of Verify.
type VerifyResult struct {
	Denylist int `json:"denylist_entries"`
	Tokens   int `json:"tokens"`
	// TimerOverhead is an empty call timed individually: what each
	// latency sample of a Micro includes beyond the call.
	TimerOverhead Micro             `json:"timer_overhead"`
	Algorithms    []VerifyAlgorithm `json:"algorithms"`
	// HTTP is GET /v1/verify on an in-process sidecar, from Clients
	// keep-alive clients in this process, tokens presented in turn (cache hits).
	HTTP    Rate `json:"http"`
	Clients int  `json:"clients"`
}

// Verify measures token verification in process, cached and uncached, per
// algorithm, against golang-jwt's own parse and verify; then GET
// /v1/verify over HTTP on a sidecar in this process.
func Verify(ctx context.Context, cfg VerifyConfig) (*VerifyResult, error) {
	cfg.setDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("verify: dir is required")
	}
	p := cfg.Progress
	res := &VerifyResult{Denylist: cfg.Denylist, Tokens: cfg.Tokens, Clients: cfg.Clients}
	var err error
	if res.TimerOverhead, err = timerOverhead(ctx); err != nil {
		return nil, err
	}
	for _, alg := range []string{bus.AlgEdDSA, bus.AlgES256} {
		a, err := verifyAlgorithm(ctx, cfg, alg)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", alg, err)
		}
		res.Algorithms = append(res.Algorithms, *a)
	}

	p.Phasef("verify: GET /v1/verify over HTTP, %d clients for %s", cfg.Clients, cfg.LoadDuration)
	c, err := startCore(ctx, cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer c.Close()
	if err := publishRevocations(ctx, c.conn, cfg.Denylist, "unrelated", p); err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	sc, err := c.startSidecar(ctx, "bench-verify", filepath.Join(cfg.Dir, "verifier"), true)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer sc.Close()
	sessions, err := c.sessions(ctx, cfg.Tokens, "bench-verify", p)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if err := waitUntil(ctx, time.Minute, sc.Ready); err != nil {
		return nil, fmt.Errorf("verify: sidecar not ready: %w", err)
	}
	client := newLoadClient(cfg.Clients)
	defer client.CloseIdleConnections()
	url := sc.URL() + "/v1/verify"
	rates, err := compareRates(ctx, 1, loadWarmup, cfg.LoadDuration, p, httpSpec(client, cfg.Clients, "GET /v1/verify",
		func(ctx context.Context, w, i int) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err == nil {
				req.Header.Set("Authorization", "Bearer "+sessions[(w*7919+i)%len(sessions)].AccessToken)
			}
			return req, err
		}, wantStatus(http.StatusOK)))
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	res.HTTP = rates[0]
	return res, nil
}

// verifyAlgorithm measures the three in-process cases for alg.
func verifyAlgorithm(ctx context.Context, cfg VerifyConfig, alg string) (*VerifyAlgorithm, error) {
	p := cfg.Progress
	p.Phasef("verify: %s in process (raw golang-jwt, uncached, cached), %s each", alg, cfg.MicroDuration)
	s, err := newSigner(alg)
	if err != nil {
		return nil, err
	}
	db, err := store.Open(filepath.Join(cfg.Dir, "denylist-"+alg), store.Options{Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := fillDenylist(db, cfg.Denylist, "unrelated"); err != nil {
		return nil, err
	}
	tokens := make([]string, cfg.Tokens)
	for i := range tokens {
		if tokens[i], err = s.sign(s.claims(fmt.Sprintf("bench-%d", i), fmt.Sprintf("jti-%d", i), fmt.Sprintf("sid-%d", i))); err != nil {
			return nil, err
		}
	}
	keys, err := s.keySet()
	if err != nil {
		return nil, err
	}
	a := &VerifyAlgorithm{Algorithm: alg}

	parser := jwt.NewParser(jwt.WithValidMethods([]string{alg}))
	keyFunc := func(*jwt.Token) (any, error) { return s.pub, nil }
	verifiers := make([]*verifier.Verifier, 2) // uncached, cached
	for i := range verifiers {
		vcfg := verifier.Config{Issuer: benchIssuer, Audience: benchAudience, CacheSize: -1}
		if i == 1 {
			vcfg.CacheSize = max(verifier.DefaultCacheSize, 2*len(tokens))
		}
		if verifiers[i], err = verifier.New(vcfg, keys, db, nil); err != nil {
			return nil, err
		}
	}
	herald := func(v *verifier.Verifier) func(int) error {
		return func(i int) error {
			_, err := v.Verify(ctx, tokens[i%len(tokens)])
			return err
		}
	}
	ms, err := compareMicros(ctx, cfg.MicroDuration,
		func(i int) error {
			_, err := parser.ParseWithClaims(tokens[i%len(tokens)], jwt.MapClaims{}, keyFunc)
			return err
		},
		herald(verifiers[0]), herald(verifiers[1]))
	if err != nil {
		return nil, err
	}
	a.Raw, a.Uncached, a.Cached = ms[0], ms[1], ms[2]
	a.CachedSpeedup = ratio(a.Raw.NsPerOp, a.Cached.NsPerOp)
	a.UncachedRatio = ratio(a.Uncached.NsPerOp, a.Raw.NsPerOp)
	return a, nil
}
