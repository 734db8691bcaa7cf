package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/heraldsec/herald/bench"
)

const benchUsage = `usage: herald bench SCENARIO [flags]

Scenarios (each measures Herald and its baselines in the same run):
  propagation  revoke → every verifier refuses, against raw JetStream fan-out
  verify       in-process verify (cached, uncached, per algorithm) against golang-jwt; /v1/verify over HTTP
  baseline     Herald against a shared Redis denylist and central introspection (RFC 7662)
  scale        10k, 100k, 1M active revocations: catch-up, memory, lookups, stream size
  issue        sessions per second with events acknowledged, against raw signing and publishing
  logout       an identity provider's back-channel logout → every verifier refuses, against a native session revocation
  ssf          a session revocation → every verifier refuses and its SET reaches an SSF push receiver; catch-up after the receiver's outage, against sequential POSTs
  all          every scenario above, in one run
  report       render a --json result as Markdown (and charts) again

The Markdown tables go to stdout, progress to stderr. Run 'herald bench SCENARIO -h' for flags.
`

// Markers around the generated part of BENCHMARKS.md: `herald bench report
// --into FILE` replaces what lies between them.
const (
	benchMarkStart = "<!-- herald-bench:start -->"
	benchMarkEnd   = "<!-- herald-bench:end -->"
)

// benchFlags are the flags of every scenario; each reads those it needs.
type benchFlags struct {
	dir, jsonPath, plotDir, mode, redis, sizes string
	keep, quiet                                bool
	verifiers, revocations, clients, tokens    int
	denylist, trials, workers, rounds          int
	snapshotTail, logouts, backlog             int
	micro, load, issue                         time.Duration
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return errors.New("bench: no scenario given")
	}
	scenario, rest := args[0], args[1:]
	switch scenario {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, benchUsage)
		return nil
	case bench.FanoutConsumer: // hidden: the child process of the raw fan-out floor
		return bench.RunFanoutConsumer(ctx, rest, stdout)
	case "report":
		return runBenchReport(rest, stdout, stderr)
	case "propagation", "verify", "baseline", "scale", "issue", "logout", "ssf", "all":
	default:
		fmt.Fprint(stderr, benchUsage)
		return fmt.Errorf("bench: unknown scenario %q", scenario)
	}
	fs := newFlagSet("bench", "bench "+scenario+" [flags]", stderr)
	var f benchFlags
	fs.StringVar(&f.dir, "dir", "", "work directory for servers' data (default: a temporary directory, removed afterwards)")
	fs.BoolVar(&f.keep, "keep", false, "keep the work directory")
	fs.StringVar(&f.jsonPath, "json", "", "write the result as JSON to this file")
	fs.StringVar(&f.plotDir, "plot", "", "write SVG charts to this directory (and link them from the Markdown)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	fs.StringVar(&f.mode, "mode", "both", "propagation: verifiers in this process (inproc), as herald verifier processes (procs), or both; scale: inproc skips the verifier process")
	fs.IntVar(&f.verifiers, "verifiers", bench.DefaultVerifiers, "propagation: verifiers (and raw consumers); ssf: verifiers when given, else 3")
	fs.IntVar(&f.revocations, "revocations", bench.DefaultRevocations, "propagation, ssf: revocations measured, one at a time")
	fs.DurationVar(&f.micro, "micro-duration", bench.DefaultMicroDuration, "verify, baseline, scale, ssf: how long each in-process measurement runs")
	fs.DurationVar(&f.load, "load-duration", bench.DefaultLoadDuration, "verify, baseline: how long each HTTP load runs (after a 0.5s warm-up)")
	fs.IntVar(&f.clients, "clients", bench.DefaultClients, "verify, baseline: concurrent keep-alive HTTP clients")
	fs.IntVar(&f.tokens, "tokens", bench.DefaultTokens, "verify, baseline: distinct tokens presented in turn")
	fs.IntVar(&f.denylist, "denylist", bench.DefaultDenylist, "verify, baseline: unrelated revocations in each denylist")
	fs.IntVar(&f.trials, "delay-trials", bench.DefaultDelayTrials, "baseline: revocations per design for the revocation delay")
	fs.StringVar(&f.redis, "redis-server", bench.DefaultRedisServer, "baseline: the redis-server executable (Debian package redis-server)")
	fs.IntVar(&f.snapshotTail, "snapshot-tail", 0, "scale: revocations published after the denylist snapshot verifiers start from (0: half of issuer --snapshot-every, at most half the size; -1: no snapshot, a full replay)")
	fs.StringVar(&f.sizes, "sizes", "10000,100000,1000000", "scale: active revocation counts, ascending, comma-separated")
	fs.IntVar(&f.workers, "workers", bench.DefaultIssueWorkers, "issue: concurrent callers")
	fs.DurationVar(&f.issue, "issue-duration", bench.DefaultIssueDuration, "issue: how long each rate is measured")
	fs.IntVar(&f.rounds, "rounds", bench.DefaultRounds, "baseline, issue: rounds the compared loads take turns in")
	fs.IntVar(&f.logouts, "logouts", bench.DefaultLogouts, "logout: back-channel logouts measured, and as many native revocations, one at a time")
	fs.IntVar(&f.backlog, "backlog", bench.DefaultSSFBacklog, "ssf: SETs held while the push receiver is down, then timed as it catches up")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	ssfVerifiers := 0 // ssf's own default unless --verifiers is given
	fs.Visit(func(fl *flag.Flag) {
		if fl.Name == "verifiers" {
			ssfVerifiers = f.verifiers
		}
	})
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	if f.mode != "both" && f.mode != bench.ModeInProc && f.mode != bench.ModeProcs {
		return fmt.Errorf("bench: --mode %q: want inproc, procs or both", f.mode)
	}
	sizes, err := parseSizes(f.sizes)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: find the herald executable: %w", err)
	}
	cmd := &bench.Command{Path: exe}
	dir := f.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "herald-bench-"); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if !f.keep {
		defer os.RemoveAll(dir)
	}
	progress := bench.NewProgress(stderr)
	if f.quiet {
		progress = nil
	}
	report := bench.NewReport("herald bench "+strings.Join(args, " "), version)
	sub := func(name string) string { return filepath.Join(dir, name) }
	run := func(name string) bool { return scenario == name || scenario == "all" }

	if run("issue") {
		if report.Issue, err = bench.Issue(ctx, bench.IssueConfig{Dir: sub("issue"), Workers: f.workers,
			Duration: f.issue, Rounds: f.rounds, Progress: progress}); err != nil {
			return err
		}
	}
	if run("verify") {
		if report.Verify, err = bench.Verify(ctx, bench.VerifyConfig{Dir: sub("verify"), MicroDuration: f.micro,
			Denylist: f.denylist, Tokens: f.tokens, Clients: f.clients, LoadDuration: f.load, Progress: progress}); err != nil {
			return err
		}
	}
	if run("baseline") {
		if report.Baseline, err = bench.Baseline(ctx, bench.BaselineConfig{Dir: sub("baseline"), RedisServer: f.redis,
			Clients: f.clients, LoadDuration: f.load, Rounds: f.rounds, Tokens: f.tokens, Denylist: f.denylist, DelayTrials: f.trials,
			MicroDuration: f.micro, Progress: progress}); err != nil {
			return err
		}
	}
	if run("propagation") {
		for _, mode := range []string{bench.ModeInProc, bench.ModeProcs} {
			if f.mode != "both" && f.mode != mode {
				continue
			}
			res, err := bench.Propagation(ctx, bench.PropagationConfig{Mode: mode, Verifiers: f.verifiers,
				Revocations: f.revocations, Dir: sub("propagation-" + mode), Command: cmd, Progress: progress})
			if err != nil {
				return err
			}
			report.Propagation = append(report.Propagation, res)
		}
	}
	if run("logout") {
		if report.Logout, err = bench.Logout(ctx, bench.LogoutConfig{Dir: sub("logout"), Logouts: f.logouts,
			Progress: progress}); err != nil {
			return err
		}
	}
	if run("ssf") {
		if report.SSF, err = bench.SSF(ctx, bench.SSFConfig{Dir: sub("ssf"), Verifiers: ssfVerifiers,
			Revocations: f.revocations, Backlog: f.backlog, MicroDuration: f.micro, Progress: progress}); err != nil {
			return err
		}
	}
	if run("scale") {
		cfg := bench.ScaleConfig{Dir: sub("scale"), Sizes: sizes, MicroDuration: f.micro, SnapshotTail: f.snapshotTail, Progress: progress}
		if f.mode != bench.ModeInProc {
			cfg.Command = cmd
		}
		if report.Scale, err = bench.Scale(ctx, cfg); err != nil {
			return err
		}
	}
	report.Finish()
	return writeBenchReport(report, f.jsonPath, f.plotDir, stdout, stderr)
}

// writeBenchReport writes the JSON and charts if asked to, then the Markdown.
func writeBenchReport(report *bench.Report, jsonPath, plotDir string, stdout, stderr io.Writer) error {
	if jsonPath != "" {
		if err := report.WriteJSON(jsonPath); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s\n", jsonPath)
	}
	if plotDir != "" {
		names, err := report.WritePlots(plotDir)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %d charts to %s\n", len(names), plotDir)
	}
	return report.WriteMarkdown(stdout, plotDir)
}

// runBenchReport renders a result written with --json again.
func runBenchReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench report", "bench report --json FILE [flags]", stderr)
	jsonPath := fs.String("json", "", "the result to render (written by a scenario's --json)")
	plotDir := fs.String("plot", "", "write SVG charts to this directory (and link them from the Markdown)")
	into := fs.String("into", "", "replace the part of this Markdown file between "+benchMarkStart+" and "+benchMarkEnd+" instead of printing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *jsonPath == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("bench report: --json FILE is required and takes no arguments")
	}
	report, err := bench.ReadReport(*jsonPath)
	if err != nil {
		return err
	}
	if *into == "" {
		return writeBenchReport(report, "", *plotDir, stdout, stderr)
	}
	var md bytes.Buffer
	if err := writeBenchReport(report, "", *plotDir, &md, stderr); err != nil {
		return err
	}
	doc, err := os.ReadFile(*into)
	if err != nil {
		return fmt.Errorf("bench report: %w", err)
	}
	start, end := bytes.Index(doc, []byte(benchMarkStart)), bytes.Index(doc, []byte(benchMarkEnd))
	if start < 0 || end < start {
		return fmt.Errorf("bench report: %s has no %s ... %s section", *into, benchMarkStart, benchMarkEnd)
	}
	var out bytes.Buffer
	out.Write(doc[:start+len(benchMarkStart)])
	out.WriteString("\n<!-- generated by `herald bench report`; edit around the markers, not between them -->\n")
	out.Write(md.Bytes())
	out.Write(doc[end:])
	if err := os.WriteFile(*into, out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("bench report: %w", err)
	}
	fmt.Fprintf(stderr, "updated %s\n", *into)
	return nil
}

// parseSizes parses --sizes: positive counts, ascending.
func parseSizes(s string) ([]int, error) {
	var sizes []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(strings.ReplaceAll(f, "_", "")))
		if err != nil || n <= 0 || (len(sizes) > 0 && n <= sizes[len(sizes)-1]) {
			return nil, fmt.Errorf("bench: --sizes %q: want positive counts, ascending, comma-separated", s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}
