package bus_test

import (
	"crypto"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/nats-io/nats.go"
)

// BenchmarkPublish is the rate of acknowledged, fsynced JetStream publishes
// of one event each, from many goroutines: the ceiling for anything that
// answers after its events are acknowledged.
func BenchmarkPublish(b *testing.B) {
	s := bustest.RunServer(b)
	c := bustest.Setup(b, s, time.Hour)
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			e := &bus.Event{ID: bus.NewID(), Type: bus.TypeTokenIssued, Time: now, Actor: "bench",
				Token: &bus.Token{ID: bus.NewID(), Subject: "bench", KeyID: "k", IssuedAt: now, Expires: now.Add(time.Minute)}}
			if _, err := c.Publish(b.Context(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkOpenEvent is what a verifier pays per revocation to check its
// signature (OpenEvent) against decoding it alone (Decode), the baseline
// in the same run.
func BenchmarkOpenEvent(b *testing.B) {
	signer := bustest.Signer(b)
	now := time.Now()
	e := &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "bench",
		Revocation: &bus.Revocation{Kind: bus.KindSession, Value: "J6zLn4A5q6wk36_rPR16Fw", Reason: "bench", At: now, Until: now.Add(time.Hour)}}
	payload, sig, err := signer.SignEvent(e)
	if err != nil {
		b.Fatal(err)
	}
	d := bus.Delivery{Subject: e.Subject(), Header: nats.Header{bus.HeaderSignature: []string{sig}}, Data: payload}
	keys := func(kid string) (bus.JWK, crypto.PublicKey, bool) {
		return signer.JWK(), bustest.EventKey(b).Public(), kid == signer.KeyID()
	}
	b.Run("Decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := bus.Decode(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("OpenEvent", func(b *testing.B) {
		for b.Loop() {
			if _, err := bus.OpenEvent(d, bus.StreamRevocations, keys); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SignEvent", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := signer.SignEvent(e); err != nil {
				b.Fatal(err)
			}
		}
	})
}
