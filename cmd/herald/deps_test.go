package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection guards the packages' layering:
// cmd → issuer → verifier → {bus, store}; bus and store know nothing of
// the others; bench may use all.
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/heraldsec/herald/"
	forbidden := map[string][]string{
		"store":    {"bus", "verifier", "issuer", "bench", "cmd"},
		"bus":      {"store", "verifier", "issuer", "bench", "cmd"},
		"verifier": {"issuer", "bench", "cmd"},
		"issuer":   {"bench", "cmd"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if dep == mod+b || strings.HasPrefix(dep, mod+b+"/") {
					t.Errorf("%s imports %s", pkg, dep)
				}
			}
		}
	}
}
