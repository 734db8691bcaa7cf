package main

import (
	"bytes"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// cliReference is the page that documents every command and flag.
const cliReference = "../../docs/reference/cli.md"

// docFlag is one flag as the CLI reference or the -h output describes it.
type docFlag struct {
	typ, def, usage string
}

var (
	// docSection matches a command's heading in the CLI reference.
	docSection = regexp.MustCompile(`(?m)^## herald (.+)$`)
	// docRow matches a row of a command's flag table.
	docRow = regexp.MustCompile("(?m)^\\| `--([a-z0-9-]+)` \\| ([a-z]*) \\| `?([^|`]*)`? *\\| (.*) \\|$")
	// helpFlag matches one flag of flag.PrintDefaults' output.
	helpFlag = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)(?: ([a-z]+))?\n\s+(.*)$`)
	// helpDefault matches the default that flag.PrintDefaults appends.
	helpDefault = regexp.MustCompile(` \(default "?(.*?)"?\)$`)
)

// readCLIReference returns the flags of each command the CLI reference
// documents, keyed by the command's words ("keys event certify").
func readCLIReference(t *testing.T) map[string]map[string]docFlag {
	t.Helper()
	page, err := os.ReadFile(cliReference)
	if err != nil {
		t.Fatal(err)
	}
	sections := docSection.FindAllSubmatchIndex(page, -1)
	doc := make(map[string]map[string]docFlag, len(sections))
	for i, s := range sections {
		end := len(page)
		if i+1 < len(sections) {
			end = sections[i+1][0]
		}
		flags := map[string]docFlag{}
		for _, m := range docRow.FindAllSubmatch(page[s[1]:end], -1) {
			flags[string(m[1])] = docFlag{typ: string(m[2]), def: strings.TrimSpace(string(m[3])), usage: strings.TrimSpace(string(m[4]))}
		}
		doc[string(page[s[2]:s[3]])] = flags
	}
	return doc
}

// helpFlags runs `herald <words> -h` in a scratch directory and returns
// the flags it prints.
func helpFlags(t *testing.T, words string) map[string]docFlag {
	t.Helper()
	dir := t.TempDir()
	t.Chdir(dir)
	var out, errOut bytes.Buffer
	err := run(t.Context(), append(strings.Fields(words), "-h"), &out, &errOut)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		t.Errorf("herald %s -h: %v, want help and exit status 0", words, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) > 0 {
		t.Errorf("herald %s -h wrote %q: asking for help must change nothing", words, left)
	}
	help := out.String() + errOut.String()
	flags := map[string]docFlag{}
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		f := docFlag{typ: m[2], usage: m[3]}
		if f.typ == "" {
			f.typ = "bool"
		}
		if d := helpDefault.FindStringSubmatch(f.usage); d != nil {
			f.def = d[1]
			f.usage = strings.TrimSuffix(f.usage, d[0])
		}
		flags[m[1]] = f
	}
	return flags
}

// TestCLIReference checks docs/reference/cli.md against the binary: every
// command `herald help` lists has a section, and each section lists
// exactly the flags `herald <command> -h` prints, with their types and
// defaults. Asking any command for help writes no file.
func TestCLIReference(t *testing.T) {
	doc := readCLIReference(t)
	var usageOut, usageErr bytes.Buffer
	_ = run(t.Context(), []string{"help"}, &usageOut, &usageErr)
	listed := regexp.MustCompile(`(?m)^  ([a-z][a-z-]+) `).FindAllStringSubmatch(usageOut.String()+usageErr.String(), -1)
	if len(listed) < 10 {
		t.Fatalf("herald help lists %d commands:\n%s%s", len(listed), usageOut.String(), usageErr.String())
	}
	for _, m := range listed {
		if !slices.ContainsFunc(slices.Collect(maps.Keys(doc)), func(s string) bool { return s == m[1] || strings.HasPrefix(s, m[1]+" ") }) {
			t.Errorf("herald help lists %q, which docs/reference/cli.md does not document", m[1])
		}
	}
	for words, want := range doc {
		if words == "version" {
			continue // no flags
		}
		t.Run(strings.ReplaceAll(words, " ", "_"), func(t *testing.T) {
			if words == "bench" { // one table for the flags every scenario takes
				for _, scenario := range benchScenarios {
					checkFlags(t, "bench "+scenario, want)
				}
				return
			}
			checkFlags(t, words, want)
		})
	}
}

// benchScenarios are the scenarios of herald bench, which all take the
// flags the reference lists under "herald bench".
var benchScenarios = []string{"propagation", "verify", "baseline", "scale", "issue", "logout", "ssf", "all"}

// checkFlags compares the flags `herald <words> -h` prints with want.
func checkFlags(t *testing.T, words string, want map[string]docFlag) {
	t.Helper()
	got := helpFlags(t, words)
	if len(got) == 0 && len(want) > 0 {
		t.Fatalf("herald %s -h prints no flags", words)
	}
	for name, g := range got {
		w, ok := want[name]
		switch {
		case !ok:
			t.Errorf("--%s is not in the reference", name)
		case w.typ != g.typ:
			t.Errorf("--%s: reference says type %q, -h says %q", name, w.typ, g.typ)
		case w.def != g.def && !(w.typ == "bool" && g.def == "" && w.def == "false"):
			t.Errorf("--%s: reference says default %q, -h says %q", name, w.def, g.def)
		}
	}
	for name := range want {
		if _, ok := got[name]; !ok {
			t.Errorf("the reference lists --%s, which herald %s -h does not", name, words)
		}
	}
}
