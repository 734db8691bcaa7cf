package sidecar

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// TestHandler_Metrics runs a sidecar with a real OpenTelemetry SDK and the
// Prometheus exporter, as cmd/herald sets them up, and reads /metrics.
func TestHandler_Metrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })

	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), MeterProvider: mp,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	waitReady(t, sc)

	tok := k.EdToken(t, baseClaims(time.Now()))
	for range 3 {
		get(t, sc.URL()+"/v1/verify", tok)
	}
	get(t, sc.URL()+"/v1/verify", "a.b.c")
	get(t, sc.URL()+"/v1/verify", "")
	now := time.Now()
	seq, err := conn.Publish(t.Context(), &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "t",
		Revocation: &bus.Revocation{Kind: bus.KindToken, Value: "j", At: now, Until: now.Add(time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.WaitApplied(t.Context(), seq); err != nil {
		t.Fatal(err)
	}

	resp, body := get(t, sc.URL()+"/metrics", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []string{
		`herald_verify_duration_seconds_count{[^}]*outcome="ok"[^}]*} 3`,
		`herald_verify_duration_seconds_count{[^}]*outcome="malformed"[^}]*} 1`,
		`herald_verify_duration_seconds_count{[^}]*outcome="missing_token"[^}]*} 1`,
		`herald_verify_cache_hits_total{[^}]*verifier="` + sc.ID() + `"[^}]*} 2`,
		`herald_denylist_entries{[^}]*} 1`,
		`herald_stream_lag{[^}]*} 0`,
		`herald_ready{[^}]*} 1`,
		`herald_stale{[^}]*} 0`,
		`herald_propagation_lag_seconds_count{[^}]*verifier="` + sc.ID() + `"[^}]*} 1`,
		// A fresh denylist on a bus without snapshots: one fallback, none unusable.
		`herald_snapshot_fallbacks_total{cause="none"[^}]*} 1`,
		`herald_snapshot_fallbacks_total{cause="unusable"[^}]*} 0`,
	} {
		if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(text) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", filterLines(text, "herald_"))
	}
}

func filterLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
