package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// ruleFiles are the Prometheus rule files deploy/prometheus ships.
var ruleFiles = []string{"prometheus/herald-recording.yml", "prometheus/herald-alerts.yml"}

// promRule is one rule of a Prometheus rule file.
type promRule struct {
	Record string `json:"record"`
	Alert  string `json:"alert"`
	Expr   string `json:"expr"`
}

// readRules returns every rule of the rule files.
func readRules(t *testing.T) []promRule {
	t.Helper()
	var rules []promRule
	for _, f := range ruleFiles {
		var file struct {
			Groups []struct {
				Name  string     `json:"name"`
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		}
		readYAML(t, f, &file)
		if len(file.Groups) == 0 {
			t.Fatalf("%s has no rule groups", f)
		}
		for _, g := range file.Groups {
			rules = append(rules, g.Rules...)
		}
	}
	return rules
}

// recorded returns the names the recording rules record, with their
// expressions.
func recorded(rules []promRule) map[string]string {
	m := make(map[string]string)
	for _, r := range rules {
		if r.Record != "" {
			m[r.Record] = r.Expr
		}
	}
	return m
}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	// selector is a metric with one label matcher: name{label="value"}.
	selector = regexp.MustCompile(`(herald_[a-z0-9_]+)\{([a-z_]+)="([^"]*)"\}`)
	byClause = regexp.MustCompile(`\bby \(([a-z_, ]+)\)`)
)

// exprNames returns the metric and recorded names an expression reads:
// identifiers with a colon (recording rules) or starting herald_, and up.
func exprNames(expr string) []string {
	var names []string
	for _, id := range identifier.FindAllString(quoted.ReplaceAllString(expr, `""`), -1) {
		if strings.Contains(id, ":") || strings.HasPrefix(id, "herald_") || id == "up" {
			names = append(names, id)
		}
	}
	return names
}

// exposition is what one or more /metrics pages hold: every metric family
// with its type, and every series' label pairs by family.
type exposition struct {
	types  map[string]string              // family: counter, gauge, histogram
	labels map[string]map[string][]string // family: label: values
}

// has reports whether name is a series of an exported family: the family
// itself, or a histogram's _bucket, _count or _sum.
func (e *exposition) has(name string) bool {
	if _, ok := e.types[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && e.types[base] == "histogram" {
			return true
		}
	}
	return false
}

// family returns the family a series name belongs to.
func (e *exposition) family(name string) string {
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && e.types[base] == "histogram" {
			return base
		}
	}
	return name
}

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseExposition reads Prometheus text pages.
func parseExposition(t *testing.T, pages ...string) *exposition {
	t.Helper()
	e := &exposition{types: map[string]string{}, labels: map[string]map[string][]string{}}
	for _, page := range pages {
		sc := bufio.NewScanner(strings.NewReader(page))
		for sc.Scan() {
			line := sc.Text()
			if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
				e.types[f[2]] = f[3]
				continue
			}
			m := sampleLine.FindStringSubmatch(line)
			if m == nil || strings.HasPrefix(line, "#") {
				continue
			}
			fam := e.family(m[1])
			if e.labels[fam] == nil {
				e.labels[fam] = map[string][]string{}
			}
			for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
				if !slices.Contains(e.labels[fam][p[1]], p[2]) {
					e.labels[fam][p[1]] = append(e.labels[fam][p[1]], p[2])
				}
			}
		}
	}
	return e
}

// startHerald runs the herald binary with args until the test ends.
func startHerald(t *testing.T, args ...string) {
	t.Helper()
	startProcess(t, "herald "+args[0], heraldBinary(t), args...)
}

// startProcess runs bin with args until the test ends, when it is sent
// SIGTERM (and killed after 20 s); its output, logged as name's if the
// test failed, is out. exited is closed once it has exited: out is
// complete then.
func startProcess(t *testing.T, name, bin string, args ...string) (exited <-chan struct{}, out *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out = &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s:\n%s", name, out.String())
		}
	})
	return done, out
}

// fetch sends method url with an optional bearer token and JSON body, and
// returns the status and body.
func fetch(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// heraldPair is a real issuer and verifier: their addresses, and their
// /metrics pages once they have issued, verified and revoked a token.
type heraldPair struct {
	issuerAddr, verifierAddr string
	issuerPage, verifierPage string
}

// runningMetrics starts a real issuer (trusting an identity provider whose
// keys never load) and verifier from the herald binary on an embedded
// NATS, issues, verifies and revokes a token, waits until the issuer
// counts the verifier in the fleet, and returns both with their /metrics.
func runningMetrics(t *testing.T) heraldPair {
	t.Helper()
	heraldBinary(t) // skips under -short
	ns := bustest.RunServer(t)
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(idp.Close)
	issuerAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	verifierAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	issuerURL, verifierURL := "http://"+issuerAddr, "http://"+verifierAddr
	issuerData := t.TempDir()
	startHerald(t, "issuer", "--nats", ns.ClientURL(), "--nats-discover=false", "--http", issuerAddr,
		"--data", issuerData, "--trust-issuer", idp.URL, "--log-level", "warn")
	startHerald(t, "verifier", "--nats", ns.ClientURL(), "--nats-discover=false", "--http", verifierAddr,
		"--data", t.TempDir(), "--issuer", issuerURL, "--log-level", "warn")
	for _, u := range []string{issuerURL, verifierURL} {
		bustest.WaitFor(t, 30*time.Second, func() error {
			resp, err := http.Get(u + "/readyz")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s/readyz: %d", u, resp.StatusCode)
			}
			return nil
		})
	}
	admin, err := os.ReadFile(filepath.Join(issuerData, issuer.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	code, body := fetch(t, http.MethodPost, issuerURL+"/v1/sessions", strings.TrimSpace(string(admin)), `{"sub":"alice"}`)
	var session struct {
		AccessToken string `json:"access_token"`
		SessionID   string `json:"session_id"`
	}
	if err := json.Unmarshal([]byte(body), &session); code != http.StatusOK || err != nil || session.AccessToken == "" {
		t.Fatalf("create session: %d %s %v", code, body, err)
	}
	bustest.WaitFor(t, 10*time.Second, func() error { // the verifier learns the issuer's keys
		if code, _ := fetch(t, http.MethodGet, verifierURL+"/v1/verify", session.AccessToken, ""); code != http.StatusOK {
			return fmt.Errorf("verify: %d", code)
		}
		return nil
	})
	if code, body := fetch(t, http.MethodPost, issuerURL+"/v1/revocations?wait=10s", strings.TrimSpace(string(admin)),
		fmt.Sprintf(`{"kind":"session","value":%q}`, session.SessionID)); code != http.StatusOK {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, _ := fetch(t, http.MethodGet, verifierURL+"/v1/verify", session.AccessToken, ""); code != http.StatusUnauthorized {
		t.Fatalf("verify after revocation: %d, want 401", code)
	}
	// The issuer lists the fleet every 10 s; the trusted issuer's first
	// refresh fails at once.
	fleet := regexp.MustCompile(`(?m)^herald_fleet_verifiers\{[^}]*\} 1$`)
	failing := regexp.MustCompile(`(?m)^herald_federation_refresh_failing_seconds\{[^}]*\} [0-9.e+-]+$`)
	var issuerPage string
	bustest.WaitFor(t, 30*time.Second, func() error {
		_, issuerPage = fetch(t, http.MethodGet, issuerURL+"/metrics", "", "")
		if !fleet.MatchString(issuerPage) || !failing.MatchString(issuerPage) {
			return fmt.Errorf("issuer /metrics without one live verifier and the failing trusted issuer yet")
		}
		return nil
	})
	_, verifierPage := fetch(t, http.MethodGet, verifierURL+"/metrics", "", "")
	return heraldPair{issuerAddr: issuerAddr, verifierAddr: verifierAddr, issuerPage: issuerPage, verifierPage: verifierPage}
}

// TestPrometheus_RulesUseRealMetrics runs a real issuer and verifier and
// checks that every metric the rule files and the Grafana dashboard read
// is on their /metrics, with the labels the rules select and aggregate by,
// and that every recorded name a rule reads is recorded: renaming a metric
// fails here, not silently in production.
func TestPrometheus_RulesUseRealMetrics(t *testing.T) {
	rules := readRules(t)
	h := runningMetrics(t)
	issuerPage, verifierPage := h.issuerPage, h.verifierPage
	exp := parseExposition(t, issuerPage, verifierPage)
	rec := recorded(rules)
	for _, r := range rules {
		name := r.Record + r.Alert
		for _, n := range exprNames(r.Expr) {
			switch {
			case strings.Contains(n, ":"):
				if _, ok := rec[n]; !ok {
					t.Errorf("%s reads %s, which no recording rule records", name, n)
				}
			case n == "up": // Prometheus's own, per scrape target
			case !exp.has(n):
				t.Errorf("%s reads %s, which neither the issuer's nor the verifier's /metrics has", name, n)
			}
		}
		for _, m := range selector.FindAllStringSubmatch(r.Expr, -1) {
			if fam := exp.family(m[1]); !slices.Contains(exp.labels[fam][m[2]], m[3]) {
				t.Errorf("%s selects %s{%s=%q}; /metrics has %s values %q", name, m[1], m[2], m[3], m[2], exp.labels[fam][m[2]])
			}
		}
		for _, m := range byClause.FindAllStringSubmatch(r.Expr, -1) {
			for l := range strings.SplitSeq(m[1], ",") {
				l = strings.TrimSpace(l)
				found := false
				for _, n := range exprNames(r.Expr) {
					found = found || len(exp.labels[exp.family(n)][l]) > 0
				}
				if !found {
					t.Errorf("%s aggregates by %s, which no metric it reads has", name, l)
				}
			}
		}
	}
	// The dashboard's own queries, too.
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("grafana/herald-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range exprNames(tg.Expr) {
				if !strings.Contains(n, ":") && !exp.has(n) {
					t.Errorf("dashboard panel %q reads %s, which neither /metrics has", p.Title, n)
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("issuer /metrics:\n%s\nverifier /metrics:\n%s", filterHerald(issuerPage), filterHerald(verifierPage))
	}
}

func filterHerald(page string) string {
	var out []string
	for l := range strings.SplitSeq(page, "\n") {
		if strings.HasPrefix(l, "herald_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPrometheus_Promtool checks the rule files with promtool and runs
// their unit tests (prometheus/tests), which fire and clear every alert
// against series shaped like Herald's /metrics.
func TestPrometheus_Promtool(t *testing.T) {
	promtool := findPrometheusTool(t, "promtool")
	if out, err := exec.Command(promtool, append([]string{"check", "rules"}, ruleFiles...)...).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	tests, err := filepath.Glob("prometheus/tests/*.yml")
	if err != nil || len(tests) == 0 {
		t.Fatalf("no promtool tests in prometheus/tests: %v", err)
	}
	if out, err := exec.Command(promtool, append([]string{"test", "rules"}, tests...)...).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	// Every alert has a test that fires it.
	var all bytes.Buffer
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	for _, r := range readRules(t) {
		if r.Alert != "" && !regexp.MustCompile(`alertname: `+r.Alert+`\n\s+exp_alerts:\n\s+- `).Match(all.Bytes()) {
			t.Errorf("no promtool test fires %s", r.Alert)
		}
	}
}

// TestPrometheus_AlertsDocumented: every alert's runbook_url leads to a
// heading of docs/operations.md.
func TestPrometheus_AlertsDocumented(t *testing.T) {
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `json:"alert"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, "prometheus/herald-alerts.yml", &file)
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	const base = "https://github.com/heraldsec/herald/blob/main/docs/operations.md#"
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q", r.Alert, s)
			}
			anchor, ok := strings.CutPrefix(r.Annotations["runbook_url"], base)
			if !ok || anchor != strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook_url %q, want %s%s", r.Alert, r.Annotations["runbook_url"], base, strings.ToLower(r.Alert))
			}
			if !bytes.Contains(doc, []byte("\n#### "+r.Alert+"\n")) {
				t.Errorf("%s: docs/operations.md has no heading #### %s", r.Alert, r.Alert)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: no summary or description", r.Alert)
			}
		}
	}
}

// findPrometheusTool returns the path of promtool or prometheus. Without it
// the test is skipped, or fails under CI (CI=true), where .ci/run installs
// Debian's prometheus package, which has both.
func findPrometheusTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run installs it (apt-get install -y prometheus)", name)
	}
	t.Skipf("%s is not installed (apt-get install -y prometheus)", name)
	return ""
}

// TestPrometheus_RealServer runs a real Prometheus with both rule files,
// scraping a real issuer and verifier every second: every rule evaluates
// without error, the recording rules record what the dashboard shows, and
// an alert on the state the test set up (a trusted issuer whose keys never
// load) goes pending while the others stay inactive.
func TestPrometheus_RealServer(t *testing.T) {
	bin := findPrometheusTool(t, "prometheus")
	h := runningMetrics(t)
	dir := t.TempDir()
	var rules []string
	for _, f := range ruleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, fmt.Sprintf("%q", abs))
	}
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%s]
scrape_configs:
  - job_name: herald-issuer
    static_configs: [{targets: [%q]}]
  - job_name: herald-verifier
    static_configs: [{targets: [%q]}]
`, strings.Join(rules, ", "), h.issuerAddr, h.verifierAddr)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	exited, out := startProcess(t, "prometheus", bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+listen, "--log.level=warn")
	api := "http://" + listen + "/api/v1/"

	var states []ruleState
	bustest.WaitFor(t, 60*time.Second, func() error {
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", out.String())
		default:
		}
		var err error
		if states, err = promRules(api + "rules"); err != nil {
			return err
		}
		if len(states) != len(readRules(t)) {
			return fmt.Errorf("prometheus loaded %d rules, want %d", len(states), len(readRules(t)))
		}
		for _, r := range states {
			if r.Health != "ok" || strings.HasPrefix(r.LastEvaluation, "0001-") {
				return fmt.Errorf("rule %s: health %q %s, last evaluated %s", r.Name, r.Health, r.LastError, r.LastEvaluation)
			}
		}
		// The gauges' values, and the rates once two scrapes are in (0:
		// the token was revoked before the first; the hit ratio NaN).
		for _, q := range []string{"herald:verifiers_ready:sum == 1", "herald:verifiers_stale:sum == 0",
			"herald:denylist_entries:max >= 1", "max(herald_fleet_verifiers) == 1",
			`kind:herald_revocations:rate5m{kind="session"}`, `outcome:herald_verifications:rate5m{outcome="revoked"}`,
			"herald:verify_cache_hit_ratio:rate5m"} {
			if err := promHas(api, q); err != nil {
				return err
			}
		}
		return nil
	})
	firing := map[string]string{}
	bustest.WaitFor(t, 30*time.Second, func() error {
		alerts, err := promRules(api + "rules?type=alert")
		if err != nil {
			return err
		}
		for _, r := range alerts {
			firing[r.Name] = r.State
		}
		if firing["HeraldTrustedIssuerNoKeys"] != "pending" {
			return fmt.Errorf("HeraldTrustedIssuerNoKeys %q, want pending", firing["HeraldTrustedIssuerNoKeys"])
		}
		return nil
	})
	for name, state := range firing {
		if name != "HeraldTrustedIssuerNoKeys" && state != "inactive" {
			t.Errorf("%s is %s against a healthy issuer and verifier", name, state)
		}
	}
}

// ruleState is a rule as Prometheus's /api/v1/rules shows it.
type ruleState struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	Health         string `json:"health"`
	LastError      string `json:"lastError"`
	State          string `json:"state"`
	LastEvaluation string `json:"lastEvaluation"`
}

// promRules returns the rules of every group at the rules endpoint u.
func promRules(u string) ([]ruleState, error) {
	resp, err := http.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Groups []struct {
				Rules []ruleState `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	var rules []ruleState
	for _, g := range body.Data.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules, nil
}

// promHas reports an error unless the instant query q returns a sample.
func promHas(api, q string) error {
	resp, err := http.Get(api + "query?query=" + url.QueryEscape(q))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return err
	}
	if body.Status != "success" || len(body.Data.Result) == 0 {
		return fmt.Errorf("%s: %s %s, %d samples", q, body.Status, body.Error, len(body.Data.Result))
	}
	return nil
}
