package doctor_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/internal/doctor"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

const adminToken = "test-admin-token-at-least-32-bytes"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is a deployment: a NATS server, an issuer and verifiers, and an
// issuer-level connection to break things with.
type env struct {
	srv     *natsserver.Server
	conn    *bus.Conn
	svc     *issuer.Service
	monitor string
}

// options change what deploy starts.
type options struct {
	trust     []federation.Issuer
	issuerNow func() time.Time // the issuer's clock
}

// deploy runs a NATS server with its monitoring endpoint (nats-server's
// own /varz handler) and an issuer.
func deploy(t *testing.T, o options) *env {
	t.Helper()
	e := &env{srv: bustest.RunServer(t)}
	mon := httptest.NewServer(http.HandlerFunc(e.srv.NATS().HandleVarz))
	t.Cleanup(mon.Close)
	e.monitor = mon.URL
	e.conn = bustest.Connect(t, e.srv)
	cfg := issuer.Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: adminToken, ClientSecretCost: 4,
		Logger: quiet, IssuerURL: "https://issuer.test", EventKeyFile: bustest.EventKeyFile(t), SSFKeyFile: bustest.SSFKeyFile(t),
		Trust: o.trust, Now: o.issuerNow}
	svc, err := issuer.Open(t.Context(), cfg, bustest.Connect(t, e.srv))
	if err != nil {
		t.Fatalf("open issuer: %v", err)
	}
	bustest.RunUntilStopped(t, svc.Run, func() { svc.Close() })
	e.svc = svc
	return e
}

// verifierOptions change a verifier.
type verifierOptions struct {
	pins  []string         // nil: the issuer's event key; empty: trust on first use
	now   func() time.Time // the verifier's clock
	every time.Duration    // heartbeat interval
}

// verifier runs a verifier sidecar against e; stop stops it.
func (e *env) verifier(t *testing.T, o verifierOptions) (sc *sidecar.Sidecar, conn *bus.Conn, stop func()) {
	t.Helper()
	if o.pins == nil {
		o.pins = []string{e.svc.EventKeyID()}
	}
	conn = bustest.Connect(t, e.srv)
	sc, err := sidecar.Open(sidecar.Config{
		Verifier:  verifier.Config{Issuer: e.svc.IssuerURL(), Audience: issuer.DefaultAudience, Now: o.now},
		EventKeys: o.pins, DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet, HeartbeatEvery: o.every,
	}, conn)
	if err != nil {
		t.Fatalf("open sidecar: %v", err)
	}
	return sc, conn, bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
}

// waitReported waits until the fleet bucket holds a heartbeat of sc that
// says ready (or, with ready false, any heartbeat of it).
func (e *env) waitReported(t *testing.T, sc *sidecar.Sidecar, ready bool) {
	t.Helper()
	id := sc.Heartbeat().ID
	bustest.WaitFor(t, 15*time.Second, func() error {
		list, err := e.conn.ListFleet(t.Context())
		if err != nil {
			return err
		}
		for _, hb := range list {
			if hb.ID == id && (hb.Ready || !ready) {
				return nil
			}
		}
		return fmt.Errorf("no heartbeat of %s (ready %v) in %+v", id, ready, list)
	})
}

// config is a doctor configuration that checks e with everything it can
// see: NATS, the monitoring endpoint, the issuer's API and the pins.
func (e *env) config() doctor.Config {
	return doctor.Config{
		Bus:         bus.Config{URL: e.srv.ClientURL()},
		IssuerURL:   e.svc.URL(),
		AdminToken:  adminToken,
		MonitorURLs: []string{e.monitor},
		EventKeys:   []string{e.svc.EventKeyID()},
	}
}

func runDoctor(t *testing.T, cfg doctor.Config) []doctor.Finding {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := doctor.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("doctor: %v", err)
	}
	return out
}

// want fails the test unless findings hold one of check with status
// whose detail contains detail and whose fix contains fix.
func want(t *testing.T, findings []doctor.Finding, check string, status doctor.Status, detail, fix string) doctor.Finding {
	t.Helper()
	for _, f := range findings {
		if f.Check == check && f.Status == status && strings.Contains(f.Detail, detail) && strings.Contains(f.Fix, fix) {
			if status != doctor.OK && f.Fix == "" {
				t.Errorf("finding %+v has no fix", f)
			}
			return f
		}
	}
	t.Fatalf("no %s finding %q with detail ~ %q and fix ~ %q in:\n%s", status, check, detail, fix, dump(findings))
	return doctor.Finding{}
}

// wantNone fails the test if findings hold one of check with status.
func wantNone(t *testing.T, findings []doctor.Finding, check string, status doctor.Status) {
	t.Helper()
	for _, f := range findings {
		if f.Check == check && f.Status == status {
			t.Fatalf("unexpected %s finding %+v in:\n%s", status, f, dump(findings))
		}
	}
}

func dump(findings []doctor.Finding) string {
	var b strings.Builder
	for _, f := range findings {
		fmt.Fprintf(&b, "  %-8s %-22s %s | %s\n", f.Status, f.Check, f.Detail, f.Fix)
	}
	return b.String()
}

// TestDoctor_Healthy: a deployment as Herald sets it up, with a verifier
// and a trusted identity provider, is all ok, and its findings survive a
// round trip through JSON.
func TestDoctor_Healthy(t *testing.T) {
	idp := federationtest.NewIdP(t)
	e := deploy(t, options{trust: []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}})
	sc, _, _ := e.verifier(t, verifierOptions{})
	e.waitReported(t, sc, true)
	var findings []doctor.Finding
	bustest.WaitFor(t, 15*time.Second, func() error {
		findings = runDoctor(t, e.config())
		if w := doctor.Worst(findings); w != doctor.OK {
			return fmt.Errorf("worst %s:\n%s", w, dump(findings))
		}
		return nil
	})
	for _, check := range []string{doctor.CheckNATS, doctor.CheckJetStream, doctor.CheckSync, doctor.CheckIssuerAPI,
		"stream HERALD", "stream HERALD_AUDIT", "stream HERALD_SNAPSHOTS", "bucket HERALD_KEYS", "bucket HERALD_VERIFIERS",
		doctor.CheckEventKeys, doctor.CheckTokenKeys, doctor.CheckTrusted, doctor.CheckFleet, doctor.CheckPins, doctor.CheckClock} {
		want(t, findings, check, doctor.OK, "", "")
	}
	want(t, findings, doctor.CheckTrusted, doctor.OK, idp.URL+": 1 keys", "")
	want(t, findings, doctor.CheckFleet, doctor.OK, "1 verifiers live", "")
	want(t, findings, doctor.CheckPins, doctor.OK, e.svc.EventKeyID(), "")
	want(t, findings, doctor.CheckClock, doctor.OK, "of the issuer's clock", "")

	b, err := json.Marshal(findings)
	if err != nil {
		t.Fatal(err)
	}
	var back []doctor.Finding
	if err := json.Unmarshal(b, &back); err != nil || len(back) != len(findings) || back[0] != findings[0] {
		t.Fatalf("JSON round trip: %v, %d findings, want %d", err, len(back), len(findings))
	}
}

// TestDoctor_NATS: a credential NATS refuses and a server that is not
// there are one error finding each, with the fix for each, and nothing
// else is checked.
func TestDoctor_NATS(t *testing.T) {
	srv, files := bustest.RunSecureServer(t)
	seedFile := bustest.StrangerSeedFile(t)
	t.Run("refused", func(t *testing.T) {
		findings := runDoctor(t, doctor.Config{Bus: bus.Config{URL: srv.ClientURL(), NkeyFile: seedFile, CAFile: files.CAFile()}})
		want(t, findings, doctor.CheckNATS, doctor.Error, "uthorization", "refused the credentials")
		if len(findings) != 1 {
			t.Fatalf("findings after a refused credential:\n%s", dump(findings))
		}
	})
	t.Run("no TLS CA", func(t *testing.T) {
		findings := runDoctor(t, doctor.Config{Bus: bus.Config{URL: srv.ClientURL(), NkeyFile: files.SeedFile(bus.RoleDashboard)}})
		want(t, findings, doctor.CheckNATS, doctor.Error, "", "--nats-ca")
	})
	t.Run("unreachable", func(t *testing.T) {
		findings := runDoctor(t, doctor.Config{Bus: bus.Config{URL: "nats://127.0.0.1:1"}, Timeout: 2 * time.Second})
		want(t, findings, doctor.CheckNATS, doctor.Error, "127.0.0.1:1", "no NATS server answered")
	})
	t.Run("dashboard role", func(t *testing.T) {
		// The read-only role may make every check: on a server without
		// Herald, what is missing is reported, not refused.
		findings := runDoctor(t, doctor.Config{Bus: bus.Config{URL: srv.ClientURL(), NkeyFile: files.SeedFile(bus.RoleDashboard), CAFile: files.CAFile()}})
		want(t, findings, doctor.CheckNATS, doctor.OK, "authenticated", "")
		want(t, findings, doctor.CheckJetStream, doctor.OK, "", "")
		want(t, findings, "stream HERALD", doctor.Error, "does not exist", "start an issuer")
		want(t, findings, "bucket HERALD_KEYS", doctor.Error, "does not exist", "start an issuer")
	})
}

// TestDoctor_ServerSync: a server that syncs on an interval, as
// nats-server does by default, is an error; without monitoring URLs the
// setting is reported unchecked.
func TestDoctor_ServerSync(t *testing.T) {
	ns := bustest.RunOptions(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir()})
	mon := httptest.NewServer(http.HandlerFunc(ns.HandleVarz))
	t.Cleanup(mon.Close)
	findings := runDoctor(t, doctor.Config{Bus: bus.Config{URL: ns.ClientURL()}, MonitorURLs: []string{mon.URL}})
	want(t, findings, doctor.CheckSync, doctor.Error, "syncs to disk every 2m0s", "sync_interval: always")
	findings = runDoctor(t, doctor.Config{Bus: bus.Config{URL: ns.ClientURL()}})
	want(t, findings, doctor.CheckSync, doctor.Warning, "not checked", "--nats-monitor")
}

// TestDoctor_Streams edits Herald's streams the ways that lose or erase
// revocations and sees each reported with its fix.
func TestDoctor_Streams(t *testing.T) {
	e := deploy(t, options{})
	js := e.conn.JetStream()
	ctx := t.Context()
	s, err := js.Stream(ctx, bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	// nats-server cannot turn deny delete off: the stream is made again
	// without it, and keeping revocations a minute.
	sc := s.CachedInfo().Config
	if err := js.DeleteStream(ctx, bus.StreamRevocations); err != nil {
		t.Fatal(err)
	}
	sc.DenyDelete, sc.DenyPurge, sc.MaxAge, sc.Duplicates = false, false, time.Minute, time.Minute
	if _, err := js.CreateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	// Nor its persist mode: the audit stream is made again, asynchronous.
	a, err := js.Stream(ctx, bus.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	ac := a.CachedInfo().Config
	if err := js.DeleteStream(ctx, bus.StreamAudit); err != nil {
		t.Fatal(err)
	}
	ac.PersistMode, ac.AllowAtomicPublish = jetstream.AsyncPersistMode, false // nats-server allows no atomic batches there
	if _, err := js.CreateStream(ctx, ac); err != nil {
		t.Fatal(err)
	}

	findings := runDoctor(t, e.config())
	want(t, findings, "stream HERALD", doctor.Error, "deny_delete and deny_purge off", "restart an issuer")
	want(t, findings, "stream HERALD", doctor.Error, "keeps revocations 1m0s, less than the 15m0s", "--max-access-ttl")
	want(t, findings, "stream HERALD_AUDIT", doctor.Error, "persist_mode async", "delete it")
	want(t, findings, "stream HERALD_AUDIT", doctor.Warning, "atomic batch", "restart an issuer")
	wantNone(t, findings, "stream HERALD_AUDIT", doctor.OK)
	want(t, findings, "stream HERALD_SNAPSHOTS", doctor.OK, "", "")
	if got := doctor.Worst(findings); got != doctor.Error {
		t.Fatalf("worst = %s, want error", got)
	}
}

// TestDoctor_Replicas: in a three-node JetStream cluster, Herald's
// streams with one replica are an error, with three they are ok, and a
// replica whose server died is a warning naming it.
func TestDoctor_Replicas(t *testing.T) {
	c := bustest.RunCluster(t, 3)
	c.WaitReady(t)
	conn := c.Connect(t)
	ctx := t.Context()
	// The cluster's size comes from a server's monitoring endpoint.
	mon := httptest.NewServer(http.HandlerFunc(c.Server(0).NATS().HandleVarz))
	t.Cleanup(mon.Close)
	cfg := doctor.Config{Bus: bus.Config{URL: c.URL()}, MonitorURLs: []string{mon.URL}}
	if err := conn.EnsureStreams(ctx, bus.StreamConfig{RevocationMaxAge: time.Hour, Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	findings := runDoctor(t, cfg)
	want(t, findings, "stream HERALD", doctor.Error, "1 replica(s) in a JetStream cluster", "--replicas 3")
	if err := conn.EnsureStreams(ctx, bus.StreamConfig{RevocationMaxAge: time.Hour, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 20*time.Second, func() error {
		findings = runDoctor(t, cfg)
		for _, f := range findings {
			if f.Check == "stream HERALD" && f.Status != doctor.OK {
				return fmt.Errorf("%+v", f)
			}
		}
		return nil
	})
	want(t, findings, "stream HERALD", doctor.OK, "R3", "")

	// A server holding a replica (not the leader, nor the monitored one)
	// dies.
	info := bustest.StreamInfo(t, conn, bus.StreamRevocations)
	victim := -1
	for i := 1; i < c.Len(); i++ {
		if name := c.Server(i).Name(); name != info.Cluster.Leader {
			victim = i
			break
		}
	}
	name := c.Server(victim).Name()
	c.Shutdown(victim)
	bustest.WaitFor(t, 30*time.Second, func() error {
		findings = runDoctor(t, cfg)
		for _, f := range findings {
			if f.Check == "stream HERALD" && f.Status == doctor.Warning && strings.Contains(f.Detail, "server "+name) {
				return nil
			}
		}
		return fmt.Errorf("no warning of the replica on %s:\n%s", name, dump(findings))
	})
	want(t, findings, "stream HERALD", doctor.Warning, "the replica on server "+name, name)
}

// TestDoctor_Keys removes and revokes keys: a signing key the issuer
// serves but the bucket lacks, an event key that is not published, and
// one a root key revoked.
func TestDoctor_Keys(t *testing.T) {
	e := deploy(t, options{})
	kv, err := e.conn.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kid := e.svc.EventKeyID()
	t.Run("signing keys missing", func(t *testing.T) {
		if code := post(t, e.svc.URL()+"/v1/sessions", map[string]string{"sub": "alice"}); code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("create session: %d", code)
		}
		names, err := kv.Keys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if !strings.Contains(n, ".") { // a token key's entry is named by its kid
				if err := kv.Delete(t.Context(), n); err != nil {
					t.Fatal(err)
				}
			}
		}
		findings := runDoctor(t, e.config())
		want(t, findings, doctor.CheckTokenKeys, doctor.Error, "no valid signing key is published", "start an issuer")
		want(t, findings, doctor.CheckTokenKeys, doctor.Error, "the last token (issued ", "restart the issuer")
		want(t, findings, doctor.CheckTokenKeys, doctor.Error, "HERALD_KEYS holds no valid entry", "")
	})
	t.Run("pinned event key not published", func(t *testing.T) {
		cfg := e.config()
		cfg.EventKeys = append(cfg.EventKeys, "no-such-kid")
		findings := runDoctor(t, cfg)
		want(t, findings, doctor.CheckEventKeys, doctor.Error, "pinned event key no-such-kid is not published", "--event-keys")
	})
	t.Run("event key revoked", func(t *testing.T) {
		_, rootPriv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		root, err := bus.NewSigner(rootPriv, "")
		if err != nil {
			t.Fatal(err)
		}
		name, value, err := bus.RevokeEventKey(root, kid, "test")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Put(t.Context(), name, value); err != nil {
			t.Fatal(err)
		}
		cfg := e.config()
		cfg.RootKeys = []string{root.KeyID()}
		findings := runDoctor(t, cfg)
		want(t, findings, doctor.CheckEventKeys, doctor.Error, "event key "+kid+" published last, but a root key revoked it", "herald keys event certify")
		want(t, findings, doctor.CheckEventKeys, doctor.Error, "pinned event key "+kid+" is revoked", "--event-keys")
	})
	t.Run("event key not published", func(t *testing.T) {
		if err := kv.Delete(t.Context(), bus.EventKeyPrefix+kid); err != nil {
			t.Fatal(err)
		}
		findings := runDoctor(t, e.config())
		want(t, findings, doctor.CheckEventKeys, doctor.Error, "no event key is published", "start an issuer")
	})
}

// TestDoctor_Pins: a verifier pinned to another event key than the one
// signing revocations is an error; one trusting on first use a warning.
func TestDoctor_Pins(t *testing.T) {
	e := deploy(t, options{})
	other, err := bus.NewSigner(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)), "")
	if err != nil {
		t.Fatal(err)
	}
	wrong, _, _ := e.verifier(t, verifierOptions{pins: []string{other.KeyID()}})
	tofu, _, _ := e.verifier(t, verifierOptions{pins: []string{}})
	e.waitReported(t, wrong, false)
	e.waitReported(t, tofu, true)
	findings := runDoctor(t, e.config())
	want(t, findings, doctor.CheckPins, doctor.Error, fmt.Sprintf("verifier %s", wrong.Heartbeat().ID), "--event-keys "+e.svc.EventKeyID())
	want(t, findings, doctor.CheckPins, doctor.Error, "does not trust event key "+e.svc.EventKeyID(), "")
	want(t, findings, doctor.CheckPins, doctor.Warning, fmt.Sprintf("verifier %s", tofu.Heartbeat().ID), "--event-keys "+e.svc.EventKeyID())
	want(t, findings, doctor.CheckFleet, doctor.Warning, fmt.Sprintf("verifier %s", wrong.Heartbeat().ID)+" (", "wait for it to catch up")
}

// TestDoctor_Fleet: a verifier that stopped without leaving, one that is
// stale, one that lags, and fewer verifiers than expected.
func TestDoctor_Fleet(t *testing.T) {
	e := deploy(t, options{})
	sc, conn, stop := e.verifier(t, verifierOptions{every: 100 * time.Millisecond})
	e.waitReported(t, sc, true)
	id := sc.Heartbeat().ID
	// Cut off from NATS first, the verifier cannot take its heartbeat
	// away when it stops: it stays until the bucket's TTL.
	conn.NATS().Close()
	stop()
	var findings []doctor.Finding
	bustest.WaitFor(t, 5*time.Second, func() error {
		findings = runDoctor(t, e.config())
		for _, f := range findings {
			if f.Check == doctor.CheckFleet && f.Status == doctor.Error && strings.Contains(f.Detail, "verifier "+id) {
				return nil
			}
		}
		return fmt.Errorf("no silent verifier in:\n%s", dump(findings))
	})
	want(t, findings, doctor.CheckFleet, doctor.Error, "verifier "+id, "check the verifier's process")
	want(t, findings, doctor.CheckFleet, doctor.Error, "last reported", "")

	fleet, err := e.conn.OpenFleet(t.Context(), false, bus.FleetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for _, hb := range []bus.Heartbeat{
		{ID: "stale-1", Host: "edge", Stale: true, Time: now, EveryMS: 60_000, EventKeys: []string{e.svc.EventKeyID()}, EventKeyTrust: bus.EventKeysPinned},
		{ID: "lagging-1", Host: "edge", Ready: true, AppliedSeq: 0, Lag: 5000, Time: now, EveryMS: 60_000, EventKeys: []string{e.svc.EventKeyID()}, EventKeyTrust: bus.EventKeysPinned},
	} {
		if err := fleet.Beat(t.Context(), &hb); err != nil {
			t.Fatal(err)
		}
	}
	cfg := e.config()
	cfg.ExpectVerifiers = 3
	findings = runDoctor(t, cfg)
	want(t, findings, doctor.CheckFleet, doctor.Error, "verifier stale-1 (edge) is stale", "NATS connection")
	want(t, findings, doctor.CheckFleet, doctor.Warning, "verifier lagging-1 (edge) lags 5000 revocations", "")
	want(t, findings, doctor.CheckFleet, doctor.Error, "2 verifiers report, 3 expected", "find the missing verifiers")
}

// TestDoctor_ClockSkew: a verifier whose clock is a minute ahead of the
// issuer's is an error, ten seconds a warning; both are measured
// against the issuer's clock through the NATS server's.
func TestDoctor_ClockSkew(t *testing.T) {
	e := deploy(t, options{})
	far, _, _ := e.verifier(t, verifierOptions{now: func() time.Time { return time.Now().Add(time.Minute) }})
	near, _, _ := e.verifier(t, verifierOptions{now: func() time.Time { return time.Now().Add(-10 * time.Second) }})
	e.waitReported(t, far, true)
	e.waitReported(t, near, true)
	findings := runDoctor(t, e.config())
	want(t, findings, doctor.CheckClock, doctor.Error, fmt.Sprintf("verifier %s (", far.Heartbeat().ID), "NTP")
	f := want(t, findings, doctor.CheckClock, doctor.Warning, fmt.Sprintf("verifier %s (", near.Heartbeat().ID), "NTP")
	if !strings.Contains(f.Detail, "off the issuer's clock") || !regexp.MustCompile(`is -(9\.9\d*|10(\.\d+)?)s off`).MatchString(f.Detail) {
		t.Errorf("skew finding %q: want about -10s off the issuer's clock", f.Detail)
	}

	// Without the issuer's view the verifiers are compared with the NATS
	// server's clock, and the doctor says so.
	cfg := e.config()
	cfg.IssuerURL = ""
	findings = runDoctor(t, cfg)
	want(t, findings, doctor.CheckClock, doctor.Error, "off the NATS server's clock", "NTP")
	want(t, findings, doctor.CheckClock, doctor.Warning, "not with the issuer's", "--issuer-url")
}

// TestDoctor_IssuerClock: an issuer whose clock is 45 s ahead is an error
// against the NATS server's, and so is a verifier with a true clock
// against the issuer's.
func TestDoctor_IssuerClock(t *testing.T) {
	e := deploy(t, options{issuerNow: func() time.Time { return time.Now().Add(45 * time.Second) }})
	sc, _, _ := e.verifier(t, verifierOptions{})
	e.waitReported(t, sc, true)
	var findings []doctor.Finding
	bustest.WaitFor(t, 15*time.Second, func() error {
		findings = runDoctor(t, e.config())
		for _, f := range findings {
			if f.Check == doctor.CheckClock && strings.Contains(f.Detail, "the issuer's clock is +4") {
				return nil
			}
		}
		return fmt.Errorf("no skewed issuer in:\n%s", dump(findings))
	})
	want(t, findings, doctor.CheckClock, doctor.Error, "the issuer's clock is +4", "issuer's host")
	want(t, findings, doctor.CheckClock, doctor.Error, fmt.Sprintf("verifier %s (", sc.Heartbeat().ID), "verifier's host")
	want(t, findings, doctor.CheckClock, doctor.Error, "s off the issuer's clock", "")
}

// TestDoctor_TrustedIssuerFailing: an identity provider whose key set
// fails to load is an error naming it, with the fix.
func TestDoctor_TrustedIssuerFailing(t *testing.T) {
	mux := http.NewServeMux()
	idp := httptest.NewServer(mux)
	t.Cleanup(idp.Close)
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": idp.URL, "jwks_uri": idp.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	})
	e := deploy(t, options{trust: []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}})
	var findings []doctor.Finding
	bustest.WaitFor(t, 15*time.Second, func() error {
		findings = runDoctor(t, e.config())
		for _, f := range findings {
			if f.Check == doctor.CheckTrusted && f.Status == doctor.Error {
				return nil
			}
		}
		return fmt.Errorf("no failing trusted issuer in:\n%s", dump(findings))
	})
	want(t, findings, doctor.CheckTrusted, doctor.Error, idp.URL+": fetching its keys fails", "jwks_uri")
}

// TestDoctor_IssuerAPI: a refused admin credential is an error with its
// fix; the checks that need the issuer's view say so.
func TestDoctor_IssuerAPI(t *testing.T) {
	e := deploy(t, options{})
	cfg := e.config()
	cfg.AdminToken = "wrong-token-wrong-token-wrong-token"
	findings := runDoctor(t, cfg)
	want(t, findings, doctor.CheckIssuerAPI, doctor.Error, "HTTP 401", "refused the admin credential")
	for _, f := range findings {
		if strings.Contains(f.Detail, cfg.AdminToken) || strings.Contains(f.Fix, cfg.AdminToken) {
			t.Fatalf("finding shows the admin credential: %+v", f)
		}
	}
}

// post sends body as JSON with the admin token and returns the status.
func post(t *testing.T, url string, body any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
