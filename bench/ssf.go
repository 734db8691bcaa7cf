package bench

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/ssf"
)

// Defaults for SSFConfig.
const (
	DefaultSSFVerifiers   = 3
	DefaultSSFRevocations = 200
	DefaultSSFBacklog     = 2000
)

// SSFConfig configures SSF.
type SSFConfig struct {
	// Verifiers is how many in-process verifier sidecars must refuse each
	// revoked session. Default DefaultSSFVerifiers.
	Verifiers int
	// Revocations is how many session revocations are timed one at a time.
	// Default DefaultSSFRevocations.
	Revocations int
	// Backlog is how many SETs are held while the receiver is down, then
	// delivered once it is back. Default DefaultSSFBacklog.
	Backlog int
	// Dir holds all data. Required.
	Dir string
	// SettleTimeout bounds one revocation. Default DefaultSettleTimeout.
	SettleTimeout time.Duration
	// MicroDuration is how long signing a SET is measured. Default
	// DefaultMicroDuration.
	MicroDuration time.Duration
	// Progress, if not nil, receives progress lines.
	Progress *Progress
}

// SSFResult holds both measurements of an SSF run.
type SSFResult struct {
	Verifiers   int    `json:"verifiers"`
	Revocations int    `json:"revocations"`
	Detection   string `json:"detection"`
	// Refused is the time from a session revocation's POST to every
	// verifier refusing the session's access token.
	Refused Summary `json:"every_verifier_refuses"`
	// SET is the time from the same POST to the session-revoked SET for
	// that session arriving at the push receiver.
	SET Summary `json:"set_arrives"`
	// RevokeCall is how long the POST took.
	RevokeCall Summary `json:"revoke_call"`
	// P50Ratio and P99Ratio are SET's over Refused's.
	P50Ratio float64 `json:"p50_ratio"`
	P99Ratio float64 `json:"p99_ratio"`

	// Backlog is how many SETs were held during the receiver's outage.
	Backlog int `json:"backlog"`
	// OutageSeconds is how long the receiver answered 503.
	OutageSeconds float64 `json:"outage_seconds"`
	// RefusedPushes is how many pushes the receiver answered 503.
	RefusedPushes int `json:"refused_pushes"`
	// BackoffWait is the time from the receiver answering 202 again to
	// the first SET it accepted: the transmitter's retry backoff.
	BackoffWait time.Duration `json:"backoff_wait_ns"`
	// CatchUpSeconds is the time from the first SET accepted after the
	// outage to the last.
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	// CatchUpRate is SETs accepted per second over CatchUpSeconds.
	CatchUpRate float64 `json:"catch_up_per_second"`
	// Duplicates is how many SETs of the backlog arrived more than once.
	Duplicates int `json:"duplicates"`
	// SETBytes is the size of the SET the floor posts, one of the backlog's.
	SETBytes int `json:"set_bytes"`
	// FloorRate is SETs per second accepted from sequential POSTs of that
	// one pre-signed SET to the same receiver, as many as the backlog: the
	// ceiling of a strictly ordered push, one SET at a time.
	FloorRate float64 `json:"floor_per_second"`
	// FloorSeconds is how long the floor's POSTs took, first to last accepted.
	FloorSeconds float64 `json:"floor_seconds"`
	// CatchUpRatio is CatchUpRate over FloorRate.
	CatchUpRatio float64 `json:"catch_up_ratio"`
	// Sign is the cost of signing one such SET (RS256) with the
	// transmitter's key, in this process: a push signs every SET it sends.
	Sign Micro `json:"sign"`
	// SignedFloorRate is the floor with a signature per SET added:
	// 1 / (1/FloorRate + Sign).
	SignedFloorRate float64 `json:"signed_floor_per_second"`
}

// SSF measures Herald as a Shared Signals transmitter. It runs an issuer
// (whose SSF transmitter is on), cfg.Verifiers sidecars and a push
// receiver (RFC 8935) in this process; a client of the issuer with scope
// ssf.manage creates a push stream to the receiver over the SSF API.
//
// First, one at a time, it revokes a session with POST /v1/revocations,
// each session's token verified by every verifier first (as a session in
// use is), and times from the POST both every verifier refusing the
// token and the session-revoked SET for that session arriving at the
// receiver, which checks each SET's signature on the transmitter's
// jwks_uri.
//
// Then the receiver answers 503 while cfg.Backlog sessions are revoked,
// and 202 again: the transmitter, which retries the stream's head with
// backoff and keeps SETs in order, delivers the backlog. The catch-up
// rate runs from the first SET accepted after the outage to the last;
// the wait for the first (the backoff) is reported apart. The floor,
// measured next, is as many sequential POSTs of one of those SETs to the
// same receiver from a plain HTTP client.
func SSF(ctx context.Context, cfg SSFConfig) (*SSFResult, error) {
	if cfg.Verifiers <= 0 {
		cfg.Verifiers = DefaultSSFVerifiers
	}
	if cfg.Revocations <= 0 {
		cfg.Revocations = DefaultSSFRevocations
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = DefaultSSFBacklog
	}
	if cfg.SettleTimeout <= 0 {
		cfg.SettleTimeout = DefaultSettleTimeout
	}
	if cfg.MicroDuration <= 0 {
		cfg.MicroDuration = DefaultMicroDuration
	}
	if cfg.Dir == "" {
		return nil, errors.New("ssf: dir is required")
	}
	p := cfg.Progress
	c, err := startCore(ctx, cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	defer c.Close()
	fleet, err := startInProcFleet(ctx, c, PropagationConfig{Mode: ModeInProc, Verifiers: cfg.Verifiers, Dir: cfg.Dir, Progress: p})
	defer fleet.Close()
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	client := &http.Client{Timeout: cfg.SettleTimeout}
	issuerURL := c.svc.URL()

	p.Phasef("ssf: creating a push stream to a receiver in this process")
	rx, err := startSETReceiver(cfg.Revocations + 2*cfg.Backlog + 64)
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	defer rx.Close()
	receiver, err := createPushStream(ctx, client, issuerURL, rx)
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	keys, err := transmitterKeys(ctx, client, issuerURL)
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	rx.setKeys(keys, receiver)

	p.Phasef("ssf: creating %d Herald sessions", cfg.Revocations)
	sessions, err := c.sessions(ctx, cfg.Revocations, "bench-ssf", p)
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	_, seq, err := c.conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}

	p.Phasef("ssf: %d session revocations, each to %d verifiers and as a SET to the receiver", cfg.Revocations, cfg.Verifiers)
	var refused, sets, calls []time.Duration
	for i, s := range sessions {
		for v, sc := range fleet.sidecars {
			if _, err := sc.Verifier().Verify(ctx, s.AccessToken); err != nil {
				return nil, fmt.Errorf("ssf: revocation %d: verifier %d refused the token before its revocation: %w", i, v, err)
			}
		}
		seq++
		wait, err := fleet.Arm(ctx, s.AccessToken, seq)
		if err != nil {
			return nil, fmt.Errorf("ssf: revocation %d: %w", i, err)
		}
		start := time.Now()
		if err := postRevocation(ctx, client, issuerURL, s.SessionID); err != nil {
			wait(0)
			return nil, fmt.Errorf("ssf: revocation %d: %w", i, err)
		}
		call := time.Since(start)
		times, err := wait(cfg.SettleTimeout)
		if err != nil {
			return nil, fmt.Errorf("ssf: revocation %d: %w", i, err)
		}
		var last time.Time
		for _, t := range times {
			if t.After(last) {
				last = t
			}
		}
		arrived, err := rx.waitSession(ctx, s.SessionID, cfg.SettleTimeout)
		if err != nil {
			return nil, fmt.Errorf("ssf: revocation %d: %w", i, err)
		}
		refused, sets, calls = append(refused, max(0, last.Sub(start))), append(sets, max(0, arrived.Sub(start))), append(calls, call)
		p.Step("revocations", i+1, cfg.Revocations)
	}
	res := &SSFResult{Verifiers: cfg.Verifiers, Revocations: cfg.Revocations, Detection: fleet.Detection(),
		Refused: Summarize(refused), SET: Summarize(sets), RevokeCall: Summarize(calls), Backlog: cfg.Backlog}
	res.P50Ratio = ratio(float64(res.SET.P50), float64(res.Refused.P50))
	res.P99Ratio = ratio(float64(res.SET.P99), float64(res.Refused.P99))
	if err := fleet.Close(); err != nil {
		return nil, fmt.Errorf("ssf: stop verifiers: %w", err)
	}

	if err := catchUp(ctx, cfg, client, issuerURL, rx, res); err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	p.Phasef("ssf: signing a SET with the transmitter key, %s", cfg.MicroDuration)
	if res.Sign, err = measureSign(ctx, cfg, receiver); err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	if res.FloorRate > 0 {
		res.SignedFloorRate = ratio(1, 1/res.FloorRate+res.Sign.NsPerOp/1e9)
	}
	return res, nil
}

// measureSign measures signing a backlog SET with the issuer's
// transmitter key, as the transmitter does for each SET it pushes.
func measureSign(ctx context.Context, cfg SSFConfig, receiver string) (Micro, error) {
	key, _, err := ssf.LoadOrCreateKey(filepath.Join(cfg.Dir, "issuer", "ssf-key.pem"))
	if err != nil {
		return Micro{}, fmt.Errorf("transmitter key: %w", err)
	}
	signer, err := ssf.NewSigner(key)
	if err != nil {
		return Micro{}, err
	}
	now := time.Now()
	e := &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "admin",
		Revocation: &bus.Revocation{Kind: bus.KindSession, Value: backlogSID(0), Reason: "bench", At: now, Until: now.Add(time.Hour)}}
	items := ssf.Map(e, benchIssuer)
	if len(items) != 1 {
		return Micro{}, fmt.Errorf("a session revocation maps to %d SETs", len(items))
	}
	it := items[0]
	return measureMicro(ctx, cfg.MicroDuration, func(i int) error {
		_, err := signer.Sign(&ssf.Claims{Issuer: benchIssuer, JTI: ssf.JTI("bench", e.ID, i), IssuedAt: now.Unix(),
			Audience: []string{receiver}, TXN: e.ID, Subject: it.Subject, Type: it.Type, Event: it.Event})
		return err
	})
}

// backlogSID is the session id of the backlog's i-th revocation: all the
// same length, so that every backlog SET has the same size.
func backlogSID(i int) string { return fmt.Sprintf("bench-ssf-backlog-%07d", i) }

// catchUp takes the receiver down, revokes cfg.Backlog sessions, brings
// it back and times the delivery of the backlog, then the floor.
func catchUp(ctx context.Context, cfg SSFConfig, client *http.Client, issuerURL string, rx *setReceiver, res *SSFResult) error {
	p := cfg.Progress
	p.Phasef("ssf: the receiver answers 503; %d session revocations", cfg.Backlog)
	outage := time.Now()
	rx.setDown(true)
	sids := make([]string, cfg.Backlog)
	for i := range sids {
		sids[i] = backlogSID(i)
	}
	if err := revokeAll(ctx, client, issuerURL, sids, p); err != nil {
		return err
	}
	// The transmitter must have met the outage: its first push refused.
	if err := rx.waitFor(ctx, cfg.SettleTimeout, func() bool { return rx.down503 > 0 }); err != nil {
		return fmt.Errorf("no push during the outage: %w", err)
	}
	first := rx.startWindow()
	recovered := time.Now()
	rx.setDown(false)
	res.OutageSeconds = recovered.Sub(outage).Seconds()

	p.Phasef("ssf: the receiver answers 202 again; waiting for %d SETs", cfg.Backlog)
	stop := p.Ticker(func() string {
		rx.mu.Lock()
		defer rx.mu.Unlock()
		return fmt.Sprintf("%d of %d SETs accepted", rx.win.n, cfg.Backlog)
	})
	timeout := 2*time.Minute + time.Duration(cfg.Backlog)*20*time.Millisecond
	err := rx.waitFor(ctx, timeout, func() bool { return len(rx.first) >= first+cfg.Backlog })
	stop()
	if err != nil {
		return fmt.Errorf("backlog not delivered: %w", err)
	}
	for _, sid := range sids {
		if _, ok := rx.arrival(sid); !ok {
			return fmt.Errorf("the SET of backlog session %s never arrived", sid)
		}
	}
	rx.mu.Lock()
	w, sample := rx.win, rx.sample
	res.RefusedPushes = rx.down503
	rx.mu.Unlock()
	res.BackoffWait = max(0, w.first.Sub(recovered))
	res.CatchUpSeconds = w.last.Sub(w.first).Seconds()
	res.CatchUpRate = ratio(float64(w.n-1), res.CatchUpSeconds)
	res.Duplicates = w.n - cfg.Backlog

	p.Phasef("ssf: floor: %d sequential POSTs of one SET of %d bytes to the same receiver", cfg.Backlog, len(sample))
	res.SETBytes = len(sample)
	rx.startWindow()
	push := &http.Client{Timeout: 10 * time.Second}
	for i := range cfg.Backlog {
		if err := rx.post(ctx, push, sample); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		p.Step("floor", i+1, cfg.Backlog)
	}
	rx.mu.Lock()
	w = rx.win
	rx.mu.Unlock()
	if w.n != cfg.Backlog {
		return fmt.Errorf("floor: the receiver accepted %d of %d POSTs", w.n, cfg.Backlog)
	}
	res.FloorSeconds = w.last.Sub(w.first).Seconds()
	res.FloorRate = ratio(float64(w.n-1), res.FloorSeconds)
	res.CatchUpRatio = ratio(res.CatchUpRate, res.FloorRate)
	return nil
}

// revokeAll revokes the sessions sids, one POST each, from a few
// concurrent callers.
func revokeAll(ctx context.Context, client *http.Client, issuerURL string, sids []string, p *Progress) error {
	return forEach(len(sids), 8, func(i int) error {
		if err := postRevocation(ctx, client, issuerURL, sids[i]); err != nil {
			return fmt.Errorf("revoke %s: %w", sids[i], err)
		}
		p.Step("backlog revocations", i+1, len(sids))
		return nil
	})
}

// createPushStream registers a client with scope ssf.manage, takes an
// access token for it (client credentials), waits for the transmitter
// and creates a push stream of session-revoked events to rx. It returns
// the client id: the stream's aud.
func createPushStream(ctx context.Context, client *http.Client, issuerURL string, rx *setReceiver) (string, error) {
	var cl issuer.Client
	if err := callJSON(ctx, client, http.MethodPost, issuerURL+"/v1/clients", "Bearer "+benchAdminToken,
		issuer.ClientRequest{Name: "bench-ssf-receiver", Scope: ssf.ScopeManage}, http.StatusCreated, &cl); err != nil {
		return "", fmt.Errorf("register the receiver's client: %w", err)
	}
	form := url.Values{"grant_type": {"client_credentials"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, issuerURL+"/oauth2/token", strings.NewReader(form))
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(cl.ID, cl.Secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := doJSON(client, req, http.StatusOK, &tok); err != nil {
		return "", fmt.Errorf("client credentials: %w", err)
	}
	bearer := "Bearer " + tok.AccessToken
	// The transmitter answers 503 until it has set up the bus: nothing
	// to wait on but its answer.
	var lastErr error
	err = waitUntil(ctx, time.Minute, func() bool {
		lastErr = callJSON(ctx, client, http.MethodGet, issuerURL+ssf.StreamPath, bearer, nil, http.StatusOK, nil)
		return lastErr == nil
	})
	if err != nil {
		return "", fmt.Errorf("transmitter not ready: %w (%v)", err, lastErr)
	}
	body := map[string]any{
		"delivery": map[string]string{"method": ssf.MethodPush, "endpoint_url": rx.url,
			"authorization_header": rx.auth},
		"events_requested": []string{ssf.EventSessionRevoked},
		"description":      "herald bench ssf",
	}
	var st ssf.Stream
	if err := callJSON(ctx, client, http.MethodPost, issuerURL+ssf.StreamPath, bearer, body, http.StatusCreated, &st); err != nil {
		return "", fmt.Errorf("create the push stream: %w", err)
	}
	if st.ID == "" || st.Delivery.Method != ssf.MethodPush {
		return "", fmt.Errorf("create the push stream: answered %+v", st)
	}
	return cl.ID, nil
}

// transmitterKeys reads the transmitter's key set (its jwks_uri).
func transmitterKeys(ctx context.Context, client *http.Client, issuerURL string) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []bus.JWK `json:"keys"`
	}
	if err := callJSON(ctx, client, http.MethodGet, issuerURL+ssf.JWKSPath, "", nil, http.StatusOK, &set); err != nil {
		return nil, fmt.Errorf("transmitter keys: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey)
	for _, k := range set.Keys {
		pub, err := k.ExternalPublicKey()
		if err != nil {
			return nil, fmt.Errorf("transmitter keys: %w", err)
		}
		if rk, ok := pub.(*rsa.PublicKey); ok {
			keys[k.Kid] = rk
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("transmitter keys: no RSA key")
	}
	return keys, nil
}

// callJSON sends body (if not nil) as JSON with the Authorization header
// auth (if not empty), expects status want, and decodes the answer into
// out (if not nil).
func callJSON(ctx context.Context, client *http.Client, method, endpoint, auth string, body any, want int, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return doJSON(client, req, want, out)
}

// doJSON sends req, expects status want and decodes the answer into out
// (if not nil).
func doJSON(client *http.Client, req *http.Request, want int, out any) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s %.300s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
		}
	}
	return nil
}

// setReceiver is an SSF push receiver (RFC 8935) in the bench's process.
// It checks each SET (its bearer, its signature on the transmitter's key,
// iss, aud, the session-revoked event), answers 202 (503 while down), and
// records when the SET of each session first arrived.
type setReceiver struct {
	srv  *http.Server
	url  string
	auth string // the Authorization header the stream sends
	max  int    // bound on recorded sessions

	mu      sync.Mutex
	keys    map[string]*rsa.PublicKey
	aud     string
	down    bool
	down503 int                  // pushes answered 503
	first   map[string]time.Time // session id -> first arrival
	win     window               // accepted SETs since startWindow
	sample  []byte               // the last backlog SET accepted
	bad     error                // the first SET that failed the checks
	changed chan struct{}        // closed and replaced at every push
}

// window counts the SETs accepted since it began.
type window struct {
	n           int
	first, last time.Time
}

// startSETReceiver starts a receiver on a loopback port that records at
// most maxSessions sessions.
func startSETReceiver(maxSessions int) (*setReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	rx := &setReceiver{url: "http://" + ln.Addr().String() + "/events", auth: "Bearer " + bus.NewID(),
		max: maxSessions, first: make(map[string]time.Time), changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", rx.serve)
	rx.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go rx.srv.Serve(ln)
	return rx, nil
}

// Close stops the receiver.
func (rx *setReceiver) Close() error { return rx.srv.Close() }

// setKeys sets the keys SETs must be signed with and the aud they carry.
func (rx *setReceiver) setKeys(keys map[string]*rsa.PublicKey, aud string) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	rx.keys, rx.aud = keys, aud
}

// setDown makes the receiver answer 503 (down) or 202.
func (rx *setReceiver) setDown(down bool) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	rx.down = down
}

// startWindow starts counting accepted SETs anew; it returns how many
// sessions' SETs have arrived so far.
func (rx *setReceiver) startWindow() int {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	rx.win = window{}
	return len(rx.first)
}

// notify wakes whoever waits on a change; rx.mu must be held.
func (rx *setReceiver) notify() {
	close(rx.changed)
	rx.changed = make(chan struct{})
}

func (rx *setReceiver) serve(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	if r.Header.Get("Authorization") != rx.auth {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rx.mu.Lock()
	defer rx.mu.Unlock()
	defer rx.notify()
	if rx.down {
		rx.down503++
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	sid, err := rx.check(r, body)
	if err != nil {
		if rx.bad == nil {
			rx.bad = err
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"err": "invalid_request", "description": err.Error()})
		return
	}
	if rx.win.n == 0 {
		rx.win.first = now
	}
	rx.win.n++
	rx.win.last = now
	if sid == "" {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if _, ok := rx.first[sid]; !ok && len(rx.first) < rx.max {
		rx.first[sid] = now
	}
	if strings.HasPrefix(sid, "bench-ssf-backlog-") {
		rx.sample = body
	}
	w.WriteHeader(http.StatusAccepted)
}

// check verifies a pushed SET and returns the session id of its
// session-revoked event, or "" for another event (verification,
// stream-updated). rx.mu is held.
func (rx *setReceiver) check(r *http.Request, body []byte) (string, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/secevent+jwt" {
		return "", fmt.Errorf("content type %q", ct)
	}
	if rx.keys == nil {
		return "", errors.New("a SET before the stream was created")
	}
	var claims struct {
		jwt.RegisteredClaims
		SubID struct {
			Format  string `json:"format"`
			Session struct {
				Format string `json:"format"`
				ID     string `json:"id"`
			} `json:"session"`
		} `json:"sub_id"`
		Events map[string]json.RawMessage `json:"events"`
	}
	tok, err := jwt.ParseWithClaims(string(body), &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if k := rx.keys[kid]; k != nil {
			return k, nil
		}
		return nil, fmt.Errorf("unknown kid %q", kid)
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(benchIssuer), jwt.WithAudience(rx.aud), jwt.WithIssuedAt())
	if err != nil {
		return "", err
	}
	if typ, _ := tok.Header["typ"].(string); typ != "secevent+jwt" {
		return "", fmt.Errorf("typ %q", typ)
	}
	if len(claims.Events) != 1 {
		return "", fmt.Errorf("%d events", len(claims.Events))
	}
	if _, ok := claims.Events[ssf.EventSessionRevoked]; !ok {
		return "", nil
	}
	if claims.SubID.Format != "complex" || claims.SubID.Session.Format != "opaque" || claims.SubID.Session.ID == "" {
		return "", fmt.Errorf("session-revoked for sub_id format %q, not a complex session", claims.SubID.Format)
	}
	return claims.SubID.Session.ID, nil
}

// waitFor waits until cond, called with rx.mu held, holds after a push,
// or timeout passes; a SET that failed the checks fails it.
func (rx *setReceiver) waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		rx.mu.Lock()
		ok, bad, changed := cond(), rx.bad, rx.changed
		rx.mu.Unlock()
		switch {
		case bad != nil:
			return fmt.Errorf("the receiver refused a SET: %w", bad)
		case ok:
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return fmt.Errorf("not within %s", timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// arrival returns when the SET of session sid first arrived.
func (rx *setReceiver) arrival(sid string) (time.Time, bool) {
	rx.mu.Lock()
	defer rx.mu.Unlock()
	t, ok := rx.first[sid]
	return t, ok
}

// waitSession waits for the SET of session sid and returns when it arrived.
func (rx *setReceiver) waitSession(ctx context.Context, sid string, timeout time.Duration) (time.Time, error) {
	err := rx.waitFor(ctx, timeout, func() bool {
		_, ok := rx.first[sid]
		return ok
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("SET of session %s: %w", sid, err)
	}
	t, _ := rx.arrival(sid)
	return t, nil
}

// post pushes set to the receiver as the transmitter does (RFC 8935).
func (rx *setReceiver) post(ctx context.Context, client *http.Client, set []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rx.url, bytes.NewReader(set))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", rx.auth)
	return expectStatus(client, req, http.StatusAccepted)
}
