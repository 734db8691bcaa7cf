package helm

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// documentedValues returns the value names the table of docs/kubernetes.md's
// "Values" section lists in its first column, with a name written `.x`
// standing for x beside the name before it (`issuer.persistence.size`,
// `.storageClassName`).
func documentedValues(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	_, text, ok := strings.Cut(string(b), "\n## Values\n")
	if !ok {
		t.Fatal("docs/kubernetes.md has no section Values")
	}
	text, _, _ = strings.Cut(text, "\n## ")
	name := regexp.MustCompile("`([^`]+)`")
	var names []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		parent := ""
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			n := m[1]
			if strings.HasPrefix(n, ".") {
				n = parent + n
			} else if i := strings.LastIndex(n, "."); i >= 0 {
				parent = n[:i]
			} else {
				parent = ""
			}
			names = append(names, n)
		}
	}
	return names
}

// valuePaths returns the dotted path of every key of a values tree, maps
// and their keys alike.
func valuePaths(prefix string, v map[string]any, into map[string]bool) {
	for k, x := range v {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		into[p] = true
		if m, ok := x.(map[string]any); ok {
			valuePaths(p, m, into)
		}
	}
}

// TestChart_ValuesDocumented: every value docs/kubernetes.md's table names
// is in values.yaml, and every value of values.yaml is in the table, itself
// or through a parent (`issuer.resources` stands for its requests and
// limits); the NATS chart's own values (nats.*) are documented by that
// chart, so only nats.enabled and nats.fullnameOverride, which this chart
// reads, must be.
func TestChart_ValuesDocumented(t *testing.T) {
	data, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	valuePaths("", values, paths)
	documented := documentedValues(t)
	if len(documented) < 40 {
		t.Fatalf("only %d values named in docs/kubernetes.md: the pattern no longer matches the table", len(documented))
	}
	for _, d := range documented {
		if !paths[d] {
			t.Errorf("docs/kubernetes.md names the value %s, which values.yaml does not have", d)
		}
	}
	for p := range paths {
		if strings.HasPrefix(p, "nats.") && p != "nats.enabled" && p != "nats.fullnameOverride" {
			continue
		}
		covered := slices.ContainsFunc(documented, func(d string) bool {
			return p == d || strings.HasPrefix(p, d+".")
		})
		// A parent whose every child is documented needs no row of its own.
		parent := slices.ContainsFunc(documented, func(d string) bool {
			return strings.HasPrefix(d, p+".")
		})
		if !covered && !parent {
			t.Errorf("values.yaml has %s, which the table of docs/kubernetes.md does not name", p)
		}
	}
}
