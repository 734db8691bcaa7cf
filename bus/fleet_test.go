package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

func TestFleet_BeatListExpire(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	ctx := t.Context()

	if got, err := conn.ListFleet(ctx); err != nil || len(got) != 0 {
		t.Fatalf("ListFleet before any bucket = %v, %v; want none", got, err)
	}
	if _, err := conn.OpenFleet(ctx, false, bus.FleetConfig{}); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("OpenFleet(create=false) = %v, want ErrBucketNotFound", err)
	}
	const ttl = time.Second
	f, err := conn.OpenFleet(ctx, true, bus.FleetConfig{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	// A second verifier opens the bucket the first created.
	f2, err := conn.OpenFleet(ctx, true, bus.FleetConfig{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, id := range []string{"v-b", "v-a"} {
		hb := &bus.Heartbeat{ID: id, Host: "h", Version: "dev", AppliedSeq: 7, StreamHead: 9, Lag: 2, Time: now, EveryMS: 200}
		if err := f.Beat(ctx, hb); err != nil {
			t.Fatal(err)
		}
	}
	if err := f2.Beat(ctx, &bus.Heartbeat{ID: "bad id"}); err == nil {
		t.Fatal("Beat with an invalid id: want error")
	}
	got, err := conn.ListFleet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "v-a" || got[1].ID != "v-b" {
		t.Fatalf("ListFleet = %+v, want v-a, v-b", got)
	}
	if h := got[0]; h.AppliedSeq != 7 || h.StreamHead != 9 || h.Lag != 2 || !h.Live(now) || h.Live(now.Add(time.Second)) {
		t.Fatalf("heartbeat = %+v (live now %v)", h, h.Live(now))
	}

	if err := f.Leave(ctx, "v-a"); err != nil {
		t.Fatal(err)
	}
	if got, err := f.List(ctx); err != nil || len(got) != 1 || got[0].ID != "v-b" {
		t.Fatalf("List after v-a left = %+v, %v; want v-b only", got, err)
	}
	// A verifier that stops reporting leaves with the bucket's TTL.
	bustest.WaitFor(t, 10*time.Second, func() error {
		got, err := f.List(ctx)
		if err != nil {
			return err
		}
		if len(got) != 0 {
			return fmt.Errorf("fleet still holds %d heartbeats", len(got))
		}
		return nil
	})

	// EnsureFleet updates the bucket the verifiers created.
	if err := conn.EnsureFleet(ctx, bus.FleetConfig{TTL: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	kv, err := conn.JetStream().KeyValue(context.Background(), bus.BucketVerifiers)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.TTL(); got != 5*time.Second {
		t.Fatalf("bucket TTL = %s, want 5s", got)
	}
}

func TestValidVerifierID(t *testing.T) {
	for id, want := range map[string]bool{
		"0f3a9c": true, "pod-7_x.y": true, "a=b": true,
		"": false, ".hidden": false, "a b": false, "a*b": false, "a>b": false,
		string(make([]byte, 129)): false,
	} {
		if got := bus.ValidVerifierID(id); got != want {
			t.Errorf("ValidVerifierID(%q) = %v, want %v", id, got, want)
		}
	}
}
