package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocs_NameRealTests: every test, fuzz target and benchmark that
// SECURITY.md, BENCHMARKS.md, the README and docs/ name as the evidence
// for a guarantee exists in the module, so a renamed or deleted test
// cannot leave a claim standing on nothing.
func TestDocs_NameRealTests(t *testing.T) {
	root := filepath.Join("..", "..")
	defined := map[string]bool{}
	funcName := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Z]\w*)\(`)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range funcName.FindAllSubmatch(b, -1) {
			defined[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	refs, _ := filepath.Glob(filepath.Join(root, "docs", "reference", "*.md"))
	docs = append(docs, refs...)
	for _, name := range []string{"SECURITY.md", "BENCHMARKS.md", "README.md", filepath.Join("deploy", "README.md")} {
		docs = append(docs, filepath.Join(root, name))
	}
	// A name as documents cite it: `TestX`, `TestX/sub`, or a prefix such
	// as `TestFault_` standing for a family, which is not checked.
	cited := regexp.MustCompile("\\b((?:Test|Fuzz|Benchmark)[A-Z][A-Za-z0-9_]*[A-Za-z0-9])\\b")
	checked := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cited.FindAllSubmatch(b, -1) {
			name := string(m[1])
			if name == "FuzzName" { // the placeholder of .ci/run's instructions
				continue
			}
			checked++
			if !defined[name] {
				rel, _ := filepath.Rel(root, doc)
				t.Errorf("%s cites %s, which no test file defines", rel, name)
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d test names cited in the documents: the pattern no longer matches them", checked)
	}
}
