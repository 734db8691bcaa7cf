package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection guards the packages' layering:
// cmd → issuer → verifier → {bus, store}; bus and store know nothing of
// the others; bench may use all. Within the verifier, the sidecar process
// (verifier/sidecar) assembles the library (verifier) and the browser
// session layer (verifier/browser): the library imports neither, the
// browser layer not the sidecar, and the issuer only the library. Trust
// in external issuers (federation) and the signals they send (signals)
// are the issuer's, built on bus alone: verifiers never import them. So is
// the SSF transmitter (ssf), which the issuer hands its checks. Envoy's
// gRPC ext_authz server (verifier/extauthz) is built on the library and
// wired in by cmd: neither the library, the sidecar nor the issuer
// imports it. The doctor (internal/doctor) reads the bus from outside, as
// an operator would: it imports none of the components it checks.
func TestDependencyDirection(t *testing.T) {
	const mod = "github.com/heraldsec/herald/"
	forbidden := map[string][]string{
		"store":             {"bus", "verifier", "issuer", "bench", "cmd"},
		"bus":               {"store", "verifier", "issuer", "bench", "cmd"},
		"verifier":          {"verifier/sidecar", "verifier/browser", "verifier/extauthz", "issuer", "federation", "signals", "bench", "cmd"},
		"verifier/browser":  {"verifier/sidecar", "verifier/extauthz", "issuer", "federation", "signals", "bench", "cmd"},
		"verifier/sidecar":  {"verifier/extauthz", "issuer", "federation", "signals", "bench", "cmd"},
		"verifier/extauthz": {"verifier/sidecar", "verifier/browser", "issuer", "federation", "signals", "bench", "cmd"},
		"issuer":            {"verifier/sidecar", "verifier/browser", "verifier/extauthz", "bench", "cmd"},
		"federation":        {"store", "verifier", "issuer", "signals", "bench", "cmd"},
		"signals":           {"store", "verifier", "issuer", "federation", "bench", "cmd"},
		"ssf":               {"store", "verifier", "issuer", "federation", "signals", "bench", "cmd"},
		"internal/doctor":   {"store", "verifier", "issuer", "signals", "bench", "cmd"},
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

// TestLibraryDependencies guards what an application embedding Herald's
// libraries compiles: the verifier (with its sub-packages), bus, store,
// issuer and internal packages run no NATS server (the embedded one lives
// in bus/natsserver, for cmd, bench and tests), only the ext_authz server
// (verifier/extauthz) compiles gRPC and Envoy's API, and no package of the
// module but a test pulls in Kubernetes or a browser driver.
func TestLibraryDependencies(t *testing.T) {
	const mod = "github.com/heraldsec/herald/"
	for _, pkg := range []string{"verifier/...", "bus", "store/...", "issuer/...", "internal/...", "federation", "signals"} {
		for _, dep := range goListDeps(t, mod+pkg) {
			if strings.HasPrefix(dep, "github.com/nats-io/nats-server/") {
				t.Errorf("%s imports %s; only cmd, bench and tests may run a NATS server", pkg, dep)
			}
		}
	}
	for _, pkg := range []string{"verifier", "verifier/sidecar", "verifier/browser", "verifier/verifiertest", "bus/...", "store/...", "issuer/...", "internal/...", "federation/...", "signals/...", "ssf/..."} {
		for _, dep := range goListDeps(t, mod+pkg) {
			if strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "github.com/envoyproxy/") {
				t.Errorf("%s imports %s; only verifier/extauthz may use gRPC and Envoy's API", pkg, dep)
			}
		}
	}
	testOnly := []string{"k8s.io/", "sigs.k8s.io/", "github.com/chromedp/"}
	for _, dep := range goListDeps(t, mod+"...") {
		for _, p := range testOnly {
			if strings.HasPrefix(dep, p) {
				t.Errorf("a package of the module imports %s outside its tests (see go mod why %s)", dep, dep)
			}
		}
	}
}

// goListDeps returns the packages pattern imports, directly or not,
// without its tests' imports.
func goListDeps(t *testing.T, pattern string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pattern).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pattern, err)
	}
	return strings.Fields(string(out))
}
