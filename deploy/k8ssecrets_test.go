package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// secretKeysRead returns every "secret/key" a pod template reads: from
// secretKeyRef environment variables and from the items of Secret volumes.
func secretKeysRead(p *corev1.PodTemplateSpec) []string {
	var keys []string
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				keys = append(keys, e.ValueFrom.SecretKeyRef.Name+"/"+e.ValueFrom.SecretKeyRef.Key)
			}
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		for _, it := range v.Secret.Items {
			keys = append(keys, v.Secret.SecretName+"/"+it.Key)
		}
	}
	return keys
}

// secretKeysCreated returns every "secret/key" that the `kubectl create
// secret generic` commands of a Markdown section's sh blocks create.
func secretKeysCreated(t *testing.T, doc, section string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, text, ok := strings.Cut(string(b), "\n## "+section+"\n")
	if !ok {
		t.Fatalf("%s has no section %q", doc, section)
	}
	text, _, _ = strings.Cut(text, "\n## ")
	var script strings.Builder
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(text, -1) {
		script.WriteString(strings.ReplaceAll(block[1], "\\\n", " "))
	}
	created := map[string]bool{}
	command := regexp.MustCompile(`create secret generic (\S+)(.*)`)
	literal := regexp.MustCompile(`--from-literal=([^=\s]+)=`)
	file := regexp.MustCompile(`--from-file=(\S+)`)
	for _, line := range strings.Split(script.String(), "\n") {
		m := command.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		for _, l := range literal.FindAllStringSubmatch(m[2], -1) {
			created[m[1]+"/"+l[1]] = true
		}
		for _, f := range file.FindAllStringSubmatch(m[2], -1) {
			key, _, named := strings.Cut(f[1], "=")
			if !named {
				key = filepath.Base(f[1])
			}
			created[m[1]+"/"+key] = true
		}
	}
	if len(created) == 0 {
		t.Fatalf("%s section %q creates no Secret: the pattern no longer matches its commands", doc, section)
	}
	return created
}

// TestK8s_ReadmeCreatesTheSecretsTheManifestsRead: following the
// Kubernetes procedure of deploy/README.md creates every Secret key the
// manifests of k8s/ and istio/ read, so no pod waits on a key nobody
// created.
func TestK8s_ReadmeCreatesTheSecretsTheManifestsRead(t *testing.T) {
	created := secretKeysCreated(t, "README.md", "Kubernetes")
	pods := podTemplates(loadManifests(t))
	data, err := os.ReadFile("istio/app-with-verifier.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var istio appsv1.Deployment
	if err := yaml.UnmarshalStrict(data, &istio); err != nil {
		t.Fatalf("istio/app-with-verifier.yaml: %v", err)
	}
	pods["istio Deployment/"+istio.Name] = &istio.Spec.Template
	checked := 0
	for name, p := range pods {
		for _, k := range secretKeysRead(p) {
			checked++
			if !created[k] {
				t.Errorf("%s reads Secret key %s, which deploy/README.md's Kubernetes procedure does not create (it creates %v)", name, k, fmt.Sprint(sortedKeys(created)))
			}
		}
	}
	if checked < 4 {
		t.Errorf("only %d Secret keys read by the manifests: did the pattern change?", checked)
	}
}

func sortedKeys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}
