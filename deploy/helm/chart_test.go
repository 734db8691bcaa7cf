package helm

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/strvals"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

const (
	chartDir  = "herald"
	release   = "herald"
	namespace = "herald"
	eventKid  = "evt-0123456789abcdef"
	adminTok  = "admin-token-of-the-chart-tests-0123456789"
	issuerURL = "https://auth.example.com"
)

// baseValues are what an operator must set: the issuer URL, the event key
// and its kid, the admin token and the NATS users' passwords.
var baseValues = []string{
	"issuerURL=" + issuerURL,
	"eventKey.kid=" + eventKid,
	"eventKey.pem=-----BEGIN PRIVATE KEY-----",
	"admin.token=" + adminTok,
	"natsAuth.issuerPassword=issuer-pw",
	"natsAuth.verifierPassword=verifier-pw",
}

// strictDecoder decodes manifests into the Kubernetes API types, refusing
// unknown and duplicate fields.
var strictDecoder = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// object is one rendered and decoded Kubernetes object.
type object struct {
	template string
	obj      runtime.Object
}

// rendered is everything the chart rendered for one set of values.
type rendered []object

// loadChart loads the chart in dir as `helm install` does.
func loadChart(t *testing.T, dir string) *chart.Chart {
	t.Helper()
	c, err := loader.Load(dir)
	if err != nil {
		t.Fatalf("load chart %s: %v", dir, err)
	}
	ch, ok := c.(*chart.Chart)
	if !ok {
		t.Fatalf("chart %s is a %T, want a v2 chart", dir, c)
	}
	// The NATS chart, if `helm dependency build` fetched it into charts/
	// here, is not what these tests check: they render Herald's templates
	// the same whether it is there or not.
	ch.SetDependencies(slices.DeleteFunc(ch.Dependencies(), func(d *chart.Chart) bool { return d.Name() == "nats" })...)
	return ch
}

// renderChart renders the herald chart with baseValues and then sets (each
// as --set takes it), as `helm install herald deploy/helm/herald -n herald`
// would.
func renderChart(t *testing.T, sets ...string) (map[string]string, error) {
	t.Helper()
	return renderChartAt(t, loadChart(t, chartDir), release, slices.Concat(baseValues, sets))
}

// renderChartAt renders ch as release name with sets, in strict mode: a
// template that reads a value the values do not have fails.
func renderChartAt(t *testing.T, ch *chart.Chart, name string, sets []string) (map[string]string, error) {
	t.Helper()
	vals := map[string]any{}
	for _, s := range sets {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatalf("--set %s: %v", s, err)
		}
	}
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		return nil, fmt.Errorf("process dependencies: %w", err)
	}
	top, err := util.ToRenderValues(ch, vals, common.ReleaseOptions{Name: name, Namespace: namespace, IsInstall: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("render values: %w", err)
	}
	return engine.Engine{Strict: true}.Render(ch, top)
}

// render renders the herald chart and decodes every object strictly.
func render(t *testing.T, sets ...string) rendered {
	t.Helper()
	files, err := renderChart(t, sets...)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return decode(t, files)
}

// decode decodes every object of the rendered files strictly.
func decode(t *testing.T, files map[string]string) rendered {
	t.Helper()
	var out rendered
	for name, text := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			continue
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(text)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if isEmpty(doc) {
				continue
			}
			obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			if gvk.Kind == "" {
				t.Fatalf("%s: no kind", name)
			}
			out = append(out, object{template: name, obj: obj})
		}
	}
	if len(out) == 0 {
		t.Fatal("the chart rendered no objects")
	}
	return out
}

// isEmpty reports whether a YAML document holds only comments and blanks.
func isEmpty(doc []byte) bool {
	for line := range strings.SplitSeq(string(doc), "\n") {
		if l := strings.TrimSpace(line); l != "" && l != "---" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// all returns the rendered objects of type T.
func all[T runtime.Object](r rendered) []T {
	var out []T
	for _, o := range r {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the rendered object of type T named name.
func one[T interface {
	runtime.Object
	GetName() string
}](t *testing.T, r rendered, name string) T {
	t.Helper()
	for _, v := range all[T](r) {
		if v.GetName() == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %q among %d objects", zero, name, len(r))
	return zero
}

// container returns the container of p named name.
func container(t *testing.T, p *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	return named(t, "container", p.Containers, func(c corev1.Container) string { return c.Name }, name)
}

// volume returns the volume of p named name.
func volume(t *testing.T, p *corev1.PodSpec, name string) *corev1.Volume {
	t.Helper()
	return named(t, "volume", p.Volumes, func(v corev1.Volume) string { return v.Name }, name)
}

// named returns the item of items that nameOf names name, failing the
// test, which names it a what, when there is none.
func named[T any](t *testing.T, what string, items []T, nameOf func(T) string, name string) *T {
	t.Helper()
	i := slices.IndexFunc(items, func(v T) bool { return nameOf(v) == name })
	if i < 0 {
		t.Fatalf("no %s %q", what, name)
	}
	return &items[i]
}

func env(t *testing.T, c *corev1.Container, name string) (corev1.EnvVar, int) {
	t.Helper()
	for i, e := range c.Env {
		if e.Name == name {
			return e, i
		}
	}
	t.Fatalf("container %s: no env %s", c.Name, name)
	return corev1.EnvVar{}, -1
}

// flagValue returns the value of --name=value among args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name {
			return "", true
		}
	}
	return "", false
}

// cliFlags returns the flags of `herald COMMAND` as docs/reference/cli.md
// lists them (that page is checked against the binary's own -h output by
// the root module's tests).
func cliFlags(t *testing.T, command string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../../docs/reference/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## herald "+command+"\n")
	if !ok {
		t.Fatalf("cli.md: no section for herald %s", command)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\|").FindAllStringSubmatch(section, -1) {
		flags[m[1]] = true
	}
	if len(flags) < 10 {
		t.Fatalf("cli.md: only %d flags for herald %s", len(flags), command)
	}
	return flags
}

// checkFlags fails for an argument that is no flag of `herald command`
// in docs/reference/cli.md, and then hands the arguments to the real
// herald binary, which must parse every one of them, values included.
func checkFlags(t *testing.T, command string, args []string) {
	t.Helper()
	if len(args) == 0 || args[0] != command {
		t.Fatalf("args %v: want the %s subcommand first", args, command)
	}
	known := cliFlags(t, command)
	for _, a := range args[1:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !known[name] {
			t.Errorf("herald %s has no flag %q (docs/reference/cli.md)", command, a)
		}
	}
	checkBinaryParses(t, args)
}

// heraldDir holds the herald binary built for these tests.
var heraldDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	heraldDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// heraldBinary builds cmd/herald of the repository once.
var heraldBinary = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(heraldDir, "herald")
	out, err := exec.Command("go", "build", "-C", "../..", "-o", bin, "./cmd/herald").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build herald: %v\n%s", err, out)
	}
	return bin, nil
})

// checkBinaryParses runs `herald ARGS... -h`: the binary parses every
// flag before -h and prints its usage, or reports the first flag it does
// not know or whose value it cannot parse. No HERALD_* variable is set.
func checkBinaryParses(t *testing.T, args []string) {
	t.Helper()
	bin, err := heraldBinary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append(slices.Clone(args), "-h")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run() // -h exits non-zero
	if out := stderr.String(); strings.Contains(out, "herald: ") || !strings.Contains(out, "usage: herald "+args[0]) {
		first, _, _ := strings.Cut(out, "\n")
		t.Errorf("herald %s refuses the chart's flags %v: %s", args[0], args[1:], first)
	}
}

// checkProbes checks a container's probes: /healthz for startup and
// liveness, /readyz for readiness, all on the named port.
func checkProbes(t *testing.T, c *corev1.Container, port string) {
	t.Helper()
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == port }) {
		t.Errorf("container %s: no port %q for its probes", c.Name, port)
	}
	for what, p := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"startup": {c.StartupProbe, "/healthz"}, "liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("container %s: no HTTP %s probe", c.Name, what)
			continue
		}
		if g := p.probe.HTTPGet; g.Path != p.path || g.Port.StrVal != port {
			t.Errorf("container %s: %s probe on %s port %q, want %s port %q", c.Name, what, g.Path, g.Port.String(), p.path, port)
		}
	}
}

// checkSecretRef checks that env var name comes from key of Secret secret.
func checkSecretRef(t *testing.T, c *corev1.Container, name, secret, key string) {
	t.Helper()
	e, _ := env(t, c, name)
	if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
		t.Fatalf("container %s: %s must come from a Secret", c.Name, name)
	}
	if r := e.ValueFrom.SecretKeyRef; r.Name != secret || r.Key != key {
		t.Errorf("container %s: %s from Secret %s key %s, want %s key %s", c.Name, name, r.Name, r.Key, secret, key)
	}
}

// checkNATSURL checks that HERALD_NATS is the URL of user at host with the
// password of NATS_PASSWORD, which is defined before it so that the kubelet
// expands it.
func checkNATSURL(t *testing.T, c *corev1.Container, user, host string) {
	t.Helper()
	url, i := env(t, c, "HERALD_NATS")
	if want := "nats://" + user + ":$(NATS_PASSWORD)@" + host; url.Value != want {
		t.Errorf("container %s: HERALD_NATS %q, want %q", c.Name, url.Value, want)
	}
	if _, j := env(t, c, "NATS_PASSWORD"); j > i {
		t.Errorf("container %s: NATS_PASSWORD is defined after HERALD_NATS and would not be expanded", c.Name)
	}
}

func TestChart_StrictDecodingRefusesUnknownFields(t *testing.T) {
	bad := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n")
	if _, _, err := strictDecoder.Decode(bad, nil, nil); err == nil || !strings.Contains(err.Error(), "selectr") {
		t.Fatalf("strict decoding of an unknown field: %v", err)
	}
}

func TestChart_Issuer(t *testing.T) {
	r := render(t)
	set := one[*appsv1.StatefulSet](t, r, "herald-issuer")
	if set.Spec.Replicas == nil || *set.Spec.Replicas != 2 {
		t.Errorf("issuer replicas = %v, want the default 2", set.Spec.Replicas)
	}
	if svc := one[*corev1.Service](t, r, set.Spec.ServiceName); svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("serviceName %s is not headless", set.Spec.ServiceName)
	}
	pod := &set.Spec.Template.Spec
	c := container(t, pod, "issuer")
	checkFlags(t, "issuer", c.Args)
	for _, want := range []string{"--http=0.0.0.0:8420", "--data=/var/lib/herald", "--replicas=3",
		"--issuer-url=" + issuerURL, "--audience=herald", "--key-rotation=24h"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("issuer args %v: want %s", c.Args, want)
		}
	}
	checkProbes(t, c, "http")
	for _, svc := range []string{"herald-issuer", "herald-issuer-pods"} {
		if p := one[*corev1.Service](t, r, svc).Spec.Ports[0]; p.TargetPort.StrVal != "http" {
			t.Errorf("service %s: target port %q", svc, p.TargetPort.String())
		}
	}

	// Pebble state on a persistent volume per replica, at --data.
	if len(set.Spec.VolumeClaimTemplates) != 1 || set.Spec.VolumeClaimTemplates[0].Name != "data" {
		t.Fatalf("want one volumeClaimTemplate named data, got %d", len(set.Spec.VolumeClaimTemplates))
	}
	if size := set.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests.Storage(); size.String() != "1Gi" {
		t.Errorf("data volume %s, want 1Gi", size)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "data" && m.MountPath == "/var/lib/herald" }) {
		t.Errorf("issuer mounts %v: want data at /var/lib/herald", c.VolumeMounts)
	}

	// The event key: a file from the chart's Secret, owner-read-only, at
	// the path --event-key-file names.
	keyFile, ok := flagValue(c.Args, "event-key-file")
	if !ok {
		t.Fatal("issuer: no --event-key-file")
	}
	v := volume(t, pod, "event-key")
	if v.Secret == nil || v.Secret.SecretName != "herald-event-key" {
		t.Fatalf("event-key volume %+v: want the Secret herald-event-key", v.VolumeSource)
	}
	if m := v.Secret.DefaultMode; m == nil || *m != 0o400 {
		t.Errorf("event key defaultMode %v, want 0400", m)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		for _, it := range v.Secret.Items {
			if m.Name == "event-key" && m.ReadOnly && m.MountPath+"/"+it.Path == keyFile {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("--event-key-file %s is not the read-only mount of the event-key Secret", keyFile)
	}
	if fsg := pod.SecurityContext.FSGroup; fsg == nil || *fsg != *pod.SecurityContext.RunAsUser {
		t.Error("the pod's fsGroup must be the issuer's group: it writes the volume and reads the key (0440)")
	}
	secret := one[*corev1.Secret](t, r, "herald-event-key")
	if string(secret.Data["event-key.pem"]) != "-----BEGIN PRIVATE KEY-----" {
		t.Errorf("event key Secret holds %q", secret.Data["event-key.pem"])
	}

	// The admin credential and the NATS password from Secrets, never in
	// the manifest or the flags.
	checkSecretRef(t, c, "HERALD_ADMIN_TOKEN", "herald-admin", "admin-token")
	if got := one[*corev1.Secret](t, r, "herald-admin").Data["admin-token"]; string(got) != adminTok {
		t.Errorf("admin Secret holds %q", got)
	}
	checkSecretRef(t, c, "NATS_PASSWORD", "herald-nats", "issuer")
	checkNATSURL(t, c, "issuer", "herald-nats:4222")
	nats := one[*corev1.Secret](t, r, "herald-nats")
	if string(nats.Data["issuer"]) != "issuer-pw" || string(nats.Data["verifier"]) != "verifier-pw" {
		t.Errorf("NATS Secret holds %v", nats.Data)
	}
	for _, a := range c.Args {
		if strings.Contains(a, adminTok) || strings.Contains(a, "-pw") {
			t.Errorf("a secret in the issuer's flags: %s", a)
		}
	}

	checkPodSecurity(t, pod)
	pdb := one[*policyv1.PodDisruptionBudget](t, r, "herald-issuer")
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntVal != 1 {
		t.Errorf("PodDisruptionBudget minAvailable %v", pdb.Spec.MinAvailable)
	}
	if len(all[*networkingv1.NetworkPolicy](r)) != 0 {
		t.Error("a NetworkPolicy without networkPolicy.enabled")
	}
	if len(all[*appsv1.Deployment](r)) != 0 {
		t.Error("the example application without example.enabled")
	}
}

// checkPodSecurity checks the restricted Pod Security Standard on a pod.
func checkPodSecurity(t *testing.T, pod *corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod: want runAsNonRoot and the RuntimeDefault seccomp profile")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod: no Herald pod needs the Kubernetes API token")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s: want a read-only root, no privilege escalation, no capabilities", c.Name)
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: want a memory request and limit", c.Name)
		}
	}
}

func TestChart_IssuerReplicasAndNetworkPolicy(t *testing.T) {
	r := render(t, "issuer.replicas=5", "networkPolicy.enabled=true",
		"issuer.extraArgs={--max-access-ttl=10m}", "nats.enabled=false", "natsHost=nats.example.svc:4222")
	set := one[*appsv1.StatefulSet](t, r, "herald-issuer")
	if set.Spec.Replicas == nil || *set.Spec.Replicas != 5 {
		t.Errorf("issuer replicas = %v, want 5", set.Spec.Replicas)
	}
	c := container(t, &set.Spec.Template.Spec, "issuer")
	checkFlags(t, "issuer", c.Args)
	if !slices.Contains(c.Args, "--max-access-ttl=10m") {
		t.Errorf("issuer args %v: extraArgs missing", c.Args)
	}
	checkNATSURL(t, c, "issuer", "nats.example.svc:4222")
	np := one[*networkingv1.NetworkPolicy](t, r, "herald-issuer")
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.StrVal != "http" {
		t.Errorf("NetworkPolicy ingress %+v: want the API port only", np.Spec.Ingress)
	}
	if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != set.Spec.Template.Labels["app.kubernetes.io/name"] {
		t.Error("the NetworkPolicy does not select the issuer pods")
	}
}

func TestChart_ExistingSecrets(t *testing.T) {
	r := render(t, "eventKey.pem=", "eventKey.existingSecret=ops-event-key",
		"admin.token=", "admin.existingSecret=ops-admin", "natsAuth.create=false", "natsAuth.secretName=ops-nats")
	if s := all[*corev1.Secret](r); len(s) != 0 {
		t.Errorf("the chart created %d Secrets though existing ones are named", len(s))
	}
	pod := &one[*appsv1.StatefulSet](t, r, "herald-issuer").Spec.Template.Spec
	c := container(t, pod, "issuer")
	checkSecretRef(t, c, "HERALD_ADMIN_TOKEN", "ops-admin", "admin-token")
	checkSecretRef(t, c, "NATS_PASSWORD", "ops-nats", "issuer")
	v := volume(t, pod, "event-key")
	if v.Secret == nil || v.Secret.SecretName != "ops-event-key" || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
		t.Errorf("event-key volume %+v: want Secret ops-event-key, mode 0400", v.VolumeSource)
	}
}

func TestChart_RefusesBadValues(t *testing.T) {
	for name, tt := range map[string]struct {
		sets []string
		want string // in the error
	}{
		"unknown verifier mode": {[]string{"example.enabled=true", "verifier.mode=oauth"}, `verifier.mode "oauth"`},
		"no issuer URL":         {[]string{"issuerURL="}, "issuerURL is required"},
		"no event kid":          {[]string{"eventKey.kid="}, "eventKey.kid is required"},
		"no event key":          {[]string{"eventKey.pem="}, "eventKey.pem or eventKey.existingSecret is required"},
		"no admin token":        {[]string{"admin.token="}, "admin.token or admin.existingSecret is required"},
		"short admin token":     {[]string{"admin.token=0123456789abcdef0123456789abcde"}, "admin.token is 31 bytes"},
		"no NATS password":      {[]string{"natsAuth.verifierPassword="}, "natsAuth.verifierPassword is required"},
		"no NATS at all":        {[]string{"nats.enabled=false"}, "natsHost is required"},
		"proxy without app":     {[]string{"example.enabled=true", "verifier.upstream="}, "verifier.upstream is required"},
		"client without secret": {[]string{"example.enabled=true", "verifier.mode=cookie", "verifier.cookie.clientID=web"}, "clientSecretSecret is required"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := renderChart(t, tt.sets...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("render with %v: %v, want an error saying %q", tt.sets, err, tt.want)
			}
		})
	}
}

func TestChart_IssuerDisabledRendersNothing(t *testing.T) {
	files, err := renderChart(t, "issuer.enabled=false", "nats.enabled=false", "natsHost=nats:4222")
	if err != nil {
		t.Fatal(err)
	}
	for name, text := range files {
		if !strings.HasSuffix(name, "NOTES.txt") && !isEmpty([]byte(text)) {
			t.Errorf("%s rendered with issuer.enabled=false:\n%s", name, text)
		}
	}
}

// TestChart_VerifierModes renders the example application with the
// verifier sidecar in each mode.
func TestChart_VerifierModes(t *testing.T) {
	tests := []struct {
		mode   string
		sets   []string
		probes string // the port the probes use
		target string // the port the application's Service sends to
		want   []string
		absent []string
	}{
		{
			mode: "forward-auth", probes: "herald", target: "app",
			want:   []string{"--http=0.0.0.0:8421"},
			absent: []string{"upstream", "admin-http", "cookie-sessions", "grpc"},
		},
		{
			// Envoy or Istio in the pod asks over gRPC ext_authz.
			mode: "forward-auth", probes: "herald", target: "app", sets: []string{"verifier.grpcPort=9001"},
			want:   []string{"--http=0.0.0.0:8421", "--grpc=127.0.0.1:9001"},
			absent: []string{"upstream", "admin-http", "cookie-sessions"},
		},
		{
			mode: "proxy", probes: "herald-admin", target: "herald",
			want:   []string{"--http=0.0.0.0:8421", "--admin-http=0.0.0.0:8422", "--upstream=http://127.0.0.1:8080"},
			absent: []string{"cookie-sessions", "cookie-key-file"},
		},
		{
			mode: "cookie", probes: "herald-admin", target: "herald",
			sets: []string{"verifier.cookie.keySecret=app-cookie-key", "verifier.cookie.loginPath=/login",
				"verifier.cookie.public={/login,/static/}", "verifier.cookie.clientID=web",
				"verifier.cookie.clientSecretSecret=app-cookie-client"},
			want: []string{"--admin-http=0.0.0.0:8422", "--upstream=http://127.0.0.1:8080", "--cookie-sessions",
				"--issuer-url=" + issuerURL, "--cookie-key-file=/etc/herald-cookie/cookie.key",
				"--cookie-login-path=/login", "--cookie-public=/login,/static/", "--cookie-client-id=web",
				"--cookie-client-secret-file=/etc/herald-cookie-client/client-secret"},
		},
	}
	for _, tt := range tests {
		name := tt.mode
		if slices.Contains(tt.sets, "verifier.grpcPort=9001") {
			name += " with gRPC"
		}
		t.Run(name, func(t *testing.T) {
			r := render(t, slices.Concat([]string{"example.enabled=true", "verifier.mode=" + tt.mode}, tt.sets)...)
			app := one[*appsv1.Deployment](t, r, "example-app")
			pod := &app.Spec.Template.Spec
			if len(pod.Containers) != 2 {
				t.Errorf("want the application and the verifier in one pod, got %d containers", len(pod.Containers))
			}
			container(t, pod, "app")
			c := container(t, pod, "herald-verifier")
			checkFlags(t, "verifier", c.Args)
			for _, w := range append(tt.want, "--data=/var/lib/herald", "--issuer="+issuerURL, "--audience=herald", "--on-stale=deny") {
				if !slices.Contains(c.Args, w) {
					t.Errorf("verifier args %v: want %s", c.Args, w)
				}
			}
			for _, a := range tt.absent {
				if v, ok := flagValue(c.Args, a); ok {
					t.Errorf("verifier args: --%s=%s in %s mode", a, v, tt.mode)
				}
			}
			checkProbes(t, c, tt.probes)
			checkPodSecurity(t, pod)
			if svc := one[*corev1.Service](t, r, "example-app"); svc.Spec.Ports[0].TargetPort.StrVal != tt.target {
				t.Errorf("application Service targets %q, want %q", svc.Spec.Ports[0].TargetPort.String(), tt.target)
			}

			if e, _ := env(t, c, "HERALD_EVENT_KEYS"); e.Value != eventKid {
				t.Errorf("HERALD_EVENT_KEYS %q, want the event key's kid %q", e.Value, eventKid)
			}
			if e, _ := env(t, c, "HERALD_ID"); e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
				t.Error("HERALD_ID: want the pod's name")
			}
			checkSecretRef(t, c, "NATS_PASSWORD", "herald-nats", "verifier")
			checkNATSURL(t, c, "verifier", "herald-nats:4222")
			if g, ok := flagValue(c.Args, "grpc"); ok && !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
				return p.Name == "herald-grpc" && strings.HasSuffix(g, fmt.Sprintf(":%d", p.ContainerPort))
			}) {
				t.Errorf("--grpc=%s is not the container's port herald-grpc", g)
			}
			if data := volume(t, pod, "herald-data"); data.EmptyDir == nil {
				t.Error("the denylist's volume: want an emptyDir")
			}

			if tt.mode != "cookie" {
				return
			}
			// The cookie key and the client secret: Secrets mounted
			// owner-read-only where the flags name them.
			for vol, flag := range map[string]string{"herald-cookie-key": "cookie-key-file", "herald-cookie-client": "cookie-client-secret-file"} {
				v := volume(t, pod, vol)
				if v.Secret == nil || v.Secret.DefaultMode == nil || *v.Secret.DefaultMode != 0o400 {
					t.Errorf("volume %s %+v: want a Secret with defaultMode 0400", vol, v.VolumeSource)
					continue
				}
				file, _ := flagValue(c.Args, flag)
				if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
					return m.Name == vol && m.ReadOnly && m.MountPath+"/"+v.Secret.Items[0].Path == file
				}) {
					t.Errorf("--%s=%s is not the read-only mount of volume %s", flag, file, vol)
				}
			}
			if s := volume(t, pod, "herald-cookie-key").Secret.SecretName; s != "app-cookie-key" {
				t.Errorf("cookie key from Secret %s", s)
			}
			// The verifier accepts a key its group may read, as a secret
			// is in a pod with an fsGroup.
			if pod.SecurityContext.FSGroup == nil {
				t.Error("cookie mode: want the pod's fsGroup, or the verifier (non-root) cannot read the key")
			}
		})
	}
}

// TestChart_CookieWithoutSharedKey: without a key Secret each pod creates
// its own key in its data directory; no cookie volume is mounted.
func TestChart_CookieWithoutSharedKey(t *testing.T) {
	r := render(t, "example.enabled=true", "verifier.mode=cookie")
	pod := &one[*appsv1.Deployment](t, r, "example-app").Spec.Template.Spec
	c := container(t, pod, "herald-verifier")
	if _, ok := flagValue(c.Args, "cookie-key-file"); ok {
		t.Error("--cookie-key-file without verifier.cookie.keySecret")
	}
	if !slices.Contains(c.Args, "--cookie-sessions") {
		t.Error("cookie mode without --cookie-sessions")
	}
	if len(pod.Volumes) != 1 {
		t.Errorf("volumes %v: want the data directory alone", pod.Volumes)
	}
}

// TestChart_NATSDependency checks the pinned NATS chart. The NATS chart
// itself is not vendored, so it is read from Chart.yaml rather than
// rendered; the values handed to it are checked by the root module's
// deploy tests (TestHelmChart_NATSValues), beside the plain manifests'
// NATS values.
func TestChart_NATSDependency(t *testing.T) {
	ch := loadChart(t, chartDir)
	var dep *chart.Dependency
	for _, d := range ch.Metadata.Dependencies {
		if d.Name == "nats" {
			dep = d
		}
	}
	if dep == nil {
		t.Fatal("Chart.yaml: no dependency on the nats chart")
	}
	if dep.Repository != "https://nats-io.github.io/k8s/helm/charts/" {
		t.Errorf("nats repository %q, want the official chart repository", dep.Repository)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(dep.Version) {
		t.Errorf("nats version %q: want one pinned version, not a range", dep.Version)
	}
	if dep.Condition != "nats.enabled" {
		t.Errorf("nats condition %q, want nats.enabled", dep.Condition)
	}
}

// TestChart_SecretsAreBase64 guards the chart's b64enc: a Secret's data
// must decode to the value given, byte for byte.
func TestChart_SecretsAreBase64(t *testing.T) {
	const token = "a+b/c==0123456789abcdef0123456789abcdef"
	files, err := renderChart(t, "admin.token="+token)
	if err != nil {
		t.Fatal(err)
	}
	want := "admin-token: " + base64.StdEncoding.EncodeToString([]byte(token))
	if !bytes.Contains([]byte(files["herald/templates/secrets.yaml"]), []byte(want)) {
		t.Errorf("secrets.yaml lacks %q", want)
	}
}

// TestChart_ApplicationChartIncludesSidecar renders an application's own
// chart (testdata/app) that depends on the herald chart for its templates
// alone, as docs/kubernetes.md shows.
func TestChart_ApplicationChartIncludesSidecar(t *testing.T) {
	for _, mode := range []string{"forward-auth", "proxy", "cookie"} {
		t.Run(mode, func(t *testing.T) {
			app := loadChart(t, "testdata/app")
			app.AddDependency(loadChart(t, chartDir))
			files, err := renderChartAt(t, app, "shop", []string{"heraldVerifier.mode=" + mode})
			if err != nil {
				t.Fatal(err)
			}
			r := decode(t, files)
			if len(r) != 1 {
				t.Errorf("rendered %d objects, want the application's Deployment alone (the herald chart's are off)", len(r))
			}
			pod := &one[*appsv1.Deployment](t, r, "shop").Spec.Template.Spec
			container(t, pod, "shop")
			c := container(t, pod, "herald-verifier")
			checkFlags(t, "verifier", c.Args)
			for _, w := range []string{"--issuer=https://auth.example.com", "--audience=shop"} {
				if !slices.Contains(c.Args, w) {
					t.Errorf("verifier args %v: want %s", c.Args, w)
				}
			}
			_, proxied := flagValue(c.Args, "upstream")
			if proxied != (mode != "forward-auth") {
				t.Errorf("%s mode: --upstream present: %v", mode, proxied)
			}
			checkNATSURL(t, c, "verifier", "herald-nats.herald.svc:4222")
			if e, _ := env(t, c, "HERALD_EVENT_KEYS"); e.Value != "evt-shop" {
				t.Errorf("HERALD_EVENT_KEYS %q", e.Value)
			}
			volume(t, pod, "herald-data")
			checkPodSecurity(t, pod)
		})
	}
}

// TestChart_Lint runs Helm's own linter (`helm lint`): the chart file,
// values, templates rendered for the default Kubernetes version, and no
// deprecated or removed API. The NATS chart missing from charts/ (until
// `helm dependency build` fetches it, which needs the network) is expected.
func TestChart_Lint(t *testing.T) {
	vals := map[string]any{}
	for _, s := range slices.Concat(baseValues, []string{"example.enabled=true", "networkPolicy.enabled=true"}) {
		if err := strvals.ParseInto(s, vals); err != nil {
			t.Fatal(err)
		}
	}
	msgs := lint.RunAll(chartDir, vals, namespace).Messages
	if len(msgs) == 0 {
		t.Fatal("helm lint said nothing, not even about the chart's icon: did it run?")
	}
	for _, m := range msgs {
		switch {
		case strings.Contains(m.Err.Error(), "chart directory is missing these dependencies: nats"):
			// Until `helm dependency build`.
		case m.Severity >= support.WarningSev:
			t.Errorf("helm lint: %s", m)
		default:
			t.Logf("helm lint: %s", m)
		}
	}
}
