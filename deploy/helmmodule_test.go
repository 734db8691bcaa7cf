package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// The Helm chart's tests live in a module of their own (deploy/helm), so
// that Helm and the Kubernetes client libraries never enter the module an
// application imports Herald from. The root module needs only the API
// types that the manifest tests in this package decode into.

// rootK8sModules are the Kubernetes modules the root module may require:
// k8s.io/api and k8s.io/apimachinery for this package's tests, and what
// they bring.
var rootK8sModules = []string{
	"k8s.io/api", "k8s.io/apimachinery", "k8s.io/klog/v2", "k8s.io/kube-openapi", "k8s.io/utils",
	"sigs.k8s.io/json", "sigs.k8s.io/randfill", "sigs.k8s.io/structured-merge-diff/v6", "sigs.k8s.io/yaml",
}

// goModRequires returns the module path of the go.mod at file and its
// requirements, path → version.
func goModRequires(t *testing.T, file string) (module string, reqs map[string]string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	reqs = map[string]string{}
	inBlock := false
	for line := range strings.SplitSeq(string(data), "\n") {
		line, _, _ = strings.Cut(line, "//")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "module" && len(f) == 2:
			module = f[1]
		case f[0] == "require" && len(f) == 2 && f[1] == "(":
			inBlock = true
		case f[0] == ")":
			inBlock = false
		case f[0] == "require" && len(f) == 3:
			reqs[f[1]] = f[2]
		case inBlock && len(f) == 2:
			reqs[f[0]] = f[1]
		case f[0] == "replace" && strings.Contains(line, "deploy/helm"):
			t.Errorf("%s replaces a module with deploy/helm: %s", file, line)
		}
	}
	if module == "" || len(reqs) == 0 {
		t.Fatalf("%s: no module line or no requirements", file)
	}
	return module, reqs
}

func TestHelmModule_StaysOutOfTheRootModule(t *testing.T) {
	root, rootReqs := goModRequires(t, "../go.mod")
	helm, helmReqs := goModRequires(t, "helm/go.mod")
	if root != "github.com/heraldsec/herald" || helm != root+"/deploy/helm" {
		t.Fatalf("modules %s and %s: want the chart's tests in %s/deploy/helm", root, helm, root)
	}
	if _, ok := helmReqs["helm.sh/helm/v4"]; !ok {
		t.Error("deploy/helm/go.mod does not require helm.sh/helm/v4: is the chart test still there?")
	}
	for mod := range rootReqs {
		switch {
		case mod == helm:
			t.Errorf("the root module requires %s", mod)
		case strings.HasPrefix(mod, "helm.sh/"):
			t.Errorf("the root module requires %s: Helm belongs in deploy/helm/go.mod", mod)
		case (strings.HasPrefix(mod, "k8s.io/") || strings.HasPrefix(mod, "sigs.k8s.io/")) && !slices.Contains(rootK8sModules, mod):
			t.Errorf("the root module requires %s: Kubernetes client libraries belong in deploy/helm/go.mod", mod)
		}
	}
	// One Kubernetes release on both sides, so that the manifests and the
	// chart are checked against the same API types.
	for _, mod := range []string{"k8s.io/api", "k8s.io/apimachinery"} {
		if rootReqs[mod] == "" || rootReqs[mod] != helmReqs[mod] {
			t.Errorf("%s: %s in the root module, %s in deploy/helm", mod, rootReqs[mod], helmReqs[mod])
		}
	}
}
