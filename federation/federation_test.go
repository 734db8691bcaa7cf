package federation

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
)

// bucket is a test's HERALD_KEYS on a real embedded NATS server.
type bucket struct {
	srv  *natsserver.Server
	conn *bus.Conn
	kv   jetstream.KeyValue
}

func newBucket(t testing.TB) *bucket {
	t.Helper()
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, time.Hour)
	kv, err := conn.Keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return &bucket{srv: s, conn: conn, kv: kv}
}

// eventKeys trusts the event key of bustest.Signer.
func eventKeys(t testing.TB) bus.EventKeyFunc {
	jwk := bustest.Signer(t).JWK()
	pub, err := jwk.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return func(kid string) (bus.JWK, crypto.PublicKey, bool) { return jwk, pub, kid == jwk.Kid }
}

// extKeys returns the external keys in the bucket bound to iss, by kid,
// each opened with the test event key.
func (b *bucket) extKeys(t testing.TB, iss string) map[string]bus.KeyEntry {
	t.Helper()
	entries, err := readEntries(context.Background(), b.kv, bus.ExternalKeyPrefix+"*")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]bus.KeyEntry)
	for _, e := range entries {
		ke, err := bus.OpenKeyEntry(e.Key(), e.Value(), eventKeys(t))
		if err != nil {
			t.Fatalf("key entry %s does not open: %v", e.Key(), err)
		}
		if ke.Issuer == iss {
			out[ke.JWK.Kid] = ke
		}
	}
	return out
}

// trust returns iss's trust entry, opened, or nil.
func (b *bucket) trust(t testing.TB, iss string) *bus.Trust {
	t.Helper()
	e, err := b.kv.Get(context.Background(), bus.TrustName(iss))
	if err != nil {
		return nil
	}
	tr, err := bus.OpenTrust(e.Key(), e.Value(), eventKeys(t))
	if err != nil {
		t.Fatalf("trust entry of %s does not open: %v", iss, err)
	}
	return tr
}

// revisions returns the revision of every trust and external key entry.
func (b *bucket) revisions(t testing.TB) map[string]uint64 {
	t.Helper()
	out := make(map[string]uint64)
	for _, filter := range []string{bus.TrustPrefix + "*", bus.ExternalKeyPrefix + "*"} {
		entries, err := readEntries(context.Background(), b.kv, filter)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			out[e.Key()] = e.Revision()
		}
	}
	return out
}

// newFed returns a Federation on b, with the clock c, trusting issuers.
func newFed(t testing.TB, b *bucket, c *clock, mod func(*Config), issuers ...Issuer) *Federation {
	t.Helper()
	cfg := Config{Issuers: issuers, Conn: b.conn, Now: c.Now, Log: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// run runs f until the test ends.
func run(t testing.TB, f *Federation) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// tokenIssuer returns the configuration of p as a token issuer.
func tokenIssuer(p *idp) Issuer {
	return Issuer{URL: p.issuer(), Tokens: true}.WithDefaults()
}

func refresh(t testing.TB, f *Federation, iss string) {
	t.Helper()
	if err := f.Refresh(context.Background(), iss); err != nil {
		t.Fatalf("refresh: %v", err)
	}
}

func status(f *Federation, iss string) IssuerStatus {
	for _, s := range f.Status() {
		if s.Issuer == iss {
			return s
		}
	}
	return IssuerStatus{}
}

func kids(m map[string]bus.KeyEntry) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return fmt.Sprint(out)
}

func TestFederation_Publishes(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "/realms/a", rsa2048Key(t, "r1", nil), ecKey(t, "e1", map[string]any{"alg": nil}))
	is := tokenIssuer(p)
	is.Audience = []string{"api"}
	is.Claims = bus.TrustClaims{Tenant: "tid"}
	is.MaxTokenLifetime = 30 * time.Minute
	f := newFed(t, b, newClock(), nil, is)
	refresh(t, f, is.URL)

	keys := b.extKeys(t, is.URL)
	if got := kids(keys); got != "[e1 r1]" {
		t.Fatalf("published %s, want [e1 r1]", got)
	}
	if k := keys["e1"]; k.JWK.Alg != bus.AlgES256 || k.MaxLifetime != 30*time.Minute || k.Issuer != is.URL {
		t.Errorf("e1 = %+v", k)
	}
	if k := keys["r1"]; k.JWK.Alg != bus.AlgRS256 || k.JWK.Kty != "RSA" {
		t.Errorf("r1 = %+v", k)
	}
	tr := b.trust(t, is.URL)
	if tr == nil || tr.MaxTTL != 1800 || !slices.Equal(tr.Audiences, []string{"api"}) || tr.Claims.Tenant != "tid" ||
		!slices.Equal(tr.Algorithms, bus.ExternalAlgorithms()) {
		t.Fatalf("trust = %+v", tr)
	}
	s := status(f, is.URL)
	if s.Keys != 2 || s.LastError != "" || s.LastRefresh.IsZero() || !f.Healthy() {
		t.Errorf("status = %+v", s)
	}
	if _, _, ok := f.Key(is.URL, "r1"); !ok {
		t.Error("Key(r1) not found")
	}
	if _, _, ok := f.Key("https://other.example", "r1"); ok {
		t.Error("Key of an untrusted issuer found")
	}
	got, ok := f.Issuer(is.URL)
	if !ok || got.Audience[0] != "api" {
		t.Fatalf("Issuer = %+v, %v", got, ok)
	}
	got.Audience[0] = "changed"
	if again, _ := f.Issuer(is.URL); again.Audience[0] != "api" {
		t.Error("Issuer returns the Federation's own slice")
	}
}

func TestFederation_DocumentIssuerMismatch(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil))
	p.set(func(p *idp) { p.docIssuer = "https://evil.example" })
	is := tokenIssuer(p)
	f := newFed(t, b, newClock(), nil, is)
	if err := f.Refresh(context.Background(), is.URL); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("err = %v", err)
	}
	if got := b.extKeys(t, is.URL); len(got) != 0 {
		t.Errorf("published %s", kids(got))
	}
	if b.trust(t, is.URL) != nil {
		t.Error("trust entry published")
	}
	if s := status(f, is.URL); s.LastError == "" || f.Healthy() {
		t.Errorf("status = %+v", s)
	}
}

func TestFederation_RFC8414Fallback(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "/tenant", edKey(t, "k1", nil))
	p.set(func(p *idp) { p.noOIDC = true })
	is := tokenIssuer(p)
	f := newFed(t, b, newClock(), nil, is)
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[k1]" {
		t.Fatalf("published %s", got)
	}
}

func TestFederation_CacheControl(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil))
	is := tokenIssuer(p)
	c := newClock()
	f := newFed(t, b, c, nil, is)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", DefaultRefresh},
		{"max-age=1200", 20 * time.Minute},
		{"max-age=10", DefaultMinRefresh},
		{"no-store", DefaultMinRefresh},
		{"max-age=604800", DefaultMaxRefresh},
	} {
		p.set(func(p *idp) { p.cacheControl = tc.header })
		refresh(t, f, is.URL)
		s := status(f, is.URL)
		if got := s.NextRefresh.Sub(s.LastRefresh); got != tc.want || !s.LastRefresh.Equal(c.Now()) {
			t.Errorf("Cache-Control %q: next refresh in %s, want %s", tc.header, got, tc.want)
		}
		c.Advance(time.Minute)
	}
}

func TestFederation_ProviderDownKeepsKeys(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil))
	is := tokenIssuer(p)
	c := newClock()
	reader := sdkmetric.NewManualReader()
	f := newFed(t, b, c, func(cfg *Config) {
		cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	}, is)
	reg, err := f.metrics.observe(f) // as Run does
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Unregister() })
	refresh(t, f, is.URL)
	good := status(f, is.URL).LastRefresh
	if got := failingFor(t, reader, is.URL); got != 0 {
		t.Fatalf("refresh failing for %gs while it succeeds", got)
	}

	p.set(func(p *idp) { p.down = true })
	c.Advance(time.Hour)
	down := c.Now()
	for i, wait := range []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute} {
		if err := f.Refresh(context.Background(), is.URL); err == nil || !strings.Contains(err.Error(), "status 503") {
			t.Fatalf("refresh %d: err = %v", i, err)
		}
		s := status(f, is.URL)
		if !strings.Contains(s.LastError, "503") || !s.ErrorSince.Equal(down) || !s.LastRefresh.Equal(good) || s.Keys != 1 {
			t.Fatalf("status after failure %d = %+v", i, s)
		}
		if got := s.NextRefresh.Sub(c.Now()); got != wait {
			t.Errorf("retry %d in %s, want %s", i, got, wait)
		}
		c.Advance(wait)
	}
	if f.Healthy() {
		t.Error("healthy while the provider is down")
	}
	if got, want := failingFor(t, reader, is.URL), c.Now().Sub(down).Seconds(); got != want {
		t.Errorf("refresh failing for %gs, want %gs", got, want)
	}
	if _, _, ok := f.Key(is.URL, "k1"); !ok {
		t.Error("the last good key is gone")
	}
	if got := kids(b.extKeys(t, is.URL)); got != "[k1]" {
		t.Errorf("bucket holds %s", got)
	}

	p.set(func(p *idp) { p.down = false })
	refresh(t, f, is.URL)
	if s := status(f, is.URL); s.LastError != "" || !s.ErrorSince.IsZero() || !f.Healthy() {
		t.Errorf("status after recovery = %+v", s)
	}
	if got := failingFor(t, reader, is.URL); got != 0 {
		t.Errorf("refresh failing for %gs after recovery", got)
	}
}

// failingFor reads the herald.federation.refresh.failing gauge of issuer
// iss from reader.
func failingFor(t *testing.T, reader *sdkmetric.ManualReader, iss string) float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[float64]); ok && m.Name == "herald.federation.refresh.failing" {
				for _, dp := range g.DataPoints {
					if v, _ := dp.Attributes.Value("issuer"); v.AsString() == iss {
						return dp.Value
					}
				}
			}
		}
	}
	t.Fatalf("no herald.federation.refresh.failing for %s", iss)
	return 0
}

func TestFederation_DroppedKeyRemovedAfterGrace(t *testing.T) {
	b := newBucket(t)
	k1, k2 := edKey(t, "k1", nil), edKey(t, "k2", nil)
	p := newIDP(t, "", k1, k2)
	is := tokenIssuer(p)
	is.MaxTokenLifetime = 10 * time.Minute
	c := newClock()
	f := newFed(t, b, c, nil, is)
	refresh(t, f, is.URL)

	p.set(func(p *idp) { p.keys = []json.RawMessage{k1} })
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[k1 k2]" {
		t.Fatalf("right after the drop: %s, want both", got)
	}
	if _, _, ok := f.Key(is.URL, "k2"); ok {
		t.Error("Key serves the dropped key")
	}
	c.Advance(10*time.Minute - time.Second)
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[k1 k2]" {
		t.Fatalf("within the grace period: %s, want both", got)
	}
	c.Advance(time.Second)
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[k1]" {
		t.Fatalf("after the grace period: %s, want [k1]", got)
	}

	// A key back before its grace ends is not removed.
	k3 := edKey(t, "k3", nil)
	p.set(func(p *idp) { p.keys = []json.RawMessage{k1, k3} })
	refresh(t, f, is.URL)
	p.set(func(p *idp) { p.keys = []json.RawMessage{k1} })
	refresh(t, f, is.URL)
	c.Advance(5 * time.Minute)
	p.set(func(p *idp) { p.keys = []json.RawMessage{k1, k3} })
	refresh(t, f, is.URL)
	p.set(func(p *idp) { p.keys = []json.RawMessage{k1} })
	c.Advance(5 * time.Minute)
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[k1 k3]" {
		t.Fatalf("a key dropped again restarts its grace: %s, want [k1 k3]", got)
	}
}

func TestFederation_Replicas(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil), ecKey(t, "k2", nil), rsa2048Key(t, "k3", nil))
	is := tokenIssuer(p)
	c := newClock()
	f1 := newFed(t, b, c, nil, is)
	f2 := newFed(t, b, c, nil, is)
	refresh(t, f1, is.URL)
	before := b.revisions(t)
	if len(before) != 4 {
		t.Fatalf("entries = %v, want a trust entry and 3 keys", before)
	}
	refresh(t, f2, is.URL)
	c.Advance(time.Hour)
	refresh(t, f1, is.URL)
	refresh(t, f2, is.URL)
	if after := b.revisions(t); !maps.Equal(before, after) {
		t.Fatalf("revisions changed: %v, then %v", before, after)
	}

	// A changed configuration (a longer lifetime) is written once.
	is.MaxTokenLifetime = 2 * time.Hour
	f3 := newFed(t, b, c, nil, is)
	refresh(t, f3, is.URL)
	changed := b.revisions(t)
	for name, rev := range before {
		if changed[name] == rev {
			t.Errorf("%s not rewritten", name)
		}
	}
	refresh(t, f3, is.URL)
	if again := b.revisions(t); !maps.Equal(changed, again) {
		t.Fatalf("rewritten again: %v, then %v", changed, again)
	}
}

func TestFederation_RevokedKey(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil), edKey(t, "k2", nil))
	is := tokenIssuer(p)
	var revoked sync.Map
	f := newFed(t, b, newClock(), func(cfg *Config) {
		cfg.Revoked = func(iss, kid string) bool { _, ok := revoked.Load(iss + " " + kid); return ok }
	}, is)
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[k1 k2]" {
		t.Fatalf("published %s", got)
	}
	revoked.Store(is.URL+" k2", true)
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[k1]" {
		t.Fatalf("after revocation %s, want [k1]: removed at once", got)
	}
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[k1]" {
		t.Fatalf("published again: %s", got)
	}
	if _, _, ok := f.Key(is.URL, "k2"); ok {
		t.Error("Key serves a revoked key")
	}
}

func TestFederation_IssuerRemoved(t *testing.T) {
	b := newBucket(t)
	pa := newIDP(t, "/a", edKey(t, "a1", nil))
	pb := newIDP(t, "/b", edKey(t, "b1", nil), edKey(t, "b2", nil))
	pc := newIDP(t, "/c", edKey(t, "c1", nil))
	a, bi, ci := tokenIssuer(pa), tokenIssuer(pb), tokenIssuer(pc)
	c := newClock()
	old := newFed(t, b, c, nil, a, bi, ci)
	for _, is := range []Issuer{a, bi, ci} {
		refresh(t, old, is.URL)
	}
	if n := len(b.revisions(t)); n != 7 {
		t.Fatalf("%d entries, want 7", n)
	}

	// b is gone; c now only sends signals.
	ci.Tokens, ci.SSF = false, false
	f := newFed(t, b, c, nil, a, ci)
	if err := f.prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := kids(b.extKeys(t, a.URL)); got != "[a1]" || b.trust(t, a.URL) == nil {
		t.Errorf("a: keys %s, trust %v", got, b.trust(t, a.URL))
	}
	for _, is := range []Issuer{bi, ci} {
		if got := b.extKeys(t, is.URL); len(got) != 0 || b.trust(t, is.URL) != nil {
			t.Errorf("%s: keys %s and trust entry left", is.URL, kids(got))
		}
	}
	// A signals-only issuer's keys are still served to the signals receiver.
	if err := f.Refresh(context.Background(), ci.URL); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := f.Key(ci.URL, "c1"); !ok {
		t.Error("signals-only issuer's key not served")
	}
	if got := b.extKeys(t, ci.URL); len(got) != 0 {
		t.Errorf("signals-only issuer's keys published: %s", kids(got))
	}
}

func TestFederation_RotationOnKeyRequest(t *testing.T) {
	b := newBucket(t)
	k1 := ecKey(t, "k1", nil)
	p := newIDP(t, "", k1)
	is := tokenIssuer(p)
	c := newClock()
	f := newFed(t, b, c, nil, is)
	run(t, f)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if got := kids(b.extKeys(t, is.URL)); got != "[k1]" {
			return fmt.Errorf("published %s", got)
		}
		return nil
	})

	p.set(func(p *idp) { p.keys = []json.RawMessage{k1, ecKey(t, "k2", nil)} })
	c.Advance(DefaultMinPromptInterval)
	verifier := bustest.Connect(t, b.srv)
	req, _ := json.Marshal(bus.KeyRequest{Issuer: is.URL, Kid: "k2"})
	if err := verifier.NATS().Publish(bus.SubjectKeyRequest, req); err != nil {
		t.Fatal(err)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if got := kids(b.extKeys(t, is.URL)); got != "[k1 k2]" {
			return fmt.Errorf("published %s", got)
		}
		return nil
	})
	if _, _, ok := f.Key(is.URL, "k2"); !ok {
		t.Error("Key does not serve the new key")
	}
}

func TestFederation_KeyRequestFlood(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil))
	is := tokenIssuer(p)
	c := newClock()
	reader := sdkmetric.NewManualReader()
	f := newFed(t, b, c, func(cfg *Config) {
		cfg.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	}, is)
	run(t, f)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if status(f, is.URL).LastRefresh.IsZero() {
			return errors.New("not fetched yet")
		}
		return nil
	})
	verifier := bustest.Connect(t, b.srv)
	flood := func() {
		for i := range 1000 {
			req, _ := json.Marshal(bus.KeyRequest{Issuer: is.URL, Kid: rand.Text()})
			if i%100 == 0 {
				req, _ = json.Marshal(bus.KeyRequest{Issuer: "https://untrusted.example/" + rand.Text(), Kid: "x"})
			} else if i%100 == 1 {
				req = []byte("{not json")
			}
			if err := verifier.NATS().Publish(bus.SubjectKeyRequest, req); err != nil {
				t.Fatal(err)
			}
		}
		if err := verifier.NATS().Flush(); err != nil {
			t.Fatal(err)
		}
	}
	handled := func(n int64) {
		bustest.WaitFor(t, 20*time.Second, func() error {
			if got := f.requests.Load(); got != n {
				return fmt.Errorf("%d key requests handled, want %d", got, n)
			}
			return nil
		})
	}

	// Right after the first fetch: no request prompts another.
	flood()
	handled(1000)
	if got := f.prompted.Load(); got != 0 {
		t.Fatalf("%d refreshes prompted within the interval", got)
	}
	// An interval later: one does.
	c.Advance(DefaultMinPromptInterval)
	flood()
	handled(2000)
	if got := f.prompted.Load(); got != 1 {
		t.Fatalf("%d refreshes prompted, want 1", got)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if s := status(f, is.URL); !s.LastRefresh.Equal(c.Now()) {
			return fmt.Errorf("last refresh %s, want %s", s.LastRefresh, c.Now())
		}
		return nil
	})
	if got := p.jwksHits.Load(); got != 2 {
		t.Fatalf("key set fetched %d times, want 2", got)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := make(map[string]int64)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					v, _ := dp.Attributes.Value("outcome")
					got[m.Name+" "+v.AsString()] += dp.Value
				}
			case metricdata.Gauge[int64]:
				for _, dp := range d.DataPoints {
					v, _ := dp.Attributes.Value("issuer")
					got[m.Name+" "+v.AsString()] = dp.Value
				}
			}
		}
	}
	want := map[string]int64{
		"herald.federation.key_requests refresh":   1,
		"herald.federation.key_requests limited":   2000 - 1 - 40,
		"herald.federation.key_requests untrusted": 20,
		"herald.federation.key_requests malformed": 20,
		"herald.federation.keys " + is.URL:         1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("metrics = %v, want %v", got, want)
	}
}

func TestFederation_SignalKeys(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "/ssf", edKey(t, "k1", nil))
	p.set(func(p *idp) { p.ssfKeys = []json.RawMessage{ecKey(t, "s1", nil)} })
	is := Issuer{URL: p.issuer(), SSF: true}.WithDefaults()
	c := newClock()
	f := newFed(t, b, c, nil, is)
	refresh(t, f, is.URL)
	if p.jwksHits.Load() != 0 || p.ssfHits.Load() != 1 {
		t.Fatalf("jwks hits %d, ssf hits %d: want only the SSF key set read", p.jwksHits.Load(), p.ssfHits.Load())
	}
	k, pub, ok := f.Key(is.URL, "s1")
	if !ok || k.Alg != bus.AlgES256 || pub == nil {
		t.Fatalf("Key(s1) = %+v, %v", k, ok)
	}
	if got := b.revisions(t); len(got) != 0 {
		t.Fatalf("a signals-only issuer published %v", got)
	}
	if f.MaxLifetime() != 0 {
		t.Errorf("max lifetime %s without token issuers", f.MaxLifetime())
	}

	// Unknown kids prompt one refresh per interval.
	if _, _, ok := f.Key(is.URL, "s2"); ok {
		t.Fatal("unknown kid found")
	}
	if got := f.prompted.Load(); got != 0 {
		t.Fatalf("prompted %d right after a refresh", got)
	}
	c.Advance(DefaultMinPromptInterval)
	for range 100 {
		f.Key(is.URL, rand.Text())
	}
	if got := f.prompted.Load(); got != 1 {
		t.Fatalf("prompted %d, want 1", got)
	}

	// Both: a token issuer that also sends SETs has its keys of both sets.
	both := tokenIssuer(p)
	both.SSF = true
	both.MaxTokenLifetime = 3 * time.Hour
	f2 := newFed(t, b, c, nil, both)
	refresh(t, f2, both.URL)
	for _, kid := range []string{"k1", "s1"} {
		if _, _, ok := f2.Key(both.URL, kid); !ok {
			t.Errorf("Key(%s) not found", kid)
		}
	}
	if got := kids(b.extKeys(t, both.URL)); got != "[k1]" {
		t.Errorf("published %s: want the OpenID Connect key set only", got)
	}
	if f2.MaxLifetime() != 3*time.Hour {
		t.Errorf("max lifetime %s", f2.MaxLifetime())
	}
}

func TestNew_Refused(t *testing.T) {
	b := newBucket(t)
	is := Issuer{URL: "https://a.example", Tokens: true}.WithDefaults()
	for name, cfg := range map[string]Config{
		"no conn":    {Issuers: []Issuer{is}},
		"twice":      {Issuers: []Issuer{is, is}, Conn: b.conn},
		"bad issuer": {Issuers: []Issuer{{URL: "http://a.example"}}, Conn: b.conn},
		"bounds":     {Issuers: []Issuer{is}, Conn: b.conn, MinRefresh: time.Hour, MaxRefresh: time.Minute},
		"negative":   {Issuers: []Issuer{is}, Conn: b.conn, MinPromptInterval: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	f, err := New(Config{Conn: b.conn, Issuers: []Issuer{is}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Refresh(context.Background(), "https://b.example"); err == nil || !strings.Contains(err.Error(), "not a trusted issuer") {
		t.Errorf("refresh of an unknown issuer: %v", err)
	}
}

func TestFederation_Schedule(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil))
	is := tokenIssuer(p)
	// The real clock, and a schedule of milliseconds: the loop refreshes
	// on its own.
	f, err := New(Config{Issuers: []Issuer{is}, Conn: b.conn, Log: slog.New(slog.DiscardHandler),
		MinRefresh: 10 * time.Millisecond, MaxRefresh: 10 * time.Millisecond, Refresh: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	run(t, f)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if n := p.jwksHits.Load(); n < 3 {
			return fmt.Errorf("%d fetches", n)
		}
		return nil
	})
	before := b.revisions(t)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if n := p.jwksHits.Load(); n < 6 {
			return fmt.Errorf("%d fetches", n)
		}
		return nil
	})
	if after := b.revisions(t); !maps.Equal(before, after) {
		t.Errorf("unchanged keys rewritten: %v, then %v", before, after)
	}
}

func TestFederation_BusDownKeepsKeys(t *testing.T) {
	b := newBucket(t)
	p := newIDP(t, "", edKey(t, "k1", nil))
	is := tokenIssuer(p)
	f := newFed(t, b, newClock(), func(cfg *Config) { cfg.BusTimeout = 200 * time.Millisecond }, is)
	refresh(t, f, is.URL)
	b.srv.Shutdown()
	p.set(func(p *idp) { p.keys = append(p.keys, edKey(t, "k2", nil)) })
	if err := f.Refresh(context.Background(), is.URL); err == nil {
		t.Fatal("refresh succeeded with the bus down")
	}
	s := status(f, is.URL)
	if s.LastError == "" || s.NextRefresh.Sub(s.ErrorSince) != DefaultRetryMin {
		t.Errorf("status = %+v", s)
	}
	// The fetched keys are served to the signals receiver all the same.
	if _, _, ok := f.Key(is.URL, "k2"); !ok {
		t.Error("Key(k2) not found")
	}
}

func TestFederation_UnusableKeysNotPublished(t *testing.T) {
	b := newBucket(t)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p := newIDP(t, "", rawKey(t, weak.Public(), "weak", nil), ecKey(t, "leak", map[string]any{"d": "AAAA"}),
		ecKey(t, "p384", map[string]any{"crv": "P-384"}), edKey(t, "good", nil))
	is := tokenIssuer(p)
	f := newFed(t, b, newClock(), nil, is)
	refresh(t, f, is.URL)
	if got := kids(b.extKeys(t, is.URL)); got != "[good]" {
		t.Fatalf("published %s, want [good]", got)
	}
	s := status(f, is.URL)
	if s.Keys != 1 || len(s.Skipped) != 3 {
		t.Fatalf("status = %+v", s)
	}
	for i, want := range []string{`"weak"`, `"leak"`, `"p384"`} {
		if !strings.Contains(s.Skipped[i], want) {
			t.Errorf("skipped[%d] = %s, want %s", i, s.Skipped[i], want)
		}
	}
}
