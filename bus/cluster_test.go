package bus_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// These tests run Herald's issuer and verifiers on real embedded NATS
// clusters and leaf nodes: the bus is what they exercise, so they live
// here, in the external test package (bus itself imports neither).

const (
	clusterAdminToken = "cluster-test-admin-token-32-bytes-long"
	clusterIssuerURL  = "https://issuer.cluster.test"
)

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// stopTimeout bounds how long a test waits for an issuer or verifier to
// stop, and requestTimeout one API request.
const (
	stopTimeout    = 30 * time.Second
	requestTimeout = 20 * time.Second
)

var apiClient = &http.Client{Timeout: requestTimeout}

// connectTo connects to urls (comma-separated) in the order given, as a
// sidecar preferring its own node does, and closes at cleanup.
func connectTo(t testing.TB, cfg bus.Config) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if cfg.Name == "" {
		cfg.Name = t.Name()
	}
	cfg.Logger = quietLog
	c, err := bus.Connect(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", cfg.URL, err)
	}
	t.Cleanup(c.Close)
	return c
}

// runUntil runs fn until the returned stop is called (or the test ends),
// then calls closeFn.
func runUntil(t testing.TB, fn func(context.Context) error, closeFn func()) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(stopTimeout):
				// Fail loudly, naming the culprit, rather than hang the suite.
				t.Errorf("run did not return %s after its context ended", stopTimeout)
				return
			}
			closeFn()
		})
	}
	t.Cleanup(stop)
	return stop
}

// startIssuer opens and runs an issuer on conn storing in dir.
func startIssuer(t testing.TB, conn *bus.Conn, dir string, replicas int) (*issuer.Service, func()) {
	t.Helper()
	var (
		svc *issuer.Service
		err error
	)
	// Creating replicated streams on a cluster that has just formed can
	// outlast one JetStream API timeout on a loaded machine: retry.
	for attempt := 0; attempt < 3; attempt++ {
		svc, err = issuer.Open(t.Context(), issuer.Config{
			EventKeyFile: bustest.EventKeyFile(t),
			DataDir:      dir, HTTPAddr: "127.0.0.1:0", AdminToken: clusterAdminToken, Logger: quietLog,
			ClientSecretCost: 4, RateLimit: -1, ClientRateLimit: -1, Replicas: replicas,
			IssuerURL: clusterIssuerURL, // the same on every replica and across restarts
		}, conn)
		if !errors.Is(err, context.DeadlineExceeded) {
			break
		}
	}
	if err != nil {
		t.Fatalf("open issuer: %v", err)
	}
	return svc, runUntil(t, svc.Run, func() { svc.Close() })
}

// startVerifier opens and runs a sidecar without HTTP on conn.
func startVerifier(t testing.TB, conn *bus.Conn, dir string) (*sidecar.Sidecar, func()) {
	t.Helper()
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: clusterIssuerURL, Audience: issuer.DefaultAudience},
		DataDir:  dir, NoListen: true, Logger: quietLog,
	}, conn)
	if err != nil {
		t.Fatalf("open sidecar: %v", err)
	}
	return sc, runUntil(t, sc.Run, func() { sc.Close() })
}

func waitVerifiersReady(t testing.TB, scs ...*sidecar.Sidecar) {
	t.Helper()
	for _, sc := range scs {
		bustest.WaitFor(t, 20*time.Second, func() error {
			if !sc.Ready() {
				return fmt.Errorf("verifier %s not ready: %+v", sc.ID(), sc.Status())
			}
			return nil
		})
	}
}

// apiCall sends a JSON request with the admin token and decodes a 200
// answer into out. It returns the status and the body.
func apiCall(ctx context.Context, method, u string, in, out any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode == http.StatusOK && out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, data, err
		}
	}
	return resp.StatusCode, data, nil
}

func newSession(t testing.TB, svc *issuer.Service, sub string) issuer.SessionResponse {
	t.Helper()
	var s issuer.SessionResponse
	code, body, err := apiCall(t.Context(), "POST", svc.URL()+"/v1/sessions", issuer.SessionRequest{Subject: sub}, &s)
	if err != nil || code != http.StatusOK {
		t.Fatalf("create session on %s: %d %s %v", svc.URL(), code, body, err)
	}
	return s
}

func revokeSession(t testing.TB, svc *issuer.Service, sid string) issuer.RevocationResult {
	t.Helper()
	var r issuer.RevocationResult
	code, body, err := apiCall(t.Context(), "POST", svc.URL()+"/v1/revocations",
		issuer.RevocationRequest{Kind: "session", Value: sid, Reason: "test"}, &r)
	if err != nil || code != http.StatusOK {
		t.Fatalf("revoke session on %s: %d %s %v", svc.URL(), code, body, err)
	}
	return r
}

// wantRevoked waits until sc has applied seq, then checks that it refuses
// token as revoked. A verifier that is catching up after a failover
// refuses every token as not ready (fails closed); it is waited for.
func wantRevoked(ctx context.Context, sc *sidecar.Sidecar, seq uint64, token string) error {
	if err := sc.WaitApplied(ctx, seq); err != nil {
		return fmt.Errorf("verifier %s: seq %d not applied (at %d): %w", sc.ID(), seq, sc.Status().Applied, err)
	}
	for {
		_, err := sc.Verifier().Verify(ctx, token)
		switch {
		case errors.Is(err, verifier.ErrRevoked):
			return nil
		case !errors.Is(err, verifier.ErrNotReady):
			return fmt.Errorf("verifier %s: token of revocation %d: got %v, want revoked", sc.ID(), seq, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("verifier %s: token of revocation %d: still not ready: %+v", sc.ID(), seq, sc.Status())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func wantValid(t testing.TB, sc *sidecar.Sidecar, token string) {
	t.Helper()
	if _, err := sc.Verifier().Verify(t.Context(), token); err != nil {
		t.Fatalf("verifier %s refused a valid token: %v", sc.ID(), err)
	}
}

// serverStream returns the state of stream as node s holds it: its own
// replica, not the leader's answer.
func serverStream(s *natsserver.Server, name string) (server.StreamState, bool) {
	jsz, err := s.NATS().Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return server.StreamState{}, false
	}
	for _, acc := range jsz.AccountDetails {
		for _, sd := range acc.Streams {
			if sd.Name == name {
				return sd.State, true
			}
		}
	}
	return server.StreamState{}, false
}

// rotate returns urls (comma-separated) starting at the i-th.
func rotate(urls string, i int) string {
	u := strings.Split(urls, ",")
	i %= len(u)
	return strings.Join(append(u[i:], u[:i]...), ",")
}

// TestCluster_ReplicatedStreams: an issuer with Replicas 3 creates every
// stream and bucket with three replicas on a three-node cluster.
func TestCluster_ReplicatedStreams(t *testing.T) {
	c := bustest.RunCluster(t, 3)
	conn := c.Connect(t)
	startIssuer(t, conn, t.TempDir(), 3)
	js := conn.JetStream()
	for _, name := range []string{bus.StreamRevocations, bus.StreamAudit, "KV_" + bus.BucketKeys, "KV_" + bus.BucketVerifiers, "KV_" + bus.BucketSessions} {
		bustest.WaitFor(t, 20*time.Second, func() error {
			s, err := js.Stream(t.Context(), name)
			if err != nil {
				return err
			}
			info := s.CachedInfo()
			if got := info.Config.Replicas; got != 3 {
				t.Fatalf("stream %s: %d replicas, want 3", name, got)
			}
			if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
				return fmt.Errorf("stream %s: cluster %+v: want a leader and 2 replicas", name, info.Cluster)
			}
			for _, r := range info.Cluster.Replicas {
				if !r.Current {
					return fmt.Errorf("stream %s: replica %s not current", name, r.Name)
				}
			}
			return nil
		})
	}
}

// acked is a revocation the issuer acknowledged, with the token it must
// make every verifier refuse.
type acked struct {
	seq   uint64
	token string
	at    time.Time // when the issuer answered
}

// TestCluster_NodeLoss issues and revokes continuously on a three-node
// cluster with replicated streams, kills the node leading the revocation
// stream mid-way, and checks that every acknowledged revocation reaches
// every verifier, that verifiers fail over to the surviving nodes without
// a restart, and that the killed node rejoins and catches up.
func TestCluster_NodeLoss(t *testing.T) {
	c := bustest.RunCluster(t, 3)
	svc, _ := startIssuer(t, c.Connect(t), t.TempDir(), 3)

	// Verifier i prefers node i, so whichever node leads, one verifier
	// loses its server with it.
	var scs []*sidecar.Sidecar
	var conns []*bus.Conn
	for i := range c.Len() {
		conn := connectTo(t, bus.Config{URL: rotate(c.URL(), i), NoRandomize: true, Name: fmt.Sprintf("verifier-%d", i)})
		sc, _ := startVerifier(t, conn, t.TempDir())
		scs, conns = append(scs, sc), append(conns, conn)
	}
	waitVerifiersReady(t, scs...)

	// Load: sessions and their revocations, one after the other, as fast
	// as the issuer answers.
	var (
		mu       sync.Mutex
		acks     []acked
		recorded []string // revocations the issuer committed but could not get acknowledged
		failures atomic.Int64
	)
	ctx, cancel := context.WithCancel(t.Context())
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ctx.Err() == nil; i++ {
			var s issuer.SessionResponse
			code, _, err := apiCall(ctx, "POST", svc.URL()+"/v1/sessions", issuer.SessionRequest{Subject: fmt.Sprintf("user-%d", i)}, &s)
			if err != nil || code != http.StatusOK {
				failures.Add(1)
				continue
			}
			var r issuer.RevocationResult
			code, body, err := apiCall(ctx, "POST", svc.URL()+"/v1/revocations",
				issuer.RevocationRequest{Kind: "session", Value: s.SessionID, Reason: "node loss test"}, &r)
			switch {
			case err == nil && code == http.StatusOK:
				mu.Lock()
				acks = append(acks, acked{seq: r.Seq, token: s.AccessToken, at: time.Now()})
				mu.Unlock()
			case err == nil && code == http.StatusServiceUnavailable && bytes.Contains(body, []byte("recorded")):
				mu.Lock()
				recorded = append(recorded, s.AccessToken)
				mu.Unlock()
			default:
				failures.Add(1)
			}
		}
	}()
	ackCount := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acks)
	}
	waitAcks := func(n int) {
		t.Helper()
		bustest.WaitFor(t, 60*time.Second, func() error {
			if got := ackCount(); got < n {
				return fmt.Errorf("%d revocations acknowledged, waiting for %d (%d failed requests)", got, n, failures.Load())
			}
			return nil
		})
	}

	const perPhase = 25
	waitAcks(perPhase)
	info, err := conns[0].JetStream().Stream(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	leader := info.CachedInfo().Cluster.Leader
	killed := c.Index(leader)
	if killed < 0 {
		t.Fatalf("stream leader %q is none of the nodes", leader)
	}
	killedURL := "nats://" + c.Server(killed).Addr().String()
	before := ackCount()
	killedAt := time.Now()
	c.Shutdown(killed)
	t.Logf("killed node %s, leader of %s, after %d acknowledged revocations", leader, bus.StreamRevocations, before)
	waitAcks(before + perPhase)
	cancel()
	<-loadDone

	// Every acknowledged revocation reaches every verifier.
	mu.Lock()
	all, pending := slices.Clone(acks), slices.Clone(recorded)
	mu.Unlock()
	// Writes stall while the cluster elects a new stream leader: the
	// longest pause between acknowledgements after the kill tells how long.
	var stalled time.Duration
	prev := killedAt
	for _, a := range all[before:] {
		if a.at.After(prev) {
			stalled = max(stalled, a.at.Sub(prev))
			prev = a.at
		}
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer wcancel()
	seenByAll := 0
	for _, a := range all {
		ok := true
		for _, sc := range scs {
			if err := wantRevoked(wctx, sc, a.seq, a.token); err != nil {
				t.Error(err)
				ok = false
			}
		}
		if ok {
			seenByAll++
		}
	}
	t.Logf("revocations acknowledged: %d; seen by every one of %d verifiers: %d; committed but unacknowledged (outbox): %d; failed requests: %d; longest write stall after the kill %s",
		len(all), len(scs), seenByAll, len(pending), failures.Load(), stalled.Round(time.Millisecond))
	if seenByAll != len(all) {
		t.Fatalf("%d of %d acknowledged revocations reached every verifier", seenByAll, len(all))
	}

	// The verifiers failed over without a restart: the one on the killed
	// node is now on another and applied what came after the kill.
	for i, conn := range conns {
		if u := conn.NATS().ConnectedUrl(); u == killedURL || u == "" {
			t.Errorf("verifier %d connected to %q after the kill of %s", i, u, killedURL)
		}
	}
	waitVerifiersReady(t, scs...)
	t.Logf("verifier %d was on the killed node; consumer restarts per verifier: %v", killed,
		func() (r []uint64) {
			for _, sc := range scs {
				r = append(r, sc.Status().Stalls)
			}
			return r
		}())

	// The killed node rejoins with its store and catches up.
	t.Logf("verified after %s; restarting %s", time.Since(killedAt).Round(time.Millisecond), leader)
	restarted := c.Restart(t, killed)
	c.WaitReady(t)
	r := revokeSession(t, svc, newSession(t, svc, "after-rejoin").SessionID)
	bustest.WaitFor(t, 60*time.Second, func() error {
		st, ok := serverStream(restarted, bus.StreamRevocations)
		if !ok || st.LastSeq < r.Seq {
			return fmt.Errorf("rejoined node %s holds %s up to %d, want %d", leader, bus.StreamRevocations, st.LastSeq, r.Seq)
		}
		return nil
	})
	for i := range c.Len() {
		st, _ := serverStream(c.Server(i), bus.StreamRevocations)
		if st.LastSeq != r.Seq || st.Msgs != r.Seq {
			t.Errorf("node %d holds %d messages up to %d, want %d", i, st.Msgs, st.LastSeq, r.Seq)
		}
	}
	for _, sc := range scs {
		if err := sc.WaitApplied(wctx, r.Seq); err != nil {
			t.Errorf("verifier %s did not apply %d after the rejoin: %v", sc.ID(), r.Seq, err)
		}
	}
	// Revocations committed while the bus did not acknowledge them are
	// published by the issuer's outbox; they reach the verifiers too.
	for _, tok := range pending {
		for _, sc := range scs {
			bustest.WaitFor(t, 40*time.Second, func() error {
				if _, err := sc.Verifier().Verify(t.Context(), tok); !errors.Is(err, verifier.ErrRevoked) {
					return fmt.Errorf("unacknowledged revocation not enforced yet by %s: %v", sc.ID(), err)
				}
				return nil
			})
		}
	}
}

// TestIssuerReplicas_ServeOneFleet runs two issuers, each with its own data
// directory and signing key, on one NATS, serving the same verifiers: the
// verifiers accept both keys, a revocation through either reaches every
// verifier, and when one issuer stops the other goes on serving, the
// sessions of the stopped one included: sessions are shared through
// HERALD_SESSIONS.
func TestIssuerReplicas_ServeOneFleet(t *testing.T) {
	s := bustest.RunServer(t)
	a, stopA := startIssuer(t, bustest.Connect(t, s), t.TempDir(), 1)
	b, _ := startIssuer(t, bustest.Connect(t, s), t.TempDir(), 1)
	var scs []*sidecar.Sidecar
	for range 2 {
		sc, _ := startVerifier(t, bustest.Connect(t, s), t.TempDir())
		scs = append(scs, sc)
	}
	waitVerifiersReady(t, scs...)

	sa, sb := newSession(t, a, "alice"), newSession(t, b, "bob")
	kidA, kidB := tokenKid(t, sa.AccessToken), tokenKid(t, sb.AccessToken)
	if kidA == kidB {
		t.Fatalf("both replicas sign with key %s; each must have its own", kidA)
	}
	for _, sc := range scs {
		bustest.WaitFor(t, 10*time.Second, func() error {
			keys := sc.Status().Keys
			if keys < 4 { // current and next key of each replica
				return fmt.Errorf("verifier %s trusts %d keys, want both replicas' current and next keys", sc.ID(), keys)
			}
			return nil
		})
		wantValid(t, sc, sa.AccessToken)
		wantValid(t, sc, sb.AccessToken)
	}

	// A revocation through either replica reaches every verifier, whoever
	// issued the token.
	ra := revokeSession(t, b, sa.SessionID)
	rb := revokeSession(t, a, sb.SessionID)
	for _, sc := range scs {
		if err := wantRevoked(t.Context(), sc, ra.Seq, sa.AccessToken); err != nil {
			t.Fatal(err)
		}
		if err := wantRevoked(t.Context(), sc, rb.Seq, sb.AccessToken); err != nil {
			t.Fatal(err)
		}
	}

	// Sessions are shared: the other replica rotates a refresh token the
	// first one issued, and the used token is then reuse on either.
	sc := newSession(t, a, "carol")
	next, code := refreshOn(t, b, sc.RefreshToken)
	if code != http.StatusOK {
		t.Fatalf("refresh on the other replica: %d, want 200", code)
	}
	if _, code := refreshOn(t, a, sc.RefreshToken); code != http.StatusBadRequest {
		t.Fatalf("the used refresh token on the issuing replica: %d, want 400 invalid_grant", code)
	}
	if _, code := refreshOn(t, b, next); code != http.StatusBadRequest {
		t.Fatalf("the token rotated on b after reuse on a: %d, want 400: the session is revoked", code)
	}
	sc = newSession(t, a, "carol")

	// One replica goes away: the other serves on, refreshes the sessions
	// the gone one created, and tokens the gone one signed still verify
	// until they expire (its keys stay published).
	stopA()
	if _, code := refreshOn(t, b, sc.RefreshToken); code != http.StatusOK {
		t.Fatalf("refresh of the stopped replica's session: %d, want 200", code)
	}
	sd := newSession(t, b, "dave")
	for _, v := range scs {
		wantValid(t, v, sd.AccessToken)
		wantValid(t, v, sc.AccessToken)
	}
	rd := revokeSession(t, b, sd.SessionID)
	for _, v := range scs {
		if err := wantRevoked(t.Context(), v, rd.Seq, sd.AccessToken); err != nil {
			t.Fatal(err)
		}
	}
	if code, body, err := apiCall(t.Context(), "GET", b.URL()+"/readyz", nil, nil); err != nil || code != http.StatusOK {
		t.Fatalf("surviving replica /readyz: %d %s %v", code, body, err)
	}
}

// refreshOn refreshes rt on svc and returns the new refresh token, if
// any, and the status.
func refreshOn(t testing.TB, svc *issuer.Service, rt string) (string, int) {
	t.Helper()
	resp, err := apiClient.PostForm(svc.URL()+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out issuer.TokenResponse
	_ = json.NewDecoder(resp.Body).Decode(&out) // an error has no token
	return out.RefreshToken, resp.StatusCode
}

// tokenKid returns the kid in a JWT's header.
func tokenKid(t testing.TB, tok string) string {
	t.Helper()
	seg, _, _ := strings.Cut(tok, ".")
	var h struct {
		Kid string `json:"kid"`
	}
	data, err := base64.RawURLEncoding.DecodeString(seg)
	if err == nil {
		err = json.Unmarshal(data, &h)
	}
	if err != nil || h.Kid == "" {
		t.Fatalf("token header: %v", err)
	}
	return h.Kid
}

// BenchmarkPropagation compares revocation propagation on one server and
// on a three-node cluster with streams of 3 replicas, in the same run:
// from the Revoke call on the issuer to each of three verifiers applying
// it (the verifiers prefer different nodes), and the issuer's answer
// (its Pebble commit and the JetStream acknowledgement, which on the
// cluster waits for a quorum of replicas to store it). Every server
// syncs every write to disk. Run it with a fixed count:
//
//	go test -run '^$' -bench Propagation -benchtime 300x ./bus
func BenchmarkPropagation(b *testing.B) {
	for _, tc := range []struct {
		name  string
		nodes int
	}{{"single", 1}, {"cluster3", 3}} {
		b.Run(tc.name, func(b *testing.B) {
			var url string
			if tc.nodes == 1 {
				url = bustest.RunServer(b).ClientURL()
			} else {
				url = bustest.RunCluster(b, tc.nodes).URL()
			}
			svc, _ := startIssuer(b, connectTo(b, bus.Config{URL: url}), b.TempDir(), tc.nodes)
			var scs []*sidecar.Sidecar
			for i := range 3 {
				sc, _ := startVerifier(b, connectTo(b, bus.Config{URL: rotate(url, i), NoRandomize: true}), b.TempDir())
				scs = append(scs, sc)
			}
			waitVerifiersReady(b, scs...)
			_, seq, err := connectTo(b, bus.Config{URL: url}).StreamHead(b.Context(), bus.StreamRevocations)
			if err != nil {
				b.Fatal(err)
			}
			var acks, applied []time.Duration
			i := 0
			for b.Loop() {
				// Revocations are the only writes to HERALD, so the next
				// one gets seq+1: the verifiers are waited on before it is made.
				seq++
				i++
				var wg sync.WaitGroup
				lat := make([]time.Duration, len(scs))
				start := time.Now()
				for j, sc := range scs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := sc.WaitApplied(b.Context(), seq); err != nil {
							b.Error(err)
						}
						lat[j] = time.Since(start)
					}()
				}
				r, err := svc.Revoke(b.Context(), issuer.RevocationRequest{Kind: "token", Value: fmt.Sprintf("bench-%d", i)}, "bench", "")
				ack := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if r.Seq != seq {
					b.Fatalf("revocation got seq %d, want %d", r.Seq, seq)
				}
				wg.Wait()
				acks = append(acks, ack)
				applied = append(applied, lat...)
			}
			slices.Sort(acks)
			slices.Sort(applied)
			pct := func(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }
			for _, m := range []struct {
				name string
				d    []time.Duration
			}{{"ack", acks}, {"applied", applied}} {
				b.ReportMetric(float64(pct(m.d, 50).Microseconds())/1000, m.name+"-p50-ms")
				b.ReportMetric(float64(pct(m.d, 99).Microseconds())/1000, m.name+"-p99-ms")
			}
			b.Logf("%s: %d revocations; issuer answer p50 %s p99 %s; applied by each of %d verifiers p50 %s p99 %s",
				tc.name, len(acks), pct(acks, 50), pct(acks, 99), len(scs), pct(applied, 50), pct(applied, 99))
		})
	}
}

// startRawServer starts a nats-server with opts (random loopback port, no
// logs) for the connection option tests.
func startRawServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	return bustest.RunOptions(t, opts)
}

func tryConnect(t *testing.T, cfg bus.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	cfg.Logger = quietLog
	c, err := bus.Connect(ctx, cfg)
	if err == nil {
		c.Close()
	}
	return err
}

// TestConnect_CredentialsFile connects to a server in operator (JWT) mode
// with a credentials file, as nsc writes it.
func TestConnect_CredentialsFile(t *testing.T) {
	op, _ := nkeys.CreateOperator()
	opPub, _ := op.PublicKey()
	opClaims := jwt.NewOperatorClaims(opPub)
	acc, _ := nkeys.CreateAccount()
	accPub, _ := acc.PublicKey()
	accJWT, err := jwt.NewAccountClaims(accPub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	userPub, _ := user.PublicKey()
	userSeed, _ := user.Seed()
	userJWT, err := jwt.NewUserClaims(userPub).Encode(acc)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(userJWT, userSeed)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "herald.creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	s := startRawServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{opClaims}, AccountResolver: resolver})

	if err := tryConnect(t, bus.Config{URL: s.ClientURL(), CredsFile: path}); err != nil {
		t.Fatalf("connect with the credentials file: %v", err)
	}
	if err := tryConnect(t, bus.Config{URL: s.ClientURL()}); err == nil {
		t.Fatal("connected without credentials to a server that requires them")
	}
	if err := tryConnect(t, bus.Config{URL: s.ClientURL(), CredsFile: path + ".missing"}); err == nil || !strings.Contains(err.Error(), "credentials file") {
		t.Fatalf("missing credentials file: %v, want an error naming it", err)
	}
}

// TestConnect_MutualTLS connects to a server that requires TLS and verifies
// client certificates, with the CA, certificate and key files.
func TestConnect_MutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCert(t, dir, "ca", nil, nil)
	newCert(t, dir, "server", ca, caKey)
	newCert(t, dir, "client", ca, caKey)
	p := func(name string) string { return filepath.Join(dir, name) }
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p("server.pem"), KeyFile: p("server.key"), CaFile: p("ca.pem"), Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s := startRawServer(t, &server.Options{TLSConfig: tc, TLSVerify: true, TLSTimeout: 2})
	url := "tls://" + s.Addr().String()

	if err := tryConnect(t, bus.Config{URL: url, CAFile: p("ca.pem"), CertFile: p("client.pem"), KeyFile: p("client.key")}); err != nil {
		t.Fatalf("connect with CA and client certificate: %v", err)
	}
	if err := tryConnect(t, bus.Config{URL: url, CAFile: p("ca.pem")}); err == nil {
		t.Fatal("connected without a client certificate to a server that verifies clients")
	}
	if err := tryConnect(t, bus.Config{URL: url, CertFile: p("client.pem")}); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("certificate without key: %v, want an error", err)
	}
}

// newCert writes name.pem and name.key: a CA when parent is nil, else a
// certificate for 127.0.0.1 signed by parent.
func newCert(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for file, block := range map[string]*pem.Block{
		name + ".pem": {Type: "CERTIFICATE", Bytes: der},
		name + ".key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}
