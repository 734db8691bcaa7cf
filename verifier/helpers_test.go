package verifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/internal/tasks"
	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// The shared fixtures of package verifiertest, under the names these
// tests use.
type (
	testKeys = verifiertest.Keys
	dpopKey  = verifiertest.DPoPKey
)

const (
	testIssuer   = verifiertest.Issuer
	testAudience = verifiertest.Audience
)

var (
	newTestKeys       = verifiertest.NewKeys
	jwkOf             = verifiertest.JWKOf
	b64               = verifiertest.B64
	randomID          = verifiertest.RandomID
	baseClaims        = verifiertest.BaseClaims
	encodeJWT         = verifiertest.EncodeJWT
	signJWT           = verifiertest.SignJWT
	mustJSON          = verifiertest.MustJSON
	publishKey        = verifiertest.PublishKey
	publishRevocation = verifiertest.PublishRevocation
	newDPoPKey        = verifiertest.NewDPoPKey
)

// fixture is a real embedded NATS with Herald's streams, both test keys
// published in HERALD_KEYS, and a running core (keys, follower, verifier;
// no sidecar) that is ready.
type fixture struct {
	*testKeys
	srv  *natsserver.Server
	conn *bus.Conn
	dir  string
	sc   *core
	stop func()
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureMaxAge(t, 20*time.Minute)
}

func newFixtureMaxAge(t *testing.T, maxAge time.Duration) *fixture {
	t.Helper()
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, maxAge)
	f := &fixture{testKeys: newTestKeys(t), srv: s, conn: conn, dir: t.TempDir()}
	publishKey(t, conn, f.EdKid, f.EdJWK)
	publishKey(t, conn, f.EsKid, f.EsJWK)
	f.sc, f.stop = startCore(t, conn, f.dir)
	waitReady(t, f.sc)
	return f
}

// putKey adds the token key data (a JWK) to ks as the bucket would hold
// it: signed by the test event key, which ks then trusts.
func putKey(tb testing.TB, ks *KeySet, data []byte) error {
	tb.Helper()
	signer := bustest.Signer(tb)
	event, err := json.Marshal(signer.JWK())
	if err != nil {
		tb.Fatal(err)
	}
	if err := ks.Put(bus.EventKeyPrefix+signer.KeyID(), event); err != nil {
		tb.Fatalf("trust event key: %v", err)
	}
	jwk, _, err := bus.ParseJWK(data)
	if err != nil {
		return err
	}
	entry, err := signer.SignKey(jwk)
	if err != nil {
		tb.Fatal(err)
	}
	return ks.Put(jwk.Kid, entry)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// core is what a sidecar runs of the library, without its HTTP server,
// staleness policy or fleet: a denylist, a key set following HERALD_KEYS,
// a follower applying the revocation stream (ending the requests in
// flight its revocations match) and a verifier over them.
type core struct {
	conn     *bus.Conn
	db       *store.DB
	keys     *KeySet
	follower *Follower
	live     *LiveSet
	verifier *Verifier
}

// coreConfig is what a test chooses of a core: its data directory, and
// the event keys it pins (none: trust on first use).
type coreConfig struct {
	DataDir   string
	EventKeys []string
}

// coreProbeEvery is how often a core asks JetStream for the stream head,
// as a sidecar with the default maximum staleness does.
const coreProbeEvery = 2 * time.Second

// startCore opens a core on dir and runs it. The returned stop cancels it,
// waits for it and closes its denylist; it runs at cleanup if the test
// does not call it, and may be called more than once.
func startCore(t testing.TB, conn *bus.Conn, dir string) (*core, func()) {
	t.Helper()
	return startCoreWith(t, conn, coreConfig{DataDir: dir})
}

// startCoreWith is startCore with more of the config.
func startCoreWith(t testing.TB, conn *bus.Conn, cfg coreConfig) (*core, func()) {
	t.Helper()
	log := testLogger(t)
	db, err := OpenDenylist(filepath.Join(cfg.DataDir, "denylist"), log)
	if err != nil {
		t.Fatalf("open denylist: %v", err)
	}
	c := &core{conn: conn, db: db, live: NewLiveSet()}
	c.keys = NewKeySet(func(kid string) bool { return db.Contains(DenyKey(bus.KindKey, kid)) }, log)
	c.keys.TrustEventKeys(cfg.EventKeys...)
	c.keys.TrustRootKeys(testIssuer)
	c.follower = NewFollower(conn, db, c.keys, log, WithOnApply(func(revs []*bus.Revocation) { c.live.Revoke(revs) }))
	c.verifier, err = New(Config{Issuer: testIssuer, Audience: testAudience, Live: c.live}, c.keys, db, c.Ready)
	if err != nil {
		db.Close()
		t.Fatalf("new verifier: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	g := tasks.New(ctx)
	g.Go("keys", func(ctx context.Context) error { return c.keys.Watch(ctx, conn) })
	g.Go("revocations", c.follower.Run)
	g.Go("probe", func(ctx context.Context) error {
		tick := time.NewTicker(coreProbeEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				pctx, pcancel := context.WithTimeout(ctx, coreProbeEvery)
				_ = c.follower.Probe(pctx, false) // a failed probe is retried at the next tick
				pcancel()
			}
		}
	})
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("core run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("core run did not return after cancel")
				return
			}
			if err := db.Close(); err != nil {
				t.Errorf("close denylist: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// Verifier returns the core's verifier.
func (c *core) Verifier() *Verifier { return c.verifier }

// WaitReady blocks until the core is ready or ctx ends.
func (c *core) WaitReady(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !c.Ready() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Ready reports whether the keys are loaded and the denylist caught up.
func (c *core) Ready() bool { return c.keys.Loaded() && c.follower.CaughtUp() }

// WaitApplied blocks until the revocation with stream sequence seq is
// applied, or ctx ends.
func (c *core) WaitApplied(ctx context.Context, seq uint64) error {
	return c.follower.WaitApplied(ctx, seq)
}

// coreStatus is what tests read of a core's state.
type coreStatus struct {
	FollowerStatus
	Ready      bool
	KeysLoaded bool
	Keys       int
	EventKeys  []string
	Denylist   int
}

// Status returns a snapshot of the core's state.
func (c *core) Status() coreStatus {
	st := coreStatus{FollowerStatus: c.follower.Status(), KeysLoaded: c.keys.Loaded(), Keys: len(c.keys.Keys()),
		EventKeys: c.keys.EventKeys(), Denylist: c.db.Len()}
	if st.LastError == "" {
		st.LastError = c.keys.LastError()
	}
	st.Ready = st.KeysLoaded && st.CaughtUp
	return st
}

func waitReady(t *testing.T, sc *core) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := sc.Status(); !st.Ready {
			return fmt.Errorf("core not ready: %+v", st)
		}
		return nil
	})
}

// revoke publishes a revocation made at at and waits until sc has applied it.
func revoke(t *testing.T, conn *bus.Conn, sc *core, kind bus.Kind, value string, at time.Time) uint64 {
	t.Helper()
	seq := publishRevocation(t, conn, kind, value, at)
	if sc != nil {
		waitApplied(t, sc, seq)
	}
	return seq
}

func waitApplied(t *testing.T, sc *core, seq uint64) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if got := sc.Status().Applied; got < seq {
			return fmt.Errorf("applied %d, want %d", got, seq)
		}
		return nil
	})
}

// checkVerdict asserts that err wraps want (nil for success) and carries
// want's reason code.
func checkVerdict(t *testing.T, err error, want *Error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("Verify: %v (reason %s), want success", err, Reason(err))
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("Verify error = %v, want %v", err, want)
	}
	if got := Reason(err); got != want.Reason {
		t.Fatalf("Reason = %q, want %q", got, want.Reason)
	}
}
