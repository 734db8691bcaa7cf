package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/ssf"
)

// TestRun_SSFStreams runs herald ssf streams against a fake issuer and
// checks the request each verb sends and what it prints.
func TestRun_SSFStreams(t *testing.T) {
	type request struct{ method, path, body string }
	var (
		mu   sync.Mutex
		reqs []request
	)
	now := time.Now().UTC()
	streams := []ssf.Info{
		{ID: "s1", Receiver: "cl_saas", Method: ssf.MethodPush, Endpoint: "https://saas.example/events", Status: ssf.StatusEnabled,
			Created: now.Add(-time.Hour), Lag: 0, LastDelivered: now.Add(-90 * time.Second)},
		{ID: "s2", Receiver: "cl_partner", Method: ssf.MethodPoll, Status: ssf.StatusPaused, Reason: "receiver answered 401",
			Created: now.Add(-time.Hour), Lag: 12, LastError: "401 Unauthorized", LastErrorAt: now.Add(-5 * time.Minute),
			Gap: "events 3 to 9 expired before delivery"},
	}
	list, err := json.Marshal(streams)
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string]struct {
		code int
		body string
	}{
		"GET /v1/ssf/streams":               {200, string(list)},
		"POST /v1/ssf/streams/s2/status":    {200, `{"stream_id":"s2","status":"enabled"}`},
		"POST /v1/ssf/streams/s%2F1/status": {200, `{"stream_id":"s/1","status":"paused","reason":"maintenance"}`},
		"DELETE /v1/ssf/streams/s1":         {204, ``},
		"DELETE /v1/ssf/streams/nope":       {404, `{"error":"not_found","error_description":"no such stream"}`},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, request{r.Method, r.URL.EscapedPath(), string(b)})
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer test-admin" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		a, ok := answers[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			t.Errorf("unexpected request %s %s", r.Method, r.URL.EscapedPath())
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.code)
		io.WriteString(w, a.body)
	}))
	defer srv.Close()
	t.Setenv("HERALD_ADMIN_TOKEN", "test-admin")

	runSSFCmd := func(args ...string) (string, string, error) {
		t.Helper()
		mu.Lock()
		reqs = nil
		mu.Unlock()
		var out, errOut bytes.Buffer
		err := run(t.Context(), append(append([]string{"ssf"}, args...), "--issuer-url", srv.URL), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	lastReq := func() request {
		mu.Lock()
		defer mu.Unlock()
		if len(reqs) != 1 {
			t.Fatalf("%d requests, want 1: %v", len(reqs), reqs)
		}
		return reqs[0]
	}

	t.Run("table", func(t *testing.T) {
		out, _, err := runSSFCmd("streams")
		if err != nil {
			t.Fatal(err)
		}
		if r := lastReq(); r != (request{"GET", "/v1/ssf/streams", ""}) {
			t.Errorf("request %v", r)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		want := []*regexp.Regexp{
			regexp.MustCompile(`^STREAM +RECEIVER +METHOD +STATUS +LAG +LAST DELIVERED +LAST ERROR$`),
			regexp.MustCompile(`^s1 +cl_saas +push +enabled +0 +1m3[01]s ago +-$`),
			regexp.MustCompile(`^s2 +cl_partner +poll +paused \(receiver answered 401\) +12 +- +401 Unauthorized \(5m[01]s ago\)$`),
			regexp.MustCompile(`^stream s2 missed events: events 3 to 9 expired before delivery$`),
		}
		if len(lines) != len(want) {
			t.Fatalf("output:\n%s\nwant %d lines", out, len(want))
		}
		for i, re := range want {
			if !re.MatchString(lines[i]) {
				t.Errorf("line %d %q, want %s", i, lines[i], re)
			}
		}
		// The columns line up.
		if i := strings.Index(lines[0], "RECEIVER"); lines[1][i:i+7] != "cl_saas" || lines[2][i:i+10] != "cl_partner" {
			t.Errorf("columns do not line up:\n%s", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		out, _, err := runSSFCmd("streams", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var got []ssf.Info
		if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 2 || got[1].Gap != streams[1].Gap || !got[0].LastDelivered.Equal(streams[0].LastDelivered) {
			t.Errorf("json output %s: %v", out, err)
		}
	})
	t.Run("enable", func(t *testing.T) {
		out, _, err := runSSFCmd("streams", "enable", "s2")
		if err != nil || out != "stream s2 enabled\n" {
			t.Errorf("enable: %q %v", out, err)
		}
		if r := lastReq(); r != (request{"POST", "/v1/ssf/streams/s2/status", `{"status":"enabled"}`}) {
			t.Errorf("request %v", r)
		}
	})
	t.Run("pause with a reason, flags after the id", func(t *testing.T) {
		out, _, err := runSSFCmd("streams", "pause", "s/1", "--reason", "maintenance")
		if err != nil || out != "stream s/1 paused (maintenance)\n" {
			t.Errorf("pause: %q %v", out, err)
		}
		if r := lastReq(); r != (request{"POST", "/v1/ssf/streams/s%2F1/status", `{"status":"paused","reason":"maintenance"}`}) {
			t.Errorf("request %v", r)
		}
	})
	t.Run("delete", func(t *testing.T) {
		out, _, err := runSSFCmd("streams", "delete", "s1")
		if err != nil || out != "stream s1 deleted\n" {
			t.Errorf("delete: %q %v", out, err)
		}
		if r := lastReq(); r != (request{"DELETE", "/v1/ssf/streams/s1", ""}) {
			t.Errorf("request %v", r)
		}
		_, _, err = runSSFCmd("streams", "delete", "nope")
		if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "no such stream") {
			t.Errorf("delete of an unknown stream: %v, want the API's 404", err)
		}
	})
	t.Run("wrong arguments send nothing", func(t *testing.T) {
		for _, args := range [][]string{{"streams", "pause"}, {"streams", "stop", "s1"}, {"streams", "delete", "s1", "s2"}, {"stream"}, {}} {
			mu.Lock()
			reqs = nil
			mu.Unlock()
			var out, errOut bytes.Buffer
			err := run(t.Context(), append([]string{"ssf"}, args...), &out, &errOut)
			if err == nil || !strings.Contains(errOut.String(), "usage: herald ssf") {
				t.Errorf("ssf %q: %v, stderr %q; want an error and the usage", args, err, errOut.String())
			}
			mu.Lock()
			if len(reqs) != 0 {
				t.Errorf("ssf %q sent %v", args, reqs)
			}
			mu.Unlock()
		}
	})
}

// TestSSF_StreamsOfARealIssuer runs herald issuer with the SSF flags: the
// configuration metadata names the default subjects of
// --ssf-default-subjects, the key set holds the key of --ssf-key-file, a
// client of `herald client create --scope "ssf.manage ssf.read"` creates
// a stream, and herald ssf streams lists, pauses (the receiver sees the
// status and reason) and deletes it.
func TestSSF_StreamsOfARealIssuer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the herald binary")
	}
	f := newFleet(t)
	iss := f.startIssuer(filepath.Join(t.TempDir(), "issuer"), freeAddr(t),
		"--ssf-default-subjects", "NONE", "--ssf-key-file", bustest.SSFKeyFile(t), "--ssf-retention", "48h")
	t.Setenv("HERALD_ADMIN_TOKEN", f.admin)
	get := func(url, tok string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	var meta ssf.Configuration
	if code, b := get(iss.url+"/.well-known/ssf-configuration", ""); code != http.StatusOK || json.Unmarshal(b, &meta) != nil ||
		meta.DefaultSubjects != ssf.SubjectsNone || meta.Issuer != testIssuer {
		t.Fatalf("configuration: %d %s", code, b)
	}
	signer, err := ssf.NewSigner(bustest.SSFKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if code, b := get(iss.url+"/ssf/jwks.json", ""); code != http.StatusOK || !strings.Contains(string(b), `"kid":"`+signer.KeyID()+`"`) {
		t.Errorf("key set %d %s, want the key of --ssf-key-file (%s)", code, b, signer.KeyID())
	}

	var cl struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(runCmd(t, "client", "create", "acme", "--scope", "ssf.manage ssf.read", "--issuer-url", iss.url)), &cl); err != nil {
		t.Fatal(err)
	}
	tokReq, _ := http.NewRequestWithContext(t.Context(), "POST", iss.url+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"ssf.manage ssf.read"}}.Encode()))
	tokReq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	tokReq.SetBasicAuth(cl.ID, cl.Secret)
	var tok struct {
		Access string `json:"access_token"`
	}
	if err := doJSON(tokReq, &tok); err != nil || tok.Access == "" {
		t.Fatalf("client credentials: %v", err)
	}

	var st ssf.Stream
	bustest.WaitFor(t, 20*time.Second, func() error { // the transmitter sets up the bus as the issuer starts
		req, _ := http.NewRequestWithContext(t.Context(), "POST", iss.url+"/ssf/stream", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Access)
		return doJSON(req, &st)
	})
	out := runCmd(t, "ssf", "streams", "--issuer-url", iss.url)
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(st.ID) + ` +` + regexp.QuoteMeta(cl.ID) + ` +poll +enabled +0 +- +-$`).MatchString(out) {
		t.Errorf("herald ssf streams:\n%s\nwant the stream %s of %s, poll, enabled", out, st.ID, cl.ID)
	}
	if out := runCmd(t, "ssf", "streams", "pause", st.ID, "--reason", "maintenance", "--issuer-url", iss.url); out != "stream "+st.ID+" paused (maintenance)\n" {
		t.Errorf("pause: %q", out)
	}
	want := `{"stream_id":"` + st.ID + `","status":"paused","reason":"maintenance"}`
	if code, b := get(iss.url+"/ssf/status?stream_id="+st.ID, tok.Access); code != http.StatusOK || strings.TrimSpace(string(b)) != want {
		t.Errorf("the receiver's status: %d %s, want %s", code, b, want)
	}
	runCmd(t, "ssf", "streams", "delete", st.ID, "--issuer-url", iss.url)
	if out := runCmd(t, "ssf", "streams", "--issuer-url", iss.url); out != "no SSF streams\n" {
		t.Errorf("after delete: %q", out)
	}
	if code, b := get(iss.url+"/ssf/stream?stream_id="+st.ID, tok.Access); code != http.StatusNotFound {
		t.Errorf("the deleted stream: %d %s, want 404", code, b)
	}
}

// TestIssuerFlags_SSF: the transmitter's flags and their environment
// variables reach the issuer's configuration; by default it is on, with
// its defaults.
func TestIssuerFlags_SSF(t *testing.T) {
	parse := func(args ...string) issuer.Config {
		t.Helper()
		var f issuerFlags
		fs := newFlagSet("issuer", "issuer", io.Discard)
		f.register(fs)
		if err := parseFlags(fs, args); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config(slog.New(slog.DiscardHandler), &telemetry{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if cfg := parse(); cfg.DisableSSF || cfg.SSFKeyFile != "" || cfg.SSFDefaultSubjects != ssf.SubjectsAll || cfg.SSFRetention != bus.DefaultSSFRetention {
		t.Errorf("defaults: DisableSSF %v, key file %q, default subjects %q, retention %v", cfg.DisableSSF, cfg.SSFKeyFile, cfg.SSFDefaultSubjects, cfg.SSFRetention)
	}
	cfg := parse("--ssf=false", "--ssf-key-file", "/k.pem", "--ssf-default-subjects", "NONE", "--ssf-retention", "36h")
	if !cfg.DisableSSF || cfg.SSFKeyFile != "/k.pem" || cfg.SSFDefaultSubjects != ssf.SubjectsNone || cfg.SSFRetention != 36*time.Hour {
		t.Errorf("flags: DisableSSF %v, key file %q, default subjects %q, retention %v", cfg.DisableSSF, cfg.SSFKeyFile, cfg.SSFDefaultSubjects, cfg.SSFRetention)
	}
	t.Setenv("HERALD_SSF", "false")
	t.Setenv("HERALD_SSF_DEFAULT_SUBJECTS", "NONE")
	if cfg := parse(); !cfg.DisableSSF || cfg.SSFDefaultSubjects != ssf.SubjectsNone {
		t.Errorf("environment: DisableSSF %v, default subjects %q", cfg.DisableSSF, cfg.SSFDefaultSubjects)
	}
	// A wrong value is refused when the issuer's configuration is checked.
	bad := parse("--ssf-default-subjects", "SOME")
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "SSF default subjects") {
		t.Errorf("default subjects SOME: %v, want an error naming it", err)
	}
}
