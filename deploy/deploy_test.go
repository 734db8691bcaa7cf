package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// The deployment files are checked here so that a typo fails CI: every
// Kubernetes manifest decodes strictly into the Kubernetes API types, the
// NATS configurations go through nats-server's own parser (and the hub's
// and leaf's permissions are tried on real servers), the systemd units and
// the Dockerfile hold what they must, and every herald flag they pass
// exists.

// k8sObject is one decoded manifest document.
type k8sObject struct {
	file string
	kind string
	name string
	obj  any
}

// newK8sObject returns an empty value of the API type of kind.
func newK8sObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	}
	return nil, fmt.Errorf("no API type for %s %s; add it to newK8sObject", apiVersion, kind)
}

// yamlDocs splits a multi-document YAML file.
func yamlDocs(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(d, "")) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// loadManifests decodes every document of every k8s/*.yaml but the Helm
// values, strictly: an unknown or misspelt field is an error.
func loadManifests(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	var objs []k8sObject
	for _, f := range files {
		if filepath.Base(f) == "nats-values.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range yamlDocs(data) {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			obj, err := newK8sObject(meta.APIVersion, meta.Kind)
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s: %s %s: %v", f, meta.Kind, meta.Metadata.Name, err)
			}
			objs = append(objs, k8sObject{file: f, kind: meta.Kind, name: meta.Metadata.Name, obj: obj})
		}
	}
	return objs
}

// podTemplates returns the pod templates of the workloads.
func podTemplates(objs []k8sObject) map[string]*corev1.PodTemplateSpec {
	pods := map[string]*corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch w := o.obj.(type) {
		case *appsv1.Deployment:
			pods[o.kind+"/"+o.name] = &w.Spec.Template
		case *appsv1.StatefulSet:
			pods[o.kind+"/"+o.name] = &w.Spec.Template
		}
	}
	return pods
}

func TestK8s_ManifestsDecodeStrictly(t *testing.T) {
	objs := loadManifests(t)
	kinds := map[string]int{}
	for _, o := range objs {
		kinds[o.kind]++
		if ns, ok := o.obj.(interface{ GetNamespace() string }); ok && o.kind != "Namespace" && ns.GetNamespace() != "herald" {
			t.Errorf("%s %s: namespace %q, want herald", o.kind, o.name, ns.GetNamespace())
		}
	}
	for _, k := range []string{"Namespace", "Service", "Deployment", "StatefulSet", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
	// A typo in a field name must fail, not vanish.
	bad := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n")
	if err := yaml.UnmarshalStrict(bad, &corev1.Service{}); err == nil {
		t.Fatal("strict decoding accepted an unknown field")
	}
}

func TestK8s_IssuerReplicasAndVerifierSidecar(t *testing.T) {
	objs := loadManifests(t)
	var (
		issuerSet *appsv1.StatefulSet
		app       *appsv1.Deployment
	)
	services := map[string]*corev1.Service{}
	for _, o := range objs {
		switch w := o.obj.(type) {
		case *appsv1.StatefulSet:
			if o.name == "herald-issuer" {
				issuerSet = w
			}
		case *appsv1.Deployment:
			app = w
		case *corev1.Service:
			services[o.name] = w
		}
	}
	if issuerSet == nil || app == nil {
		t.Fatal("want the herald-issuer StatefulSet and an application Deployment")
	}
	if r := issuerSet.Spec.Replicas; r == nil || *r < 2 {
		t.Errorf("issuer replicas = %v, want at least 2", r)
	}
	if len(issuerSet.Spec.VolumeClaimTemplates) == 0 {
		t.Error("issuer replicas need a persistent volume each for keys, sessions and the outbox")
	}
	if svc := services[issuerSet.Spec.ServiceName]; svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("issuer serviceName %q is not a headless Service", issuerSet.Spec.ServiceName)
	}
	issuerArgs := containerNamed(t, &issuerSet.Spec.Template, "issuer").Args
	if !slices.Contains(issuerArgs, "--replicas=3") {
		t.Errorf("issuer args %v: want --replicas=3 on the NATS cluster", issuerArgs)
	}
	sidecar := containerNamed(t, &app.Spec.Template, "herald-verifier")
	if len(app.Spec.Template.Spec.Containers) < 2 {
		t.Error("the verifier must run beside the application, in the same pod")
	}
	if !slices.Contains(sidecar.Args, "verifier") {
		t.Errorf("sidecar args %v: want the verifier subcommand", sidecar.Args)
	}
	// In proxy mode the verifier's own endpoints are on --admin-http: the
	// probes use that port, which no Service exposes.
	if slices.ContainsFunc(sidecar.Args, func(a string) bool { return strings.HasPrefix(a, "--upstream=") }) {
		var admin int32
		for _, a := range sidecar.Args {
			if v, ok := strings.CutPrefix(a, "--admin-http="); ok {
				_, port, _ := net.SplitHostPort(v)
				fmt.Sscan(port, &admin)
			}
		}
		var adminName string
		for _, p := range sidecar.Ports {
			if p.ContainerPort == admin {
				adminName = p.Name
			}
		}
		if adminName == "" {
			t.Fatalf("proxy-mode sidecar: --admin-http port %d is not one of its named ports", admin)
		}
		for what, p := range map[string]*corev1.Probe{"startup": sidecar.StartupProbe, "liveness": sidecar.LivenessProbe, "readiness": sidecar.ReadinessProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.StrVal != adminName {
				t.Errorf("proxy-mode sidecar: %s probe not on the admin port %q", what, adminName)
			}
		}
		for name, svc := range services {
			for _, port := range svc.Spec.Ports {
				if port.TargetPort.StrVal == adminName || port.TargetPort.IntVal == admin {
					t.Errorf("service %s exposes the verifier's admin port", name)
				}
			}
		}
	}
	// Every Service selects pods of some workload, on a port they name.
	pods := podTemplates(objs)
	for name, svc := range services {
		matched := false
		for _, p := range pods {
			if selects(svc.Spec.Selector, p.Labels) {
				matched = true
				for _, port := range svc.Spec.Ports {
					if port.TargetPort.Type == intstr.String && !hasPort(p, port.TargetPort.StrVal) {
						t.Errorf("service %s: target port %q is no container port of its pods", name, port.TargetPort.StrVal)
					}
				}
			}
		}
		if !matched {
			t.Errorf("service %s selects no pods", name)
		}
	}
}

func containerNamed(t *testing.T, p *corev1.PodTemplateSpec, name string) *corev1.Container {
	t.Helper()
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return &p.Spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func hasPort(p *corev1.PodTemplateSpec, name string) bool {
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			if port.Name == name {
				return true
			}
		}
	}
	return false
}

func TestK8s_SecurityAndProbes(t *testing.T) {
	for name, p := range podTemplates(loadManifests(t)) {
		t.Run(name, func(t *testing.T) {
			psc := p.Spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Error("pod securityContext.runAsNonRoot must be true")
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Error("pod seccompProfile must be RuntimeDefault")
			}
			if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
				t.Error("no Herald pod needs the Kubernetes API: automountServiceAccountToken must be false")
			}
			volumes := map[string]bool{}
			for _, v := range p.Spec.Volumes {
				volumes[v.Name] = true
			}
			for _, c := range p.Spec.Containers {
				sc := c.SecurityContext
				switch {
				case sc == nil:
					t.Errorf("container %s: no securityContext", c.Name)
					continue
				case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
					t.Errorf("container %s: readOnlyRootFilesystem must be true", c.Name)
				case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
					t.Errorf("container %s: allowPrivilegeEscalation must be false", c.Name)
				case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
					t.Errorf("container %s: capabilities must drop ALL", c.Name)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
					t.Errorf("container %s: want cpu and memory requests", c.Name)
				}
				if c.Resources.Limits.Memory().IsZero() {
					t.Errorf("container %s: want a memory limit", c.Name)
				}
				for _, m := range c.VolumeMounts {
					// "data" is the issuer's volumeClaimTemplate, checked
					// in TestK8s_IssuerReplicasAndVerifierSidecar.
					if !volumes[m.Name] && m.Name != "data" {
						t.Errorf("container %s: mount %s has no volume", c.Name, m.Name)
					}
				}
				if !strings.Contains(c.Image, "herald") {
					continue
				}
				// Herald's containers: probes on its endpoints, data on a
				// volume (the root filesystem is read-only), and secrets
				// only from Secrets.
				checkProbe(t, c, "liveness", c.LivenessProbe, "/healthz")
				checkProbe(t, c, "readiness", c.ReadinessProbe, "/readyz")
				if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/var/lib/herald" }) ||
					!slices.Contains(c.Args, "--data=/var/lib/herald") {
					t.Errorf("container %s: --data must be a mounted volume at /var/lib/herald", c.Name)
				}
				for _, e := range c.Env {
					secret := strings.Contains(e.Name, "TOKEN") || e.Name == "HERALD_NATS"
					if secret && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
						t.Errorf("container %s: %s must come from a Secret", c.Name, e.Name)
					}
				}
			}
		})
	}
}

func checkProbe(t *testing.T, c corev1.Container, what string, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("container %s: no HTTP %s probe", c.Name, what)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("container %s: %s probe on %s, want %s", c.Name, what, p.HTTPGet.Path, path)
	}
	port := p.HTTPGet.Port
	if port.Type == intstr.String && !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == port.StrVal }) {
		t.Errorf("container %s: %s probe port %q is not one of its ports", c.Name, what, port.StrVal)
	}
}

// natsValues is the part of the NATS Helm chart's values (nats-io/k8s,
// chart "nats" 1.x) that nats-values.yaml and the Herald chart's
// values.yaml (under nats) set, field for field; decoding
// is strict, so a key the chart does not have fails here instead of being
// ignored by Helm. Keep it in step with the chart's values.yaml.
type natsValues struct {
	// Enabled and FullnameOverride are the Herald chart's switches of its
	// NATS dependency (deploy/helm/herald); nats-values.yaml has neither.
	Enabled          bool   `json:"enabled"`
	FullnameOverride string `json:"fullnameOverride"`
	Config           struct {
		Cluster struct {
			Enabled  bool `json:"enabled"`
			Replicas int  `json:"replicas"`
		} `json:"cluster"`
		JetStream struct {
			Enabled   bool `json:"enabled"`
			FileStore struct {
				Enabled bool   `json:"enabled"`
				Dir     string `json:"dir"`
				PVC     struct {
					Enabled          bool    `json:"enabled"`
					Size             string  `json:"size"`
					StorageClassName *string `json:"storageClassName,omitempty"`
				} `json:"pvc"`
			} `json:"fileStore"`
			Merge map[string]any `json:"merge"`
		} `json:"jetstream"`
		LeafNodes struct {
			Enabled bool           `json:"enabled"`
			Port    int            `json:"port"`
			Merge   map[string]any `json:"merge"`
		} `json:"leafnodes"`
		Monitor struct {
			Enabled bool `json:"enabled"`
		} `json:"monitor"`
		Merge map[string]any `json:"merge"`
	} `json:"config"`
	Container struct {
		// env: name → value, or name → {valueFrom: ...}; the chart
		// renders both. Only the second form is used here.
		Env map[string]struct {
			ValueFrom *corev1.EnvVarSource `json:"valueFrom"`
		} `json:"env"`
		Merge corev1.Container `json:"merge"`
	} `json:"container"`
	Reloader struct {
		Enabled bool             `json:"enabled"`
		Merge   corev1.Container `json:"merge"`
	} `json:"reloader"`
	PodTemplate struct {
		TopologySpreadConstraints map[string]struct {
			MaxSkew           int    `json:"maxSkew"`
			WhenUnsatisfiable string `json:"whenUnsatisfiable"`
		} `json:"topologySpreadConstraints"`
		Merge struct {
			Spec corev1.PodSpec `json:"spec"`
		} `json:"merge"`
	} `json:"podTemplate"`
	PodDisruptionBudget struct {
		Enabled bool `json:"enabled"`
	} `json:"podDisruptionBudget"`
	NatsBox struct {
		Enabled bool `json:"enabled"`
	} `json:"natsBox"`
	PromExporter struct {
		Enabled bool `json:"enabled"`
	} `json:"promExporter"`
}

func TestK8s_NATSHelmValues(t *testing.T) {
	data, err := os.ReadFile("k8s/nats-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v natsValues
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		t.Fatalf("nats-values.yaml: %v", err)
	}
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("cluster %+v: want enabled with 3 replicas", c.Cluster)
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled {
		t.Error("JetStream with file storage on a PVC is required")
	}
	if c.JetStream.Merge["domain"] != "hub" || c.JetStream.Merge["sync_interval"] != "always" {
		t.Errorf("jetstream merge %v: want domain hub (as deploy/nats) and sync_interval always", c.JetStream.Merge)
	}
	if !c.LeafNodes.Enabled {
		t.Error("leaf nodes must be enabled for edge sites")
	}
	if _, ok := c.Merge["accounts"]; !ok {
		t.Error("the HERALD account and its users are missing")
	}
	for _, name := range []string{"HERALD_NATS_ISSUER_PASSWORD", "HERALD_NATS_VERIFIER_PASSWORD", "HERALD_NATS_LEAF_PASSWORD"} {
		if e, ok := v.Container.Env[name]; !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s must come from a Secret", name)
		}
	}
	psc := v.PodTemplate.Merge.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("NATS pods must run as non-root")
	}
	for name, sc := range map[string]*corev1.SecurityContext{"nats": v.Container.Merge.SecurityContext, "reloader": v.Reloader.Merge.SecurityContext} {
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s container: want a read-only root filesystem and no privilege escalation", name)
		}
	}
	if v.Container.Merge.Resources.Requests.Memory().IsZero() {
		t.Error("NATS container: want resource requests")
	}
	// The same deny lists as accounts.conf, so the two setups agree.
	pubDeny, subDeny := denyList(t, c.Merge)
	hub := natsConfig(t, "nats/nats-1.conf")
	for _, u := range hub.Users {
		if u.Username == "verifier" {
			if got := u.Permissions.Publish.Deny; !slices.Equal(got, pubDeny) {
				t.Errorf("verifier publish denials differ:\n helm:  %v\n nats/: %v", pubDeny, got)
			}
			if got := u.Permissions.Subscribe.Deny; !slices.Equal(got, subDeny) {
				t.Errorf("verifier subscribe denials differ:\n helm:  %v\n nats/: %v", subDeny, got)
			}
		}
	}
}

// TestHelmChart_NATSValues checks what the Herald chart
// (deploy/helm/herald) hands to its NATS dependency: a cluster of three
// with JetStream synced on every write, the issuer at R3 on it, the
// passwords from the chart's Secret, and the verifier user's permissions
// of deploy/nats. The chart's own module renders the chart; these values
// are checked here, with the plain manifests' values.
func TestHelmChart_NATSValues(t *testing.T) {
	data, err := os.ReadFile("helm/herald/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Issuer struct {
			NATSReplicas int `json:"natsReplicas"`
		} `json:"issuer"`
		NATSAuth struct {
			SecretName string `json:"secretName"`
		} `json:"natsAuth"`
		NATS json.RawMessage `json:"nats"`
	}
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	// Strictly: a key the NATS chart does not have fails here instead of
	// being ignored by Helm.
	var n natsValues
	if err := yaml.UnmarshalStrict(v.NATS, &n); err != nil {
		t.Fatalf("values.yaml nats: %v", err)
	}
	if !n.Enabled {
		t.Error("nats.enabled: the chart brings its NATS cluster by default")
	}
	c := n.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("NATS cluster %+v: want enabled with 3 nodes", c.Cluster)
	}
	if v.Issuer.NATSReplicas != c.Cluster.Replicas {
		t.Errorf("issuer.natsReplicas %d on a cluster of %d: want R%d", v.Issuer.NATSReplicas, c.Cluster.Replicas, c.Cluster.Replicas)
	}
	if !c.JetStream.Enabled || !c.JetStream.FileStore.Enabled || !c.JetStream.FileStore.PVC.Enabled {
		t.Error("NATS: want JetStream with file storage on a persistent volume")
	}
	if c.JetStream.Merge["sync_interval"] != "always" {
		t.Errorf("jetstream merge %v: want sync_interval always (every write synced before its acknowledgement)", c.JetStream.Merge)
	}
	for _, user := range []string{"issuer", "verifier"} {
		e, ok := n.Container.Env["HERALD_NATS_"+strings.ToUpper(user)+"_PASSWORD"]
		if !ok || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("NATS: the %s password must come from a Secret", user)
			continue
		}
		if r := e.ValueFrom.SecretKeyRef; r.Name != v.NATSAuth.SecretName || r.Key != user {
			t.Errorf("NATS reads the %s password from %s/%s, Herald from %s/%s", user, r.Name, r.Key, v.NATSAuth.SecretName, user)
		}
	}
	pubDeny, subDeny := denyList(t, c.Merge)
	hub := natsConfig(t, "nats/nats-1.conf")
	for _, u := range hub.Users {
		if u.Username == "verifier" && (!slices.Equal(u.Permissions.Publish.Deny, pubDeny) || !slices.Equal(u.Permissions.Subscribe.Deny, subDeny)) {
			t.Errorf("verifier denials differ from deploy/nats:\n chart: %v %v\n nats/: %v %v", pubDeny, subDeny,
				u.Permissions.Publish.Deny, u.Permissions.Subscribe.Deny)
		}
	}
	if !slices.Contains(pubDeny, "herald.revoke.>") || !slices.Contains(subDeny, "herald.>") {
		t.Errorf("verifier denials %v %v: want revocations and the stream's subjects denied", pubDeny, subDeny)
	}
}

func denyList(t *testing.T, merge map[string]any) (publish, subscribe []string) {
	t.Helper()
	type denials struct {
		Deny []string `json:"deny"`
	}
	var m struct {
		Accounts map[string]struct {
			Users []struct {
				User        string `json:"user"`
				Permissions struct {
					Publish   denials `json:"publish"`
					Subscribe denials `json:"subscribe"`
				} `json:"permissions"`
			} `json:"users"`
		} `json:"accounts"`
	}
	data, _ := yaml.Marshal(merge)
	if err := yaml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, u := range m.Accounts["HERALD"].Users {
		if u.User == "verifier" {
			return u.Permissions.Publish.Deny, u.Permissions.Subscribe.Deny
		}
	}
	t.Fatal("no verifier user in the HERALD account")
	return nil, nil
}

// natsEnv sets the variables the NATS configurations read.
func natsEnv(t *testing.T, hubLeafURLs string) {
	t.Setenv("HERALD_NATS_ISSUER_PASSWORD", "issuer-secret")
	t.Setenv("HERALD_NATS_VERIFIER_PASSWORD", "verifier-secret")
	t.Setenv("HERALD_NATS_LEAF_PASSWORD", "leaf-secret")
	t.Setenv("HERALD_NATS_HUB_LEAF_URLS", hubLeafURLs)
}

func natsConfig(t *testing.T, file string) *server.Options {
	t.Helper()
	if os.Getenv("HERALD_NATS_ISSUER_PASSWORD") == "" {
		natsEnv(t, `["nats-leaf://leaf:leaf-secret@nats-1:7422", "nats-leaf://leaf:leaf-secret@nats-2:7422", "nats-leaf://leaf:leaf-secret@nats-3:7422"]`)
	}
	o, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return o
}

func TestNATS_ClusterConfigs(t *testing.T) {
	names := map[string]bool{}
	for i := 1; i <= 3; i++ {
		o := natsConfig(t, fmt.Sprintf("nats/nats-%d.conf", i))
		names[o.ServerName] = true
		if o.Cluster.Name != "herald" || o.Cluster.Port != 6222 {
			t.Errorf("nats-%d: cluster %q port %d", i, o.Cluster.Name, o.Cluster.Port)
		}
		var routes []string
		for _, r := range o.Routes {
			routes = append(routes, r.Host)
		}
		if !slices.Equal(routes, []string{"nats-1:6222", "nats-2:6222", "nats-3:6222"}) {
			t.Errorf("nats-%d: routes %v: every node lists all three", i, routes)
		}
		if !o.JetStream || o.JetStreamDomain != "hub" || !o.SyncAlways || o.StoreDir == "" {
			t.Errorf("nats-%d: JetStream %v domain %q sync always %v store %q", i, o.JetStream, o.JetStreamDomain, o.SyncAlways, o.StoreDir)
		}
		if o.LeafNode.Port != 7422 || o.LeafNode.Account != "HERALD" {
			t.Errorf("nats-%d: leaf nodes on %d into %q, want 7422 into HERALD", i, o.LeafNode.Port, o.LeafNode.Account)
		}
		if o.LameDuckDuration < 30*time.Second {
			t.Errorf("nats-%d: lame duck %s", i, o.LameDuckDuration)
		}
	}
	if len(names) != 3 {
		t.Errorf("server names %v: each node needs its own", names)
	}
	leaf := natsConfig(t, "nats/leaf.conf")
	if leaf.JetStream || len(leaf.LeafNode.Remotes) != 1 || leaf.LeafNode.Remotes[0].LocalAccount != "HERALD" || len(leaf.LeafNode.Remotes[0].URLs) != 3 {
		t.Errorf("leaf: JetStream %v, remotes %+v: want no JetStream and one remote with the 3 hub nodes into HERALD", leaf.JetStream, leaf.LeafNode.Remotes)
	}
}

// startNATS starts a server from opts adapted to a test: loopback, random
// ports, a temporary store, no cluster (a hub node alone is enough to try
// the accounts).
func startNATS(t *testing.T, opts *server.Options, leafPort int) *server.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the deployment's NATS configuration: skipped under -short")
	}
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.HTTPHost, opts.HTTPPort = "", 0
	opts.Cluster = server.ClusterOpts{}
	opts.Routes = nil
	opts.LeafNode.Host, opts.LeafNode.Port = "127.0.0.1", leafPort
	opts.LameDuckDuration, opts.LameDuckGracePeriod = 0, 0
	if opts.JetStream {
		opts.StoreDir = t.TempDir()
	}
	return bustest.RunOptions(t, opts)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func connectAs(t *testing.T, cfg bus.Config) *bus.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cfg.Logger = quiet
	c, err := bus.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// userURL returns the nats:// URL of s with a user and password.
func userURL(s *server.Server, user, password string) string {
	return fmt.Sprintf("nats://%s:%s@%s", user, password, s.Addr())
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestNATS_Permissions runs the shipped hub and leaf configurations: an
// issuer and verifiers (one on the hub, one through the leaf) work with
// their users, the verifier user shares cookie-session refreshes in
// HERALD_BFF, and it cannot publish a revocation, write a signing key or a
// session, create, change or delete the issuer's streams and buckets.
func TestNATS_Permissions(t *testing.T) {
	leafPort := freePort(t)
	natsEnv(t, fmt.Sprintf(`["nats-leaf://leaf:leaf-secret@127.0.0.1:%d"]`, leafPort))
	hub := startNATS(t, natsConfig(t, "nats/nats-1.conf"), leafPort)
	leaf := startNATS(t, natsConfig(t, "nats/leaf.conf"), 0)

	issuerConn := connectAs(t, bus.Config{URL: userURL(hub, "issuer", "issuer-secret")})
	svc, err := issuer.Open(t.Context(), issuer.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: "deploy-test-admin-token-32-bytes-long", Logger: quiet,
		ClientSecretCost: 4, IssuerURL: "https://auth.example.com",
	}, issuerConn)
	if err != nil {
		t.Fatalf("issuer with the issuer user: %v", err)
	}
	run(t, svc.Run, func() { svc.Close() })

	var scs []*sidecar.Sidecar
	for _, cfg := range []bus.Config{
		{URL: userURL(hub, "verifier", "verifier-secret")},
		{URL: userURL(leaf, "verifier", "verifier-secret"), JetStreamDomain: "hub"},
	} {
		sc, err := sidecar.Open(sidecar.Config{
			Verifier: verifier.Config{Issuer: "https://auth.example.com", Audience: issuer.DefaultAudience},
			DataDir:  t.TempDir(), NoListen: true, Logger: quiet, HeartbeatEvery: 100 * time.Millisecond,
		}, connectAs(t, cfg))
		if err != nil {
			t.Fatal(err)
		}
		run(t, sc.Run, func() { sc.Close() })
		scs = append(scs, sc)
	}
	bustest.WaitFor(t, 20*time.Second, func() error {
		for i, sc := range scs {
			if !sc.Ready() {
				return fmt.Errorf("verifier %d not ready: %+v", i, sc.Status())
			}
		}
		return nil
	})
	sess, err := svc.CreateSession(t.Context(), issuer.SessionRequest{Subject: "alice"}, "test")
	if err != nil {
		t.Fatal(err)
	}
	r, err := svc.Revoke(t.Context(), issuer.RevocationRequest{Kind: "session", Value: sess.SessionID}, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	for i, sc := range scs {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := sc.WaitApplied(ctx, r.Seq)
		cancel()
		if err != nil {
			t.Fatalf("verifier %d did not apply the revocation: %v", i, err)
		}
		if _, err := sc.Verifier().Verify(t.Context(), sess.AccessToken); !errors.Is(err, verifier.ErrRevoked) {
			t.Fatalf("verifier %d: %v, want revoked", i, err)
		}
	}

	// What the verifier user may not do, on the hub and through the leaf:
	// the server refuses the publish, so the request waits out a short
	// timeout instead of getting an answer.
	const denied = 300 * time.Millisecond
	for _, tt := range []struct {
		cfg bus.Config
		srv *server.Server
	}{
		{bus.Config{URL: userURL(hub, "verifier", "verifier-secret"), Name: "denied-hub"}, hub},
		{bus.Config{URL: userURL(leaf, "verifier", "verifier-secret"), JetStreamDomain: "hub", Name: "denied-leaf"}, leaf},
	} {
		cfg := tt.cfg
		c := connectAs(t, cfg)
		// No subscription on an event subject: a push consumer aimed at
		// it would find interest and store its deliveries in the stream.
		if _, err := c.NATS().Subscribe(bus.SubjectRevokePrefix+"all", func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		if err := c.NATS().Flush(); err != nil {
			t.Fatal(err)
		}
		cz, err := tt.srv.Connz(&server.ConnzOptions{Subscriptions: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, ci := range cz.Conns {
			if ci.Name == cfg.Name && slices.Contains(ci.Subs, bus.SubjectRevokePrefix+"all") {
				t.Errorf("%s: the verifier user subscribed to %sall", cfg.URL, bus.SubjectRevokePrefix)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), denied)
		_, err = c.ListFleet(ctx)
		cancel()
		if err == nil {
			t.Errorf("%s: the verifier user read the heartbeats through a consumer", cfg.URL)
		}
		ctx, cancel = context.WithTimeout(t.Context(), denied)
		err = c.Read(ctx, bus.StreamAudit, bus.ReadOptions{}, func(bus.Delivery) bool { return true })
		cancel()
		if err == nil {
			t.Errorf("%s: the verifier user read HERALD_AUDIT", cfg.URL)
		}
		ctx, cancel = context.WithTimeout(t.Context(), denied)
		now := time.Now()
		_, err = c.Publish(ctx, &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "mallory",
			Revocation: &bus.Revocation{Kind: bus.KindAll, At: now, Until: now.Add(time.Minute)}})
		cancel()
		if err == nil {
			t.Errorf("%s: the verifier user published a revocation", cfg.URL)
		}
		kv, err := c.Keys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(t.Context(), denied)
		_, err = kv.Put(ctx, "forged-kid", []byte(`{"kty":"OKP"}`))
		cancel()
		if err == nil {
			t.Errorf("%s: the verifier user wrote a signing key", cfg.URL)
		}
		sessions, err := c.Sessions(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel = context.WithTimeout(t.Context(), denied)
		_, err = sessions.Put(ctx, "session."+sess.SessionID, []byte(`{"sid":"`+sess.SessionID+`","refresh":"planted"}`))
		cancel()
		if err == nil {
			t.Errorf("%s: the verifier user wrote a session", cfg.URL)
		}
		s, err := c.JetStream().Stream(t.Context(), bus.StreamRevocations)
		if err != nil {
			t.Fatal(err)
		}
		sc := s.CachedInfo().Config
		sc.MaxAge = time.Second
		ctx, cancel = context.WithTimeout(t.Context(), denied)
		_, err = c.JetStream().UpdateStream(ctx, sc)
		cancel()
		if err == nil {
			t.Errorf("%s: the verifier user changed the revocation stream", cfg.URL)
		}
		bffPermissions(t, c, cfg.URL, denied)
		api := "$JS.API"
		if cfg.JetStreamDomain != "" {
			api = "$JS." + cfg.JetStreamDomain + ".API"
		}
		if _, err := c.NATS().Request(api+".CONSUMER.DURABLE.CREATE.HERALD.mallory",
			[]byte(`{"stream_name":"HERALD","config":{"durable_name":"mallory","ack_policy":"explicit"}}`), denied); err == nil {
			t.Errorf("%s: the verifier user created a durable consumer on HERALD", cfg.URL)
		}
	}
	if _, last, err := issuerConn.StreamHead(t.Context(), bus.StreamRevocations); err != nil || last != r.Seq {
		t.Errorf("revocation stream head %d (%v) after the denied publishes, want %d", last, err, r.Seq)
	}
}

// bffPermissions checks what the verifier user c may do with HERALD_BFF:
// claim a refresh, write its result over the claim and read it back, but
// not create the bucket (even as the issuer made it), change or delete it.
func bffPermissions(t *testing.T, c *bus.Conn, url string, denied time.Duration) {
	t.Helper()
	kv, err := c.RefreshRelay(t.Context())
	if err != nil {
		t.Fatalf("%s: the verifier user cannot open %s: %v", url, bus.BucketRefreshRelay, err)
	}
	key := "claim-" + bus.NewID()
	rev, err := kv.Create(t.Context(), key, []byte("claimed"))
	if err == nil {
		_, err = kv.Update(t.Context(), key, []byte("v1.sealed-result"), rev)
	}
	if err != nil {
		t.Fatalf("%s: the verifier user cannot claim and settle a refresh: %v", url, err)
	}
	if e, err := kv.Get(t.Context(), key); err != nil || string(e.Value()) != "v1.sealed-result" {
		t.Fatalf("%s: read back the result: %v", url, err)
	}
	js := c.JetStream()
	s, err := js.Stream(t.Context(), "KV_"+bus.BucketRefreshRelay)
	if err != nil {
		t.Fatal(err)
	}
	same := s.CachedInfo().Config
	longer := same
	longer.MaxAge = 365 * 24 * time.Hour
	for what, try := range map[string]func(ctx context.Context) error{
		"created the bucket": func(ctx context.Context) error { _, err := js.CreateStream(ctx, same); return err },
		"changed the bucket": func(ctx context.Context) error { _, err := js.UpdateStream(ctx, longer); return err },
		"deleted the bucket": func(ctx context.Context) error { return js.DeleteKeyValue(ctx, bus.BucketRefreshRelay) },
	} {
		ctx, cancel := context.WithTimeout(t.Context(), denied)
		err := try(ctx)
		cancel()
		if err == nil {
			t.Errorf("%s: the verifier user %s", url, what)
		}
	}
	if _, err := c.RefreshRelay(t.Context()); err != nil {
		t.Errorf("%s: %s after the denied calls: %v", url, bus.BucketRefreshRelay, err)
	}
}

// run runs fn until the test ends, then calls closeFn.
func run(t *testing.T, fn func(context.Context) error, closeFn func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
				closeFn()
			case <-time.After(30 * time.Second):
				t.Errorf("run did not return 30s after its context ended")
			}
		})
	})
}

// unitFile is a systemd unit: section → key → values (keys may repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			if u[section] != nil {
				t.Errorf("%s:%d: section [%s] twice", path, n, section)
			}
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not key=value in a section: %q", path, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSystemd_Units(t *testing.T) {
	for _, tc := range []struct{ file, role string }{
		{"systemd/herald-issuer.service", "issuer"},
		{"systemd/herald-verifier.service", "verifier"},
	} {
		t.Run(tc.role, func(t *testing.T) {
			u := parseUnit(t, tc.file)
			for _, s := range []string{"Unit", "Service", "Install"} {
				if u[s] == nil {
					t.Fatalf("no [%s] section", s)
				}
			}
			want := map[string]map[string]string{
				"Unit": {"Description": "", "After": "network-online.target", "Wants": "network-online.target"},
				"Service": {
					"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
					"PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
					"ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
					"MemoryDenyWriteExecute": "yes", "CapabilityBoundingSet": "", "SystemCallArchitectures": "native",
					"StateDirectory": "herald-" + tc.role, "UMask": "0077", "Restart": "", "EnvironmentFile": "",
				},
				"Install": {"WantedBy": "multi-user.target"},
			}
			for section, keys := range want {
				for k, v := range keys {
					got, ok := u[section][k]
					switch {
					case !ok:
						t.Errorf("[%s] %s is missing", section, k)
					case v != "" && got[0] != v:
						t.Errorf("[%s] %s=%s, want %s", section, k, got[0], v)
					}
				}
			}
			exec := u["Service"]["ExecStart"]
			if len(exec) != 1 || !strings.HasPrefix(exec[0], "/usr/local/bin/herald "+tc.role+" ") || !strings.Contains(exec[0], "--data ${STATE_DIRECTORY}") {
				t.Errorf("ExecStart %q: want /usr/local/bin/herald %s ... --data ${STATE_DIRECTORY}", exec, tc.role)
			}
			if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
				t.Error("SystemCallFilter=@system-service is missing")
			}
		})
	}
	// systemd's own check, where systemd is installed.
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: units checked by this test only")
		return
	}
	bin := heraldBinary(t)
	dir := t.TempDir()
	var units []string
	for _, f := range []string{"herald-issuer.service", "herald-verifier.service"} {
		data, err := os.ReadFile(filepath.Join("systemd", f))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, bytes.ReplaceAll(data, []byte("/usr/local/bin/herald"), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		units = append(units, p)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// TestMain removes the herald binary heraldBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// heraldBinary builds cmd/herald once per test binary run.
func heraldBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the herald binary: skipped under -short")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "herald-deploy-test")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "herald")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/herald").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// flagsOf returns the flags `herald <role> -h` lists.
func flagsOf(t *testing.T, role string) map[string]bool {
	t.Helper()
	out, _ := exec.Command(heraldBinary(t), role, "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 5 {
		t.Fatalf("herald %s -h lists no flags:\n%s", role, out)
	}
	return flags
}

// TestFlags_Exist checks every herald flag the deployment files pass, as
// arguments or HERALD_* variables, against the binary's own flag list.
func TestFlags_Exist(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command to build herald")
	}
	known := map[string]map[string]bool{"issuer": flagsOf(t, "issuer"), "verifier": flagsOf(t, "verifier")}
	check := func(where, role string, args []string, env []string) {
		for _, a := range args {
			if !strings.HasPrefix(a, "--") {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !known[role][name] {
				t.Errorf("%s: herald %s has no flag --%s", where, role, name)
			}
		}
		for _, e := range env {
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e, "HERALD_"), "_", "-"))
			if strings.HasPrefix(e, "HERALD_") && e != "HERALD_ADMIN_TOKEN" && !known[role][name] {
				t.Errorf("%s: %s names no flag of herald %s", where, e, role)
			}
		}
	}
	for name, p := range podTemplates(loadManifests(t)) {
		for _, c := range p.Spec.Containers {
			if !strings.Contains(c.Image, "herald") {
				continue
			}
			var env []string
			for _, e := range c.Env {
				env = append(env, e.Name)
			}
			check(name+"/"+c.Name, c.Args[0], c.Args[1:], env)
		}
	}
	for _, role := range []string{"issuer", "verifier"} {
		file := "systemd/herald-" + role + ".service"
		u := parseUnit(t, file)
		check(file, role, strings.Fields(u["Service"]["ExecStart"][0])[2:], nil)
		// The variables the unit's comments document for its EnvironmentFile.
		data, _ := os.ReadFile(file)
		var env []string
		for _, m := range regexp.MustCompile(`(?m)^#\s+#?\s*(HERALD_[A-Z_]+)=`).FindAllStringSubmatch(string(data), -1) {
			env = append(env, m[1])
		}
		check(file, role, nil, env)
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms, users []string
	var build string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, strings.Join(f[1:], " "))
			users = nil // USER applies to the stage it is in
		case "USER":
			users = append(users, f[1])
		case "RUN":
			if strings.Contains(line, "go build") {
				build = line
			}
		}
	}
	if len(froms) < 2 || !strings.Contains(strings.ToLower(froms[0]), " as build") {
		t.Fatalf("FROM lines %v: want a multi-stage build with a build stage", froms)
	}
	final := froms[len(froms)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("final stage %q: want distroless/static or scratch", final)
	}
	if !strings.Contains(string(data), "CGO_ENABLED=0") || !strings.Contains(build+string(data), "./cmd/herald") {
		t.Error("want a static build (CGO_ENABLED=0) of ./cmd/herald")
	}
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "0") || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("final stage users %v: want a non-root USER", users)
	}
	if !strings.Contains(string(data), "COPY --from=build") || !strings.Contains(string(data), "ENTRYPOINT") {
		t.Error("want the binary copied from the build stage and an ENTRYPOINT")
	}
}
