//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
)

// The fault-injection tests (fault_test.go) run Herald as real processes:
// the herald binary, built once, and a standalone NATS server, which is
// this test binary started again with natsEnv set.

// natsEnv, set to "<listen address> <store dir>", makes the test binary a
// NATS server with JetStream instead of running tests.
const natsEnv = "HERALD_TEST_NATS_SERVER"

// testIssuer is the iss claim of every process-test issuer: fixed, because
// an issuer restarted on a new HTTP port must keep signing for the same
// name its verifiers accept.
const testIssuer = "https://issuer.herald.test"

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// TestMain runs the NATS server when asked to, else the tests, and
// removes the binary heraldBinary built.
func TestMain(m *testing.M) {
	if v := os.Getenv(natsEnv); v != "" {
		os.Exit(serveNATS(v))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// serveNATS runs an embedded NATS server with JetStream as configured by
// natsEnv, logs its ready line, and serves until SIGTERM.
func serveNATS(spec string) int {
	listen, dir, ok := strings.Cut(spec, " ")
	if !ok {
		fmt.Fprintf(os.Stderr, "%s=%q: want \"<listen> <store dir>\"\n", natsEnv, spec)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := natsserver.Start(ctx, natsserver.Config{Listen: listen, StoreDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "nats ready nats=%s\n", s.ClientURL())
	<-ctx.Done()
	s.Shutdown()
	return 0
}

// heraldBinary builds cmd/herald once per test binary run.
func heraldBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("a process test: skipped under -short")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "herald-fault-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "herald")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a process under test: its output is kept, and it is killed
// when the test ends if it still runs.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{} // closed once the process has exited
	err  error         // how it exited, once done is closed
}

// startProc starts name (a label for the logs) as path args, with env added
// to the environment.
func startProc(t *testing.T, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // none outlives a killed test
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s logs:\n%s", name, lastLines(p.logs.String(), 40))
		}
	})
	return p
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog waits until the process's output matches re and returns the
// submatches of the first match. It fails the test if the process exits
// first.
func (p *proc) waitLog(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	var m []string
	bustest.WaitFor(p.t, timeout, func() error {
		if m = re.FindStringSubmatch(p.logs.String()); m != nil {
			return nil
		}
		if p.exited() {
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, re, lastLines(p.logs.String(), 40))
		}
		return fmt.Errorf("%s has not logged %q", p.name, re)
	})
	return m
}

// kill sends SIGKILL, as a crash or the OOM killer would, and waits for
// the process to be gone.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %s: %v", p.name, err)
	}
}

// wait waits for the process to exit and returns how it did.
func (p *proc) wait(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("%s still runs after %s", p.name, timeout)
		return nil
	}
}

// freeAddr returns a loopback address with a port free at the time of the
// call, for a process that must be restarted on the same port (a NATS
// server its clients reconnect to) or whose address is needed before its
// ready line.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var (
	issuerReady   = regexp.MustCompile(`msg="issuer ready".*? http=(\S+)`)
	verifierReady = regexp.MustCompile(`msg="verifier ready".*? http=(\S+)`)
	natsReady     = regexp.MustCompile(`nats ready"? nats=(\S+)`)
)

// fleet is the processes of one fault test: an issuer, its NATS and
// verifiers, with the admin token the issuer takes from its environment.
type fleet struct {
	t     *testing.T
	bin   string
	admin string
	// auth maps the client URL of an issuer's embedded NATS, which
	// requires TLS and an nkey, to the directory of its credentials.
	auth *sync.Map
}

func newFleet(t *testing.T) *fleet {
	return &fleet{t: t, bin: heraldBinary(t), admin: "hrld_fault-test-" + randomSecret(t), auth: &sync.Map{}}
}

// in returns f for subtest t: the processes it starts end with t.
func (f *fleet) in(t *testing.T) *fleet {
	c := *f
	c.t = t
	return &c
}

// issuerProc is a running herald issuer.
type issuerProc struct {
	*proc
	url  string // HTTP API
	nats string // client URL of its NATS: embedded, or the one it was given
}

// startIssuer runs herald issuer on dir. With nats a nats:// URL it
// connects there; otherwise it embeds NATS listening on nats (host:port).
func (f *fleet) startIssuer(dir, nats string, extra ...string) *issuerProc {
	f.t.Helper()
	args := []string{"issuer", "--http", "127.0.0.1:0", "--data", dir, "--issuer-url", testIssuer}
	if strings.HasPrefix(nats, "nats://") {
		args = append(args, "--nats", nats)
	} else {
		args = append(args, "--nats-listen", nats)
	}
	p := startProc(f.t, "issuer", []string{"HERALD_ADMIN_TOKEN=" + f.admin}, f.bin, append(args, extra...)...)
	iss := &issuerProc{proc: p, url: p.waitLog(issuerReady, 30*time.Second)[1], nats: nats}
	if !strings.HasPrefix(nats, "nats://") {
		iss.nats = p.waitLog(natsReady, time.Second)[1]
		f.auth.Store(iss.nats, filepath.Join(dir, natsserver.AuthDir))
	}
	return iss
}

// startVerifier runs herald verifier on dir, listening on http, following
// the NATS at natsURL. It does not wait for the verifier to be ready.
func (f *fleet) startVerifier(dir, natsURL, http string, extra ...string) *proc {
	f.t.Helper()
	args := []string{"verifier", "--http", http, "--data", dir, "--nats", natsURL, "--issuer", testIssuer}
	if auth, ok := f.auth.Load(natsURL); ok {
		args = append(args, "--nats-nkey", filepath.Join(auth.(string), "verifier.nk"), "--nats-ca", filepath.Join(auth.(string), "ca.pem"))
	}
	return startProc(f.t, "verifier", nil, f.bin, append(args, extra...)...)
}

// readyVerifier runs herald verifier on dir on a free port and waits
// until it is ready; it returns the process and its URL.
func (f *fleet) readyVerifier(dir, natsURL string, extra ...string) (*proc, string) {
	f.t.Helper()
	p := f.startVerifier(dir, natsURL, "127.0.0.1:0", extra...)
	return p, p.waitLog(verifierReady, 20*time.Second)[1]
}

// startNATS runs a standalone NATS server with JetStream storing in dir,
// listening on listen.
func (f *fleet) startNATS(dir, listen string) *proc {
	f.t.Helper()
	p := startProc(f.t, "nats", []string{natsEnv + "=" + listen + " " + dir}, os.Args[0])
	p.waitLog(natsReady, 30*time.Second)
	return p
}

// session is a session the issuer created, with its access token's jti.
type session struct {
	ID     string `json:"session_id"`
	Access string `json:"access_token"`
	JTI    string `json:"-"`
}

// newSessions creates n sessions for subjects prefix-0, prefix-1, ...
func (f *fleet) newSessions(issuerURL, prefix string, n int) []session {
	f.t.Helper()
	out := make([]session, n)
	for i := range out {
		code, body := adminJSON(f.t, issuerURL+"/v1/sessions", f.admin, fmt.Sprintf(`{"sub":"%s-%d"}`, prefix, i))
		if code != http.StatusOK || json.Unmarshal(body, &out[i]) != nil {
			f.t.Fatalf("create session: %d %s", code, body)
		}
		out[i].JTI = tokenJTI(f.t, out[i].Access)
	}
	return out
}

// tokenJTI returns the jti claim of a JWT.
func tokenJTI(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	var claims struct {
		JTI string `json:"jti"`
	}
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.20s...", jwt)
	}
	if b, err := decodeSegment(parts[1]); err != nil || json.Unmarshal(b, &claims) != nil || claims.JTI == "" {
		t.Fatalf("no jti in token claims: %v", err)
	}
	return claims.JTI
}

// revokeResult is the answer to one revocation request.
type revokeResult struct {
	code int    // 0: no answer (connection refused or cut)
	seq  uint64 // stream sequence, with 200
	desc string // error_description, with an error
}

// tryRevoke posts a revocation and reports the answer, if any, without
// failing the test: the issuer may die under it.
func (f *fleet) tryRevoke(issuerURL, body string) revokeResult {
	req, err := http.NewRequest(http.MethodPost, issuerURL+"/v1/revocations", strings.NewReader(body))
	if err != nil {
		f.t.Error(err)
		return revokeResult{}
	}
	req.Header.Set("Authorization", "Bearer "+f.admin)
	client := &http.Client{Timeout: 20 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return revokeResult{}
	}
	defer resp.Body.Close()
	var ans struct {
		Seq  uint64 `json:"seq"`
		Desc string `json:"error_description"`
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil || json.Unmarshal(data, &ans) != nil {
		return revokeResult{} // cut mid-answer: no answer
	}
	return revokeResult{code: resp.StatusCode, seq: ans.Seq, desc: ans.Desc}
}

// revoke posts a revocation that must be acknowledged and returns its
// stream sequence.
func (f *fleet) revoke(issuerURL, body string) uint64 {
	f.t.Helper()
	r := f.tryRevoke(issuerURL, body)
	if r.code != http.StatusOK {
		f.t.Fatalf("revoke %.80s: %d %s", body, r.code, r.desc)
	}
	return r.seq
}

// bulkTokens returns the body of a bulk revocation of n made-up jtis
// named by prefix, with extra jtis among them.
func bulkTokens(prefix string, n int, extra ...string) string {
	values := make([]string, 0, n+len(extra))
	for i := range n {
		values = append(values, fmt.Sprintf("%s-%08d", prefix, i))
	}
	values = append(values, extra...)
	b, _ := json.Marshal(map[string]any{"kind": "token", "values": values, "reason": "fault test"})
	return string(b)
}

// verifierStatus is what a verifier's /v1/status reports.
type verifierStatus struct {
	Applied  uint64 `json:"applied_seq"`
	Head     uint64 `json:"stream_head"`
	Ready    bool   `json:"ready"`
	Stale    bool   `json:"stale"`
	Denylist int    `json:"denylist_size"`
	Events   uint64 `json:"events_applied"`
	Verdicts bool   `json:"verdicts"`
}

// status returns a verifier's status, or an error if it does not answer.
func status(url string) (verifierStatus, error) {
	var st verifierStatus
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// tryVerify asks a verifier about a token: the status code, or 0 if the
// verifier does not answer.
func tryVerify(url, token string) int {
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/verify", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitEnforced waits until the verifier at url has applied the stream up
// to the head and answers 401 for every revoked token and 200 for every
// live one.
func waitEnforced(t *testing.T, url string, revoked, live []string, timeout time.Duration) verifierStatus {
	t.Helper()
	var st verifierStatus
	bustest.WaitFor(t, timeout, func() error {
		var err error
		if st, err = status(url); err != nil {
			return err
		}
		if !st.Ready || st.Applied != st.Head {
			return fmt.Errorf("verifier not caught up: %+v", st)
		}
		for i, tok := range revoked {
			if code := tryVerify(url, tok); code != http.StatusUnauthorized {
				return fmt.Errorf("revoked token %d of %d: verify = %d, want 401", i, len(revoked), code)
			}
		}
		for i, tok := range live {
			if code := tryVerify(url, tok); code != http.StatusOK {
				return fmt.Errorf("live token %d of %d: verify = %d, want 200", i, len(live), code)
			}
		}
		return nil
	})
	return st
}

// streamRevocations reads the HERALD stream from the NATS at url and
// returns every revoked value as "<kind>:<value>".
func (f *fleet) streamRevocations(t *testing.T, url string) map[string]bool {
	t.Helper()
	var c *bus.Conn
	if auth, ok := f.auth.Load(url); ok { // the issuer's embedded NATS: as the dashboard
		files := natsserver.AuthFiles{Dir: auth.(string)}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		if c, err = bus.Connect(ctx, bus.Config{URL: url, Name: t.Name(), NkeyFile: files.SeedFile(bus.RoleDashboard),
			CAFile: files.CAFile(), InboxPrefix: bus.RoleDashboard.InboxPrefix()}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
	} else {
		c = bustest.ConnectURL(t, url)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	got := map[string]bool{}
	err := c.Read(ctx, bus.StreamRevocations, bus.ReadOptions{}, func(d bus.Delivery) bool {
		e, err := bus.Decode(d.Data)
		if err != nil {
			t.Errorf("seq %d: %v", d.Seq, err)
			return true
		}
		for _, v := range e.Revocation.AllValues() {
			got[e.Revocation.Kind.String()+":"+v] = true
		}
		return true
	})
	if err != nil {
		t.Fatalf("read the revocation stream: %v", err)
	}
	return got
}

// checkSessionsRevoked fails the test unless the revocation stream, as
// streamRevocations read it, revokes each session of ids.
func checkSessionsRevoked(t *testing.T, stream map[string]bool, ids []string) {
	t.Helper()
	for _, id := range ids {
		if !stream["session:"+id] {
			t.Errorf("revocation of session %s is not in the stream", id)
		}
	}
}

// copyDir copies the regular files under src to dst as they are now,
// skipping files that disappear meanwhile (a live database deletes
// obsolete files). Pebble's LOCK file is copied too: it holds no state.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// tokens returns the access tokens of sessions.
func tokens(ss []session) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Access
	}
	return out
}

// sessionBody is the body of a revocation of session sid.
func sessionBody(sid string) string {
	return fmt.Sprintf(`{"kind":"session","value":%q,"reason":"fault test"}`, sid)
}
