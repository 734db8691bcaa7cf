package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBench_IssueJSONPlotReport(t *testing.T) {
	dir := t.TempDir()
	jsonPath, plots := filepath.Join(dir, "results.json"), filepath.Join(dir, "plots")
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"bench", "issue", "--issue-duration", "100ms", "--workers", "2", "--rounds", "1",
		"--json", jsonPath, "--plot", plots, "--dir", filepath.Join(dir, "work")}, &out, &errOut)
	if err != nil {
		t.Fatalf("bench issue: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "### Issue: sessions per second") || !strings.Contains(errOut.String(), "issue:") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", out.String(), errOut.String())
	}
	var res struct {
		Issue struct {
			Sessions struct {
				N int `json:"n"`
			} `json:"sessions"`
		} `json:"issue"`
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil || res.Issue.Sessions.N == 0 {
		t.Fatalf("json: %v, %s", err, data)
	}
	if _, err := os.Stat(filepath.Join(plots, "issue.svg")); err != nil {
		t.Fatal(err)
	}

	// report --into rewrites only what lies between the markers.
	doc := filepath.Join(dir, "BENCHMARKS.md")
	before, after := "# Benchmarks\n\nReading.\n\n", "\n\nMore reading.\n"
	if err := os.WriteFile(doc, []byte(before+benchMarkStart+"\nold\n"+benchMarkEnd+after), 0o644); err != nil {
		t.Fatal(err)
	}
	errOut.Reset()
	if err := run(t.Context(), []string{"bench", "report", "--json", jsonPath, "--into", doc}, &out, &errOut); err != nil {
		t.Fatalf("bench report: %v\n%s", err, errOut.String())
	}
	got, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	if !strings.HasPrefix(s, before+benchMarkStart) || !strings.HasSuffix(s, benchMarkEnd+after) ||
		strings.Contains(s, "\nold\n") || !strings.Contains(s, "### Issue") {
		t.Fatalf("BENCHMARKS.md after report --into:\n%s", s)
	}
}

func TestBench_BadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench"},
		{"bench", "nonsense"},
		{"bench", "scale", "--sizes", "100,10"},
		{"bench", "propagation", "--mode", "threads"},
		{"bench", "issue", "extra"},
		{"bench", "report"},
	} {
		var out, errOut bytes.Buffer
		if err := run(t.Context(), args, &out, &errOut); err == nil {
			t.Errorf("%q: no error", args)
		}
	}
}
