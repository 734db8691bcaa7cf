package sidecar

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
)

// TestSidecar_Heartbeat: a sidecar reports itself to HERALD_VERIFIERS,
// creating the bucket, with what it applied; its id survives a restart;
// it leaves the fleet when it stops.
func TestSidecar_Heartbeat(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	dir := t.TempDir()
	cfg := Config{DataDir: dir, HeartbeatEvery: 50 * time.Millisecond, Version: "v-test"}
	sc, stop := startSidecarWith(t, conn, cfg)
	waitReady(t, sc)
	seq := revoke(t, conn, sc, bus.KindToken, "jti-hb", time.Now())

	hb := waitHeartbeat(t, conn, sc.ID(), func(h bus.Heartbeat) bool { return h.AppliedSeq == seq })
	host, _ := os.Hostname()
	if hb.Host != host || hb.Version != "v-test" || hb.StreamHead != seq || hb.Lag != 0 || !hb.Ready || hb.Stale ||
		hb.URL != sc.URL() || hb.EveryMS != 50 || !hb.Live(time.Now()) || hb.Denylist != 1 {
		t.Fatalf("heartbeat = %+v", hb)
	}
	id := sc.ID()
	if b, err := os.ReadFile(filepath.Join(dir, idFile)); err != nil || string(b) != id+"\n" {
		t.Fatalf("id file = %q, %v; want %q", b, err, id)
	}

	stop()
	bustest.WaitFor(t, 5*time.Second, func() error {
		list, err := conn.ListFleet(t.Context())
		if err != nil {
			return err
		}
		if len(list) != 0 {
			return fmt.Errorf("fleet still lists %+v", list)
		}
		return nil
	})

	sc, _ = startSidecarWith(t, conn, cfg)
	if sc.ID() != id {
		t.Fatalf("id after restart = %q, want %q", sc.ID(), id)
	}
	waitHeartbeat(t, conn, id, func(h bus.Heartbeat) bool { return h.Ready })
}

func waitHeartbeat(t *testing.T, conn *bus.Conn, id string, ok func(bus.Heartbeat) bool) bus.Heartbeat {
	t.Helper()
	var got bus.Heartbeat
	bustest.WaitFor(t, 5*time.Second, func() error {
		list, err := conn.ListFleet(t.Context())
		if err != nil {
			return err
		}
		for _, h := range list {
			if h.ID == id && ok(h) {
				got = h
				return nil
			}
		}
		return fmt.Errorf("no matching heartbeat of %s in %+v", id, list)
	})
	return got
}

func TestSidecar_Config(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	dir := t.TempDir()
	bad := []Config{
		{},
		{DataDir: dir, OnStale: "maybe"},
		{DataDir: dir, MaxStaleness: time.Millisecond},
		{DataDir: dir, ID: "has space"},
		{DataDir: dir, Upstream: "ftp://x"},
		{DataDir: dir, Upstream: "http://"},
		{DataDir: dir, Upstream: "http://user:pw@app"},
	}
	for _, cfg := range bad {
		cfg.Verifier = verifier.Config{Issuer: testIssuer, Audience: testAudience}
		cfg.HTTPAddr = "127.0.0.1:0"
		if sc, err := Open(cfg, conn); err == nil {
			sc.Close()
			t.Errorf("Open(%+v): want error", cfg)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, idFile), []byte("not valid!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Verifier: verifier.Config{Issuer: testIssuer, Audience: testAudience}, DataDir: dir, HTTPAddr: "127.0.0.1:0"}, conn); err == nil {
		t.Error("Open with a corrupt id file: want error")
	}
}
