package natsserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/internal/secretfile"
)

// deniedWait is how long a test waits on an operation the server denies:
// nats-server drops a denied publish or request, so the client's request
// waits out its timeout rather than getting an answer.
const deniedWait = 150 * time.Millisecond

// deniedCtx returns a context for an operation that should be denied.
func deniedCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), deniedWait)
	t.Cleanup(cancel)
	return ctx
}

// syncLog collects log lines written concurrently.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// connectLogged connects as role like bustest.ConnectAs, logging into the
// returned log, where nats.go's reports of denied operations land.
func connectLogged(t *testing.T, s *natsserver.Server, files natsserver.AuthFiles, role bus.Role) (*bus.Conn, *syncLog) {
	t.Helper()
	logs := &syncLog{}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{URL: s.ClientURL(), Name: t.Name() + "-" + string(role),
		Logger: slog.New(slog.NewTextHandler(logs, nil)), InboxPrefix: role.InboxPrefix(),
		NkeyFile: files.SeedFile(role), CAFile: files.CAFile()})
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(c.Close)
	c.SetSigner(bustest.Signer(t)) // what it may publish is up to its role
	return c, logs
}

// secureSetup runs a secured server with Herald's streams and buckets,
// one revocation in HERALD, one event in HERALD_AUDIT, one key in
// HERALD_KEYS, and returns the issuer's connection.
func secureSetup(t *testing.T) (*natsserver.Server, natsserver.AuthFiles, *bus.Conn) {
	t.Helper()
	s, files := bustest.RunSecureServer(t)
	iss := bustest.ConnectAs(t, s, files, bus.RoleIssuer)
	if err := iss.EnsureStreams(t.Context(), bus.StreamConfig{RevocationMaxAge: bustest.RevocationMaxAge}); err != nil {
		t.Fatal(err)
	}
	if err := iss.EnsureFleet(t.Context(), bus.FleetConfig{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	bustest.Publish(t, iss, bustest.Revocation("jti-1"))
	if _, err := iss.JetStream().Publish(t.Context(), bus.SubjectKeyPrefix+"published", []byte(`{"type":"key.published"}`)); err != nil {
		t.Fatal(err)
	}
	kv, err := iss.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "kid-1", []byte(`{"kty":"OKP"}`)); err != nil {
		t.Fatal(err)
	}
	return s, files, iss
}

// subscriptions returns the subjects the server holds subscriptions on
// for the connection named name: a denied subscription is not among them.
func subscriptions(t *testing.T, s *natsserver.Server, name string) []string {
	t.Helper()
	cz, err := s.NATS().Connz(&server.ConnzOptions{Subscriptions: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cz.Conns {
		if c.Name == name {
			return c.Subs
		}
	}
	t.Fatalf("no connection named %s", name)
	return nil
}

// checkDenied checks that the server refused an operation: it failed
// (err), and the server reported to the client a permissions violation
// for a publish to a subject starting with subject, so it failed for
// want of permission and not for another reason.
func checkDenied(t *testing.T, logs *syncLog, what string, err error, subject string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: allowed, want denied", what)
		return
	}
	// slog's text handler escapes the quotes of the error message.
	want := `Permissions Violation for Publish to \"` + subject
	bustest.WaitFor(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), want) {
			return fmt.Errorf("%s failed (%v) without a permissions violation for %s", what, err, subject)
		}
		return nil
	})
}

// receive returns the next value of ch, failing the test after 10 s.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received after 10s")
		panic("unreachable")
	}
}

// announcements returns a channel of the heartbeats c sees announced; it
// never blocks the subscription.
func announcements(t *testing.T, c *bus.Conn) <-chan bus.Heartbeat {
	t.Helper()
	ch := make(chan bus.Heartbeat, 16)
	stop, err := c.WatchAnnouncements(func(h bus.Heartbeat) {
		select {
		case ch <- h:
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ch
}

// checkAllowed checks that everything c did so far was allowed: the server
// reported no permissions violation.
func checkAllowed(t *testing.T, c *bus.Conn, logs *syncLog, who string) {
	t.Helper()
	if err := c.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "Permissions Violation") {
		t.Fatalf("%s was denied its own work:\n%s", who, logs)
	}
}

// checkCannotSubscribe tries to subscribe c, named name, to subject and
// checks that the server holds no such subscription.
func checkCannotSubscribe(t *testing.T, s *natsserver.Server, c *bus.Conn, name, subject string) {
	t.Helper()
	if _, err := c.NATS().Subscribe(subject, func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := c.NATS().Flush(); err != nil {
		t.Fatal(err)
	}
	if subs := subscriptions(t, s, name); slices.Contains(subs, subject) {
		t.Errorf("%s subscribed to %s: %v", name, subject, subs)
	}
}

// firstKey returns the key of the first entry a watch of kv delivers.
func firstKey(t *testing.T, kv jetstream.KeyValue) string {
	t.Helper()
	w, err := kv.WatchAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	e := receive(t, w.Updates())
	if e == nil {
		return ""
	}
	return e.Key()
}

func head(t *testing.T, c *bus.Conn) uint64 {
	t.Helper()
	_, last, err := c.StreamHead(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

func TestAuthFiles_MadeOnceThenReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), natsserver.AuthDir)
	now := time.Now()
	files, written, err := natsserver.EnsureAuthFiles(dir, natsserver.CertHosts("127.0.0.1:4222"), now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ca-key.pem", "ca.pem", "server-key.pem", "server.pem", "issuer.nk", "verifier.nk", "dashboard.nk"}
	if !slices.Equal(written, want) {
		t.Fatalf("written %v, want %v", written, want)
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("%s: %v, mode %v; want 0700", dir, err, fi.Mode().Perm())
	}
	before := map[string][]byte{}
	for _, name := range want {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", p, err, fi.Mode().Perm())
		}
		before[name], _ = os.ReadFile(p)
	}
	for _, r := range bus.Roles() {
		if !files.Exist(r) {
			t.Errorf("Exist(%s) = false", r)
		}
		if !bytes.HasPrefix(before[string(r)+".nk"], []byte("SU")) {
			t.Errorf("%s.nk is not an nkey user seed", r)
		}
	}

	// A restart reuses everything.
	_, written, err = natsserver.EnsureAuthFiles(dir, natsserver.CertHosts("127.0.0.1:4222"), now.Add(time.Hour))
	if err != nil || len(written) != 0 {
		t.Fatalf("second start: wrote %v (%v), want nothing", written, err)
	}
	// Another listen host, or a certificate close to its end, gets a new
	// server certificate from the same CA; the CA and the seeds stay.
	for _, tt := range []struct {
		name   string
		listen string
		now    time.Time
	}{
		{"new host", "10.1.2.3:4222", now},
		{"expiring", "127.0.0.1:4222", now.Add(340 * 24 * time.Hour)},
	} {
		_, written, err = natsserver.EnsureAuthFiles(dir, natsserver.CertHosts(tt.listen), tt.now)
		if err != nil || !slices.Equal(written, []string{"server-key.pem", "server.pem"}) {
			t.Fatalf("%s: wrote %v (%v), want the server certificate only", tt.name, written, err)
		}
	}
	for _, name := range []string{"ca.pem", "ca-key.pem", "issuer.nk", "verifier.nk", "dashboard.nk"} {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, before[name]) {
			t.Errorf("%s changed", name)
		}
	}
}

func TestAuthFiles_RefusesOpenOrBadFiles(t *testing.T) {
	hosts := natsserver.CertHosts("127.0.0.1:4222")
	tests := []struct {
		name   string
		change func(dir string) error
		want   string
	}{
		{"seed readable by others", func(dir string) error { return os.Chmod(filepath.Join(dir, "verifier.nk"), 0o644) }, "readable by others"},
		{"CA key readable by others", func(dir string) error { return os.Chmod(filepath.Join(dir, "ca-key.pem"), 0o640) }, "readable by others"},
		{"directory open to others", func(dir string) error { return os.Chmod(dir, 0o755) }, "open to others"},
		{"not a seed", func(dir string) error {
			return secretfile.Write(filepath.Join(dir, "issuer.nk"), []byte("not a seed\n"))
		}, "issuer.nk"},
		{"an account seed, not a user's", func(dir string) error {
			kp, _ := nkeys.CreateAccount()
			seed, _ := kp.Seed()
			return secretfile.Write(filepath.Join(dir, "dashboard.nk"), seed)
		}, "not a user seed"},
		{"key of another certificate", func(dir string) error {
			other := filepath.Join(t.TempDir(), "other")
			if _, _, err := natsserver.EnsureAuthFiles(other, hosts, time.Now()); err != nil {
				return err
			}
			b, _ := os.ReadFile(filepath.Join(other, "server-key.pem"))
			return secretfile.Write(filepath.Join(dir, "server-key.pem"), b)
		}, "server certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), natsserver.AuthDir)
			if _, _, err := natsserver.EnsureAuthFiles(dir, hosts, time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := tt.change(dir); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadDir(dir)
			_, written, err := natsserver.EnsureAuthFiles(dir, hosts, time.Now())
			if err == nil || !strings.Contains(err.Error(), tt.want) || len(written) != 0 {
				t.Fatalf("EnsureAuthFiles = %v, wrote %v; want an error naming %q and nothing written", err, written, tt.want)
			}
			if after, _ := os.ReadDir(dir); len(after) != len(before) {
				t.Fatalf("files %d before, %d after", len(before), len(after))
			}
		})
	}
}

// TestSecureServer_RefusesUnauthenticated: without TLS, with another CA,
// without an nkey or with an unknown one, the server refuses the client.
func TestSecureServer_RefusesUnauthenticated(t *testing.T) {
	s, files := bustest.RunSecureServer(t)
	other, _, err := natsserver.EnsureAuthFiles(filepath.Join(t.TempDir(), "other"), natsserver.CertHosts("127.0.0.1:0"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  bus.Config
		want string
	}{
		{"no credential, no CA", bus.Config{}, "certificate signed by unknown authority"},
		{"no credential", bus.Config{CAFile: files.CAFile()}, "authorization violation"},
		{"another CA", bus.Config{CAFile: other.CAFile(), NkeyFile: files.SeedFile(bus.RoleIssuer)}, "certificate signed by unknown authority"},
		{"unknown nkey", bus.Config{CAFile: files.CAFile(), NkeyFile: other.SeedFile(bus.RoleIssuer)}, "authorization violation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			tt.cfg.URL = s.ClientURL()
			c, err := bus.Connect(ctx, tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("connected, want refused")
			}
			if !strings.Contains(strings.ToLower(err.Error()), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	c := bustest.ConnectAs(t, s, files, bus.RoleIssuer)
	if !c.Connected() {
		t.Fatal("the issuer's credential: not connected")
	}
}

// TestSecureServer_VerifierRole: a verifier credential follows HERALD,
// reads and watches the keys, reports its heartbeat and announces it,
// without a single permissions violation; it cannot publish a revocation,
// write a key, change, purge or delete a stream, read HERALD_AUDIT, list
// the fleet, or subscribe to the event subjects.
func TestSecureServer_VerifierRole(t *testing.T) {
	s, files, iss := secureSetup(t)
	v, logs := connectLogged(t, s, files, bus.RoleVerifier)

	// What a verifier does.
	col, stop := bustest.Follow(t, v, 0)
	col.WaitLen(t, 1)
	stop()
	kv, err := v.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(t.Context(), "kid-1"); err != nil || string(e.Value()) != `{"kty":"OKP"}` {
		t.Fatalf("get key: %v", err)
	}
	if got := firstKey(t, kv); got != "kid-1" {
		t.Fatalf("watch keys: %q, want kid-1", got)
	}
	fleet, err := v.OpenFleet(t.Context(), true, bus.FleetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	announced := announcements(t, iss)
	hb := &bus.Heartbeat{ID: "v-1", AppliedSeq: 1, Time: time.Now()}
	if err := fleet.Beat(t.Context(), hb); err != nil {
		t.Fatalf("own heartbeat: %v", err)
	}
	if err := v.Announce(hb); err != nil {
		t.Fatal(err)
	}
	if h := receive(t, announced); h.ID != "v-1" {
		t.Fatalf("announcement %+v", h)
	}
	if list, err := iss.ListFleet(t.Context()); err != nil || len(list) != 1 || list[0].ID != "v-1" {
		t.Fatalf("fleet seen by the issuer: %+v, %v", list, err)
	}
	if err := fleet.Leave(t.Context(), "v-1"); err != nil {
		t.Fatal(err)
	}
	// Cookie sessions: claim a refresh, publish its result, watch it.
	if err := iss.EnsureRefreshRelay(t.Context(), bus.RefreshRelayConfig{}); err != nil {
		t.Fatal(err)
	}
	bff, err := v.RefreshRelay(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	claim, err := bff.Create(t.Context(), "claim-1", []byte("claimed"))
	if err != nil {
		t.Fatalf("claim a refresh: %v", err)
	}
	if _, err := bff.Update(t.Context(), "claim-1", []byte("result"), claim); err != nil {
		t.Fatalf("publish a refresh result: %v", err)
	}
	w, err := bff.Watch(t.Context(), "claim-1")
	if err != nil {
		t.Fatalf("watch a claim: %v", err)
	}
	select {
	case e := <-w.Updates():
		if e == nil || string(e.Value()) != "result" {
			t.Fatalf("watched %v, want the result", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no update from the claim's watch")
	}
	w.Stop()
	// Snapshots: read the chunks the issuer published.
	if _, err := iss.Publish(t.Context(), bus.SnapshotChunks(bus.NewID(), 1, time.Time{}, nil, "test", time.Now())[0]); err != nil {
		t.Fatal(err)
	}
	chunks := 0
	if err := v.Read(t.Context(), bus.StreamSnapshots, bus.ReadOptions{}, func(bus.Delivery) bool { chunks++; return true }); err != nil || chunks != 1 {
		t.Fatalf("read snapshots: %d chunks, %v; want 1", chunks, err)
	}
	checkAllowed(t, v, logs, "the verifier")

	// What a stolen verifier credential cannot do.
	before := head(t, iss)
	_, err = v.Publish(deniedCtx(t), bustest.Revocation("forged"))
	checkDenied(t, logs, "publish a revocation", err, bus.SubjectRevokePrefix)
	_, err = v.Publish(deniedCtx(t), bus.SnapshotChunks(bus.NewID(), 1, time.Time{}, nil, "forged", time.Now())[0])
	checkDenied(t, logs, "publish a snapshot", err, bus.SubjectSnapshotPrefix)
	_, err = kv.Put(deniedCtx(t), "forged-kid", []byte(`{"kty":"OKP"}`))
	checkDenied(t, logs, "write a key", err, bus.SubjectKVPrefix(bus.BucketKeys))
	js := v.JetStream()
	rev, err := js.Stream(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	checkDenied(t, logs, "purge HERALD", rev.Purge(deniedCtx(t)), "$JS.API.STREAM.PURGE.HERALD")
	checkDenied(t, logs, "delete a revocation", rev.DeleteMsg(deniedCtx(t), 1), "$JS.API.STREAM.MSG.DELETE.HERALD")
	checkDenied(t, logs, "delete HERALD", js.DeleteStream(deniedCtx(t), bus.StreamRevocations), "$JS.API.STREAM.DELETE.HERALD")
	cfg := rev.CachedInfo().Config
	cfg.MaxAge = time.Second
	_, err = js.UpdateStream(deniedCtx(t), cfg)
	checkDenied(t, logs, "shorten HERALD's retention", err, "$JS.API.STREAM.UPDATE.HERALD")
	checkDenied(t, logs, "delete HERALD_KEYS", js.DeleteKeyValue(deniedCtx(t), bus.BucketKeys), "$JS.API.STREAM.DELETE.KV_HERALD_KEYS")
	_, err = js.CreateStream(deniedCtx(t), jetstream.StreamConfig{Name: "EVIL", Subjects: []string{"evil.>"}})
	checkDenied(t, logs, "create a stream", err, "$JS.API.STREAM.CREATE.EVIL")
	checkDenied(t, logs, "read HERALD_AUDIT", v.Read(deniedCtx(t), bus.StreamAudit, bus.ReadOptions{}, func(bus.Delivery) bool { return true }),
		"$JS.API.CONSUMER.CREATE.HERALD_AUDIT")
	_, err = fleet.List(deniedCtx(t))
	checkDenied(t, logs, "list the fleet", err, "$JS.API.CONSUMER.CREATE.KV_HERALD_VERIFIERS")
	checkCannotSubscribe(t, s, v, t.Name()+"-verifier", bus.SubjectRevokePrefix+">")

	if got := head(t, iss); got != before {
		t.Errorf("HERALD head %d after the denied attempts, want %d", got, before)
	}
	ikv, err := iss.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ikv.Get(t.Context(), "forged-kid"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("forged key: %v, want not found", err)
	}
	if info := bustest.StreamInfo(t, iss, bus.StreamRevocations); info.State.Msgs != 1 || info.Config.MaxAge != bustest.RevocationMaxAge {
		t.Errorf("HERALD holds %d messages, max age %s; want 1, %s", info.State.Msgs, info.Config.MaxAge, bustest.RevocationMaxAge)
	}
	for _, name := range []string{"EVIL", "KV_" + bus.BucketKeys} {
		_, err := iss.JetStream().Stream(t.Context(), name)
		if exists := err == nil; exists != (name != "EVIL") {
			t.Errorf("stream %s exists: %v", name, exists)
		}
	}
}

// TestSecureServer_DashboardRole: a dashboard credential reads both
// streams, the keys and a verifier's heartbeat, and follows the fleet's
// announcements, but writes nothing and subscribes to no event subject.
func TestSecureServer_DashboardRole(t *testing.T) {
	s, files, iss := secureSetup(t)
	v := bustest.ConnectAs(t, s, files, bus.RoleVerifier)
	fleet, err := v.OpenFleet(t.Context(), false, bus.FleetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.Beat(t.Context(), &bus.Heartbeat{ID: "v-1", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	d, logs := connectLogged(t, s, files, bus.RoleDashboard)

	for _, stream := range []string{bus.StreamRevocations, bus.StreamAudit} {
		n := 0
		if err := d.Read(t.Context(), stream, bus.ReadOptions{}, func(bus.Delivery) bool { n++; return true }); err != nil || n != 1 {
			t.Fatalf("read %s: %d events, %v; want 1", stream, n, err)
		}
	}
	kv, err := d.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := firstKey(t, kv); got != "kid-1" {
		t.Fatalf("watch keys: %q, want kid-1", got)
	}
	hkv, err := d.JetStream().KeyValue(t.Context(), bus.BucketVerifiers)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := hkv.Get(t.Context(), "v-1"); err != nil || !bytes.Contains(e.Value(), []byte(`"id":"v-1"`)) {
		t.Fatalf("a verifier's heartbeat: %v", err)
	}
	announced := announcements(t, d)
	if err := v.Announce(&bus.Heartbeat{ID: "v-1"}); err != nil {
		t.Fatal(err)
	}
	if h := receive(t, announced); h.ID != "v-1" {
		t.Fatalf("announcement %+v", h)
	}
	checkAllowed(t, d, logs, "the dashboard")

	before := head(t, iss)
	_, err = d.Publish(deniedCtx(t), bustest.Revocation("forged"))
	checkDenied(t, logs, "publish a revocation", err, bus.SubjectRevokePrefix)
	_, err = kv.Put(deniedCtx(t), "forged-kid", []byte(`{"kty":"OKP"}`))
	checkDenied(t, logs, "write a key", err, bus.SubjectKVPrefix(bus.BucketKeys))
	_, err = hkv.Put(deniedCtx(t), "v-2", []byte(`{"id":"v-2"}`))
	checkDenied(t, logs, "write a heartbeat", err, bus.SubjectKVPrefix(bus.BucketVerifiers))
	// A core publish is not answered: the refusal is only reported.
	if err := d.NATS().Publish(bus.SubjectFleetPrefix+"v-2", []byte(`{"id":"v-2"}`)); err != nil {
		t.Fatal(err)
	}
	checkDenied(t, logs, "announce", errors.New("not answered"), bus.SubjectFleetPrefix+"v-2")
	dfleet, err := d.OpenFleet(t.Context(), false, bus.FleetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dfleet.List(deniedCtx(t))
	checkDenied(t, logs, "watch the heartbeats", err, "$JS.API.CONSUMER.CREATE.KV_HERALD_VERIFIERS")
	rev, err := d.JetStream().Stream(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	checkDenied(t, logs, "purge HERALD", rev.Purge(deniedCtx(t)), "$JS.API.STREAM.PURGE.HERALD")
	checkDenied(t, logs, "delete HERALD_AUDIT", d.JetStream().DeleteStream(deniedCtx(t), bus.StreamAudit), "$JS.API.STREAM.DELETE.HERALD_AUDIT")
	checkCannotSubscribe(t, s, d, t.Name()+"-dashboard", "herald.>")
	if got := head(t, iss); got != before {
		t.Errorf("HERALD head %d after the denied attempts, want %d", got, before)
	}
	if list, err := iss.ListFleet(t.Context()); err != nil || len(list) != 1 {
		t.Errorf("fleet after the denied attempts: %+v, %v; want v-1 only", list, err)
	}
}

// TestSecureServer_PushConsumerFindsNoStreamSubject: a consumer's deliver
// subject is the creator's choice, and the server stores a delivery made
// on a stream's subject in that stream. It delivers only to a subject a
// client subscribes to by that very name, and no role but the issuer may
// subscribe to the event subjects: a verifier's push consumer aimed at
// herald.revoke.all finds no interest although verifier and dashboard
// tried to subscribe to it, where one aimed at herald.fleet.v-1, which
// the dashboard subscribes to, finds it.
func TestSecureServer_PushConsumerFindsNoStreamSubject(t *testing.T) {
	s, files, iss := secureSetup(t)
	target := bus.SubjectRevokePrefix + "all"
	d := bustest.ConnectAs(t, s, files, bus.RoleDashboard)
	v := bustest.ConnectAs(t, s, files, bus.RoleVerifier)
	for _, c := range []*bus.Conn{d, v} {
		for _, subject := range []string{target, bus.SubjectFleetPrefix + "v-1"} {
			if _, err := c.NATS().Subscribe(subject, func(*nats.Msg) {}); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.NATS().Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if subs := subscriptions(t, s, t.Name()+"-dashboard"); slices.Contains(subs, target) || !slices.Contains(subs, bus.SubjectFleetPrefix+"v-1") {
		t.Fatalf("dashboard subscriptions %v: want herald.fleet.v-1 and not %s", subs, target)
	}

	pushTo := func(subject string) bool {
		t.Helper()
		req := fmt.Sprintf(`{"stream_name":%q,"config":{"deliver_subject":%q,"ack_policy":"none","deliver_policy":"all"}}`,
			"KV_"+bus.BucketKeys, subject)
		m, err := v.NATS().Request("$JS.API.CONSUMER.CREATE.KV_"+bus.BucketKeys, []byte(req), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			PushBound bool `json:"push_bound"`
			Error     any  `json:"error"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Error != nil {
			t.Fatalf("create push consumer to %s: %s", subject, m.Data)
		}
		return resp.PushBound
	}
	before := head(t, iss)
	if pushTo(target) {
		t.Errorf("a push consumer to %s found interest", target)
	}
	if !pushTo(bus.SubjectFleetPrefix + "v-1") {
		t.Error("a push consumer to herald.fleet.v-1 found no interest: the check above proves nothing")
	}
	if got := head(t, iss); got != before {
		t.Errorf("HERALD head %d, want %d", got, before)
	}
}

// TestVerifierPermissions_ScopedToID: a verifier user made with
// VerifierPermissions(id), as `herald nats-permissions verifier --id`
// prints them for nsc, writes and removes its own heartbeat and announces
// as itself, but not as another verifier.
func TestVerifierPermissions_ScopedToID(t *testing.T) {
	seed := func(perms *server.Permissions) (string, *server.NkeyUser) {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		s, _ := kp.Seed()
		path := filepath.Join(t.TempDir(), "user.nk")
		if err := secretfile.Write(path, s); err != nil {
			t.Fatal(err)
		}
		return path, &server.NkeyUser{Nkey: pub, Permissions: perms}
	}
	issSeed, issUser := seed(nil)
	vSeed, vUser := seed(natsserver.VerifierPermissions("v-1"))
	ns := bustest.RunOptions(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Nkeys: []*server.NkeyUser{issUser, vUser}})
	connect := func(seed, inbox string, log *syncLog) *bus.Conn {
		t.Helper()
		c, err := bus.Connect(t.Context(), bus.Config{URL: ns.ClientURL(), NkeyFile: seed, InboxPrefix: inbox,
			Logger: slog.New(slog.NewTextHandler(log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	iss := connect(issSeed, "", &syncLog{})
	if err := iss.EnsureFleet(t.Context(), bus.FleetConfig{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	logs := &syncLog{}
	v := connect(vSeed, bus.VerifierInboxPrefix, logs)
	fleet, err := v.OpenFleet(t.Context(), false, bus.FleetConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.Beat(t.Context(), &bus.Heartbeat{ID: "v-1", Time: time.Now()}); err != nil {
		t.Fatalf("own heartbeat: %v", err)
	}
	checkDenied(t, logs, "another verifier's heartbeat", fleet.Beat(deniedCtx(t), &bus.Heartbeat{ID: "v-2", Time: time.Now()}),
		bus.SubjectKVPrefix(bus.BucketVerifiers)+"v-2")
	if err := v.Announce(&bus.Heartbeat{ID: "v-2"}); err != nil {
		t.Fatal(err)
	}
	checkDenied(t, logs, "announce as another verifier", errors.New("not answered"), bus.SubjectFleetPrefix+"v-2")
	if err := fleet.Leave(t.Context(), "v-1"); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if list, err := iss.ListFleet(t.Context()); err != nil || len(list) != 0 {
		t.Fatalf("fleet %+v (%v), want empty: v-2 never written, v-1 gone", list, err)
	}
}

// TestSecureServer_VerifierCannotCreateRefreshRelay: the verifiers use the
// cookie-session refresh relay, but only the issuer creates it. A verifier
// credential may not create its stream, which the JetStream API would let
// it configure at will (here: republishing into HERALD_KEYS), nor change
// it once the issuer has; it opens it and writes entries.
func TestSecureServer_VerifierCannotCreateRefreshRelay(t *testing.T) {
	s, files, iss := secureSetup(t)
	v, logs := connectLogged(t, s, files, bus.RoleVerifier)
	js := v.JetStream()
	relay := bus.BucketStream(bus.BucketRefreshRelay)

	_, err := js.CreateStream(deniedCtx(t), jetstream.StreamConfig{Name: relay,
		Subjects: []string{bus.SubjectKVPrefix(bus.BucketRefreshRelay) + ">"},
		RePublish: &jetstream.RePublish{Source: bus.SubjectKVPrefix(bus.BucketRefreshRelay) + "x",
			Destination: bus.SubjectKVPrefix(bus.BucketKeys) + "revoked.stolen"}})
	checkDenied(t, logs, "create the refresh relay's stream", err, "$JS.API.STREAM.CREATE."+relay)
	_, err = js.CreateKeyValue(deniedCtx(t), jetstream.KeyValueConfig{Bucket: bus.BucketRefreshRelay})
	checkDenied(t, logs, "create the refresh relay", err, "$JS.API.STREAM.CREATE."+relay)
	if _, err := v.RefreshRelay(t.Context()); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("open the refresh relay before the issuer made it: %v, want bucket not found", err)
	}

	if err := iss.EnsureRefreshRelay(t.Context(), bus.RefreshRelayConfig{}); err != nil {
		t.Fatal(err)
	}
	kv, err := v.RefreshRelay(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(t.Context(), "claim-1", []byte("claimed")); err != nil {
		t.Fatalf("claim a refresh: %v", err)
	}
	st, err := js.Stream(t.Context(), relay)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.MaxBytes = -1
	_, err = js.UpdateStream(deniedCtx(t), cfg)
	checkDenied(t, logs, "lift the refresh relay's limits", err, "$JS.API.STREAM.UPDATE."+relay)
	if info := bustest.StreamInfo(t, iss, relay); info.Config.MaxBytes != bus.DefaultRefreshRelayMaxBytes || info.Config.RePublish != nil {
		t.Errorf("the refresh relay holds %d bytes at most, republishes %+v; want %d, nothing",
			info.Config.MaxBytes, info.Config.RePublish, bus.DefaultRefreshRelayMaxBytes)
	}
}
