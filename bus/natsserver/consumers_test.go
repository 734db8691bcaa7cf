package natsserver_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// TestSecureServer_VerifierConsumersBounded: with the verifier nkey, an
// ordered consumer on HERALD works, but a durable one cannot be had: the
// durable-create API is denied, and a consumer named as durable through
// the create API is deleted once idle like any other; and the stream
// refuses consumers beyond its limit.
func TestSecureServer_VerifierConsumersBounded(t *testing.T) {
	s, files, iss := secureSetup(t)
	herald, err := iss.JetStream().Stream(t.Context(), bus.StreamRevocations)
	if err != nil {
		t.Fatal(err)
	}
	cfg := herald.CachedInfo().Config
	if cfg.MaxConsumers != bus.DefaultMaxConsumers || cfg.ConsumerLimits.InactiveThreshold != bus.ConsumerInactiveLimit {
		t.Fatalf("HERALD: at most %d consumers, idle at most %s; want %d and %s",
			cfg.MaxConsumers, cfg.ConsumerLimits.InactiveThreshold, bus.DefaultMaxConsumers, bus.ConsumerInactiveLimit)
	}
	v, logs := connectLogged(t, s, files, bus.RoleVerifier)

	col, stop := bustest.Follow(t, v, 0)
	col.WaitLen(t, 1)
	stop()

	_, err = v.NATS().Request("$JS.API.CONSUMER.DURABLE.CREATE.HERALD.mallory",
		[]byte(`{"stream_name":"HERALD","config":{"durable_name":"mallory","ack_policy":"explicit"}}`), deniedWait)
	checkDenied(t, logs, "create a durable consumer", err, "$JS.API.CONSUMER.DURABLE.CREATE.HERALD")

	js := v.JetStream()
	c, err := js.CreateConsumer(t.Context(), bus.StreamRevocations, jetstream.ConsumerConfig{Durable: "mallory2", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.InactiveThreshold; got <= 0 || got > bus.ConsumerInactiveLimit {
		t.Fatalf("a consumer created as durable is kept while idle for %s, want at most %s", got, bus.ConsumerInactiveLimit)
	}
	_, err = js.CreateConsumer(t.Context(), bus.StreamRevocations, jetstream.ConsumerConfig{Durable: "mallory3", InactiveThreshold: 365 * 24 * time.Hour})
	if err == nil {
		t.Fatal("a consumer kept a year while idle was created")
	}

	// A small limit, to reach it quickly.
	const limit = 8
	if err := iss.EnsureStreams(t.Context(), bus.StreamConfig{RevocationMaxAge: bustest.RevocationMaxAge, MaxConsumers: limit}); err != nil {
		t.Fatal(err)
	}
	created := 0
	for i := range 2 * limit {
		_, err := js.CreateConsumer(t.Context(), bus.StreamRevocations, jetstream.ConsumerConfig{Name: fmt.Sprintf("flood-%d", i)})
		if err != nil {
			if !errors.Is(err, jetstream.ErrMaximumConsumersLimit) {
				t.Logf("refused: %v", err)
			}
			break
		}
		created++
	}
	info, err := herald.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Consumers > limit {
		t.Fatalf("the verifier brought HERALD to %d consumers (%d of its own), limit %d", info.State.Consumers, created, limit)
	}
}
