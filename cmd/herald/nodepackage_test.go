//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// The tests that run a Node.js program (the OpenID provider, the SSF
// receiver) keep it in a directory of testdata with its package.json and
// package-lock.json, which pin its npm dependencies, and install it into
// the test's temporary directory.

var errNoNode = errors.New("node and npm are not installed")

// installNodePackage copies the regular files of the package in source
// into a temporary directory and installs its dependencies there with
// npm, and returns that directory. what names the tests that need it, for
// the messages. Under -short the test is skipped; without node or npm it
// is skipped too, but when CI is set it fails instead, so CI never passes
// without running it.
func installNodePackage(t *testing.T, source, what string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s run Node.js: skipped under -short", what)
	}
	missing := func(err error) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run %s: %v", what, err)
		}
		t.Skipf("skipping %s: %v", what, err)
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(fmt.Errorf("%w: %s: %v", errNoNode, tool, err))
		}
	}
	dir := t.TempDir()
	entries, err := os.ReadDir(source)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue // a node_modules of a local install is not copied
		}
		b, err := os.ReadFile(filepath.Join(source, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		missing(fmt.Errorf("npm install in %s: %v\n%s", source, err, out))
	}
	return dir
}
