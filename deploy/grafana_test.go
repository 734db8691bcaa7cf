package deploy

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// exported lists the metric families Herald exports on /metrics (see
// verifier/telemetry.go and issuer/telemetry.go; verifier/metrics_test.go
// checks the exporter's names).
var exported = map[string]bool{
	"herald_ready": true, "herald_stale": true, "herald_denylist_entries": true, "herald_outbox_pending": true,
	"herald_propagation_lag_seconds": true, "herald_stream_lag": true, "herald_verify_duration_seconds": true,
	"herald_verify_cache_hits_total": true, "herald_verify_cache_misses_total": true, "herald_revocations_total": true,
	"herald_tokens_issued_total": true, "herald_bus_staleness_milliseconds": true, "herald_stream_applied": true,
	"herald_stream_gaps_total": true, "herald_verify_cache_entries": true, "herald_live_requests": true,
	"herald_live_revoked_total": true,
}

// TestGrafanaDashboard checks that the dashboard is valid JSON, that every
// query uses metrics Herald exports or names the recording rules of
// prometheus/ record, and that it reads every quantity a recording rule
// records by that name.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/herald-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if d.Title == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard %q has %d panels", d.Title, len(d.Panels))
	}
	rec := recorded(readRules(t))
	used := make(map[string]bool)
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range exprNames(tg.Expr) {
				if strings.Contains(m, ":") {
					if _, ok := rec[m]; !ok {
						t.Errorf("panel %q queries %s, which no recording rule in prometheus/ records", p.Title, m)
					}
					used[m] = true
					continue
				}
				for _, suffix := range []string{"_bucket", "_count", "_sum"} {
					if base, ok := strings.CutSuffix(m, suffix); ok && exported[base] {
						m = base
					}
				}
				if !exported[m] {
					t.Errorf("panel %q queries %s, which Herald does not export", p.Title, m)
				}
			}
			// What a recording rule records, the dashboard reads by its
			// name: the same quantity under one name, on the dashboard
			// and in the alerts.
			q := normalizeExpr(tg.Expr)
			for name, expr := range rec {
				if strings.Contains(q, normalizeExpr(expr)) {
					t.Errorf("panel %q computes %s itself; query the recorded name", p.Title, name)
				}
			}
		}
	}
	alerts := ""
	for _, r := range readRules(t) {
		alerts += " " + r.Expr
	}
	for name := range rec {
		if !used[name] && !slices.Contains(exprNames(alerts), name) {
			t.Errorf("recording rule %s is read by neither the dashboard nor an alert", name)
		}
	}
}

// normalizeExpr is a PromQL expression without spaces and with the
// dashboard's rate window for the rules' 5 minutes, for comparison.
func normalizeExpr(expr string) string {
	expr = strings.ReplaceAll(expr, "[5m]", "[$__rate_interval]")
	return strings.Join(strings.Fields(expr), "")
}
