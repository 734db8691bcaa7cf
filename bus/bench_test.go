package bus_test

import (
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
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
