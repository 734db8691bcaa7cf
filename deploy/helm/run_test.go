package helm

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The test here runs what the chart renders: the issuer's and the
// verifier's containers, each started as the kubelet would start it (its
// args, its environment with Secrets and $(VAR) references resolved, its
// volumes as directories, Secret files with the mode a pod with an fsGroup
// gives them), against a real NATS server configured with the chart's
// HERALD account and JetStream settings. Only listen addresses (to
// loopback port 0) and mount paths (to temporary directories) change.

// natsFromValues starts a NATS server with the JetStream settings and
// accounts that values.yaml hands to the NATS chart, the passwords in the
// environment as the chart's container env sets them.
func natsFromValues(t *testing.T, issuerPassword, verifierPassword string) *server.Server {
	t.Helper()
	data, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		NATS struct {
			Config struct {
				JetStream struct {
					Merge map[string]any `json:"merge"`
				} `json:"jetstream"`
				Merge map[string]any `json:"merge"`
			} `json:"config"`
		} `json:"nats"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	js := map[string]any{"store_dir": t.TempDir()}
	for k, val := range v.NATS.Config.JetStream.Merge {
		js[k] = val
	}
	conf := map[string]any{"listen": "127.0.0.1:-1", "jetstream": js}
	for k, val := range v.NATS.Config.Merge {
		conf[k] = val
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // ">" as it is: NATS's parser knows no \u escapes
	enc.SetIndent("", "  ")
	if err := enc.Encode(conf); err != nil {
		t.Fatal(err)
	}
	text := []byte(buf.String())
	// The NATS chart writes "<< X >>" unquoted: here, variable references.
	unquoted := regexp.MustCompile(`"<< (\$[A-Z_]+) >>"`).ReplaceAll(text, []byte("$1"))
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, unquoted, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERALD_NATS_ISSUER_PASSWORD", issuerPassword)
	t.Setenv("HERALD_NATS_VERIFIER_PASSWORD", verifierPassword)
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("the chart's NATS settings: %v\n%s", err, unquoted)
	}
	if !opts.JetStream || !opts.SyncAlways {
		t.Fatalf("the chart's NATS settings: JetStream %v, sync always %v", opts.JetStream, opts.SyncAlways)
	}
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// kubelet starts the containers of rendered pods as processes.
type kubelet struct {
	t       *testing.T
	secrets map[string]map[string][]byte // Secret name → key → value
}

func newKubelet(t *testing.T, r rendered, extra map[string]map[string][]byte) *kubelet {
	k := &kubelet{t: t, secrets: map[string]map[string][]byte{}}
	for _, s := range all[*corev1.Secret](r) {
		k.secrets[s.Name] = s.Data
	}
	for name, data := range extra {
		k.secrets[name] = data
	}
	return k
}

func (k *kubelet) secret(name, key string) []byte {
	k.t.Helper()
	v, ok := k.secrets[name][key]
	if !ok {
		k.t.Fatalf("no Secret %s with key %s", name, key)
	}
	return v
}

// container is a started container: its process and the URLs of its
// named ports.
type running struct {
	cmd   *exec.Cmd
	logs  *lineLog
	ports map[string]string // port name → http://127.0.0.1:N
}

// run starts container name of pod as podName. claims are the
// StatefulSet's volumeClaimTemplates, by name.
func (k *kubelet) run(pod *corev1.PodSpec, name, podName string, claims []string) *running {
	t := k.t
	t.Helper()
	c := container(t, pod, name)
	// Volumes: directories; Secret files with defaultMode, and group read
	// added as the kubelet does for a pod with an fsGroup.
	mounts := map[string]string{} // mount path → directory
	for _, m := range c.VolumeMounts {
		dir := t.TempDir()
		mounts[m.MountPath] = dir
		if slices.Contains(claims, m.Name) {
			continue
		}
		v := volume(t, pod, m.Name)
		switch {
		case v.EmptyDir != nil:
		case v.Secret != nil:
			mode := os.FileMode(0o644)
			if v.Secret.DefaultMode != nil {
				mode = os.FileMode(*v.Secret.DefaultMode)
			}
			if pod.SecurityContext != nil && pod.SecurityContext.FSGroup != nil {
				mode |= 0o440
			}
			for _, it := range v.Secret.Items {
				p := filepath.Join(dir, it.Path)
				if err := os.WriteFile(p, k.secret(v.Secret.SecretName, it.Key), mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, mode); err != nil {
					t.Fatal(err)
				}
			}
		default:
			t.Fatalf("volume %s: no emptyDir or Secret", v.Name)
		}
	}
	paths := slices.Collect(func(yield func(string) bool) {
		for p := range mounts {
			if !yield(p) {
				return
			}
		}
	})
	slices.SortFunc(paths, func(a, b string) int { return len(b) - len(a) })
	listen := regexp.MustCompile(`^(--(?:admin-)?http)=0\.0\.0\.0:\d+$`)
	var args []string
	for _, a := range c.Args {
		a = listen.ReplaceAllString(a, "$1=127.0.0.1:0")
		for _, p := range paths {
			a = strings.ReplaceAll(a, p, mounts[p])
		}
		args = append(args, a)
	}
	// The environment, in order, with $(VAR) of earlier variables expanded.
	env := map[string]string{}
	ref := regexp.MustCompile(`\$\(([A-Z_]+)\)`)
	environ := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for _, e := range c.Env {
		val := e.Value
		switch {
		case e.ValueFrom == nil:
			val = ref.ReplaceAllStringFunc(val, func(m string) string {
				if v, ok := env[m[2:len(m)-1]]; ok {
					return v
				}
				return m
			})
		case e.ValueFrom.SecretKeyRef != nil:
			val = string(k.secret(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key))
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			val = podName
		default:
			t.Fatalf("container %s: env %s from an unsupported source", name, e.Name)
		}
		env[e.Name] = val
		environ = append(environ, e.Name+"="+val)
	}
	bin, err := heraldBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	logs := newLineLog()
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	// The ready line names the addresses: map them to the named ports.
	ready := regexp.MustCompile(`msg="(?:issuer|verifier) ready".*? http=(\S+)(?:.*? admin_http=(\S+))?`)
	m := logs.wait(t, ready, 60*time.Second, exited)
	r := &running{cmd: cmd, logs: logs, ports: map[string]string{}}
	for _, p := range c.Ports {
		switch p.ContainerPort {
		case 8420, 8421:
			r.ports[p.Name] = m[1]
		case 8422:
			r.ports[p.Name] = m[2]
		}
	}
	// The probes, as the kubelet runs them: startup and liveness answer
	// at once, readiness once the process is ready.
	for what, probe := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		url := r.ports[probe.HTTPGet.Port.StrVal]
		if url == "" {
			t.Fatalf("%s: %s probe port %q has no address in the ready line: %v", name, what, probe.HTTPGet.Port.StrVal, m)
		}
		waitStatus(t, url+probe.HTTPGet.Path, http.StatusOK, 30*time.Second)
	}
	return r
}

// waitStatus polls url until it answers code; there is no event to wait
// on for readiness from outside the process.
func waitStatus(t *testing.T, url string, code int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == code {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %d within %s (last: %v %v)", url, code, timeout, resp, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineLog collects a process's output and tells waiters of new lines.
type lineLog struct {
	mu      sync.Mutex
	buf     strings.Builder
	changed chan struct{}
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// wait returns the first match of re in the log, waiting for new output
// until timeout or until the process exits.
func (l *lineLog) wait(t *testing.T, re *regexp.Regexp, timeout time.Duration, exited <-chan struct{}) []string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		l.mu.Lock()
		m := re.FindStringSubmatch(l.buf.String())
		changed := l.changed
		l.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-changed:
		case <-exited:
			if m := re.FindStringSubmatch(l.String()); m != nil {
				return m
			}
			t.Fatalf("the process exited before %s:\n%s", re, l.String())
		case <-deadline:
			t.Fatalf("no %s within %s:\n%s", re, timeout, l.String())
		}
	}
}

// herald runs a herald client command.
func herald(t *testing.T, env []string, args ...string) string {
	t.Helper()
	bin, err := heraldBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("herald %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// get sends a GET with a bearer token and returns the status, the
// WWW-Authenticate header and the response.
func get(t *testing.T, url, token string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

// TestChart_RunsAsRendered starts the rendered issuer and the rendered
// verifier sidecar (forward-auth and proxy modes) as processes against a
// NATS server with the chart's NATS settings, and sees a token verified
// and then refused after its subject is revoked.
func TestChart_RunsAsRendered(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS, an issuer and verifiers")
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "event-key.pem")
	kid := strings.TrimSpace(herald(t, nil, "keys", "event-key", keyFile))
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ns := natsFromValues(t, "issuer-secret-0123", "verifier-secret-4567")
	host := strings.TrimPrefix(ns.ClientURL(), "nats://")

	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Subject", r.Header.Get("X-Herald-Subject"))
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-Herald-Subject"))
	}))
	t.Cleanup(app.Close)

	// The event key from an existing Secret, the rest created by the chart.
	r := render(t, "example.enabled=true", "verifier.mode=proxy", "verifier.upstream="+app.URL,
		"eventKey.kid="+kid, "eventKey.pem=", "eventKey.existingSecret=ops-event-key",
		"natsAuth.issuerPassword=issuer-secret-0123", "natsAuth.verifierPassword=verifier-secret-4567",
		"natsHost="+host, "issuer.natsReplicas=1", "issuer.keyRotation=")
	k := newKubelet(t, r, map[string]map[string][]byte{"ops-event-key": {"event-key.pem": pem}})
	set := one[*appsv1.StatefulSet](t, r, "herald-issuer")
	var claims []string
	for _, c := range set.Spec.VolumeClaimTemplates {
		claims = append(claims, c.Name)
	}
	iss := k.run(&set.Spec.Template.Spec, "issuer", "herald-issuer-0", claims)
	if !strings.Contains(iss.logs.String(), "event_kid="+kid) {
		t.Errorf("the issuer does not sign with the event key of its Secret (%s):\n%s", kid, iss.logs.String())
	}
	admin := []string{"HERALD_ADMIN_TOKEN=" + string(k.secret("herald-admin", "admin-token"))}
	issuerAPI := iss.ports["http"]

	proxy := k.run(&one[*appsv1.Deployment](t, r, "example-app").Spec.Template.Spec, "herald-verifier", "example-app-7f9c-proxy", nil)

	rf := render(t, "example.enabled=true", "verifier.mode=forward-auth",
		"eventKey.kid="+kid, "natsHost="+host, "issuer.natsReplicas=1")
	fwd := newKubelet(t, rf, map[string]map[string][]byte{"herald-nats": {"verifier": []byte("verifier-secret-4567")}}).
		run(&one[*appsv1.Deployment](t, rf, "example-app").Spec.Template.Spec, "herald-verifier", "example-app-7f9c-fwd", nil)

	// Cookie mode with the shared sealing key from a Secret: mounted 0400
	// in a pod with an fsGroup, so 0440, which the verifier must accept.
	rc := render(t, "example.enabled=true", "verifier.mode=cookie", "verifier.upstream="+app.URL,
		"verifier.cookie.keySecret=app-cookie-key", "verifier.cookie.loginPath=/login",
		"eventKey.kid="+kid, "natsHost="+host, "issuer.natsReplicas=1")
	cookie := newKubelet(t, rc, map[string]map[string][]byte{
		"herald-nats":    {"verifier": []byte("verifier-secret-4567")},
		"app-cookie-key": {"cookie.key": []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")) + "\n")},
	}).run(&one[*appsv1.Deployment](t, rc, "example-app").Spec.Template.Spec, "herald-verifier", "example-app-7f9c-cookie", nil)
	if !strings.Contains(cookie.logs.String(), "cookie_sessions=true") {
		t.Errorf("cookie mode: the verifier is not serving cookie sessions:\n%s", cookie.logs.String())
	}

	token := herald(t, admin, "token", "--issuer-url", issuerAPI, "alice")
	if code, h := get(t, proxy.ports["herald"]+"/orders", token); code != http.StatusOK || h.Get("X-Seen-Subject") != "alice" {
		t.Fatalf("proxy mode: %d, the application saw subject %q", code, h.Get("X-Seen-Subject"))
	}
	if code, h := get(t, fwd.ports["herald"]+"/v1/verify", token); code != http.StatusOK || h.Get("X-Herald-Subject") != "alice" {
		t.Fatalf("forward-auth mode: %d, subject %q", code, h.Get("X-Herald-Subject"))
	}

	// Revoked, and every live verifier has applied it (--wait).
	herald(t, admin, "revoke", "--issuer-url", issuerAPI, "--wait", "30s", "subject", "alice")
	if code, h := get(t, proxy.ports["herald"]+"/orders", token); code != http.StatusUnauthorized || h.Get("WWW-Authenticate") == "" {
		t.Errorf("proxy mode after the revocation: %d, WWW-Authenticate %q", code, h.Get("WWW-Authenticate"))
	}
	if code, _ := get(t, fwd.ports["herald"]+"/v1/verify", token); code != http.StatusUnauthorized {
		t.Errorf("forward-auth mode after the revocation: %d", code)
	}
	// The verifier's own endpoints are on the admin port in proxy mode,
	// not on the application's.
	if code, _ := get(t, proxy.ports["herald-admin"]+"/v1/status", ""); code != http.StatusOK {
		t.Errorf("proxy mode: /v1/status on the admin port: %d", code)
	}
}
