package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
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

// markdownPages returns the README, SECURITY.md, BENCHMARKS.md,
// deploy/README.md and the pages of docs/, under the repository at root.
func markdownPages(t *testing.T, root string) []string {
	t.Helper()
	var docs []string
	for _, pattern := range []string{"*.md", "docs/*.md", "docs/reference/*.md", "deploy/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, m...)
	}
	return docs
}

// TestDocs_LinksResolve: every relative link of the README, SECURITY.md,
// BENCHMARKS.md, deploy/README.md and docs/ names a file of the
// repository, and every #anchor one of the target's headings.
func TestDocs_LinksResolve(t *testing.T) {
	root := filepath.Join("..", "..")
	docs := markdownPages(t, root)
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading := regexp.MustCompile(`(?m)^#+ (.+)$`)
	anchors := func(path string) map[string]bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		set := map[string]bool{}
		for _, h := range heading.FindAllSubmatch(b, -1) {
			set[slug(string(h[1]))] = true
		}
		return set
	}
	checked := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, doc)
		for _, m := range link.FindAllSubmatch(b, -1) {
			target := string(m[1])
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			file, anchor, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s links to %s, which does not exist", rel, target)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !anchors(path)[anchor] {
				t.Errorf("%s links to %s, whose target has no heading #%s", rel, target, anchor)
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d relative links checked: the pattern no longer matches them", checked)
	}
}

// TestDocs_NamedFilesExist: every repository path the README, SECURITY.md,
// BENCHMARKS.md, deploy/README.md and docs/ name in code spans
// (`deploy/caddy/Caddyfile`, `verifier/sidecar/nginx_test.go`,
// `deploy/prometheus/tests/*.yml`) exists, so a moved example or test
// cannot leave a page sending operators to nothing.
func TestDocs_NamedFilesExist(t *testing.T) {
	root := filepath.Join("..", "..")
	docs := markdownPages(t, root)
	named := regexp.MustCompile("`((?:bench|bus|cmd|deploy|docs|internal|issuer|ssf|store|verifier)/[A-Za-z0-9_./*-]*[A-Za-z0-9_*/])`")
	checked := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, doc)
		for _, m := range named.FindAllSubmatch(b, -1) {
			name := string(m[1])
			if strings.Contains(name, "...") {
				continue // a package pattern such as internal/...
			}
			checked++
			found, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(name)))
			if err != nil {
				t.Fatal(err)
			}
			if len(found) == 0 {
				t.Errorf("%s names %s, which does not exist", rel, name)
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d file names checked: the pattern no longer matches them", checked)
	}
}

// slug is the anchor GitHub gives a Markdown heading: lower case, spaces
// as dashes, punctuation dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
