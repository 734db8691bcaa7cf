package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Report is the outcome of one `herald bench` run: the scenarios that ran,
// and the conditions they ran in. Its JSON form is what --json writes and
// `herald bench report` reads.
type Report struct {
	Meta        Meta                 `json:"meta"`
	Propagation []*PropagationResult `json:"propagation,omitempty"`
	Verify      *VerifyResult        `json:"verify,omitempty"`
	Baseline    *BaselineResult      `json:"baseline,omitempty"`
	Scale       *ScaleResult         `json:"scale,omitempty"`
	Issue       *IssueResult         `json:"issue,omitempty"`
	Logout      *LogoutResult        `json:"logout,omitempty"`
	SSF         *SSFResult           `json:"ssf,omitempty"`
}

// Meta describes the run: what ran, when, on what.
type Meta struct {
	Command    string    `json:"command"`
	Version    string    `json:"version"`
	Revision   string    `json:"revision,omitempty"`
	Modified   bool      `json:"modified,omitempty"`
	Started    time.Time `json:"started"`
	Seconds    float64   `json:"seconds"`
	GoVersion  string    `json:"go_version"`
	OS         string    `json:"os"`
	Arch       string    `json:"arch"`
	CPUs       int       `json:"cpus"`
	GOMAXPROCS int       `json:"gomaxprocs"`
	CPUModel   string    `json:"cpu_model,omitempty"`
	MemTotal   uint64    `json:"mem_total_bytes,omitempty"`
	// LoadAvg is /proc/loadavg when the run started and when it ended:
	// other work on the machine shows there.
	LoadAvgStart string `json:"loadavg_start,omitempty"`
	LoadAvgEnd   string `json:"loadavg_end,omitempty"`
}

// NewReport returns an empty report for a run of command (the command
// line, for the record) by Herald version, started now.
func NewReport(command, version string) *Report {
	m := Meta{
		Command: command, Version: version, Started: time.Now().UTC().Truncate(time.Second),
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH,
		CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		CPUModel: procField("/proc/cpuinfo", "model name"), LoadAvgStart: loadAvg(),
	}
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		var n uint64
		if _, err := fmt.Sscanf(kb, "%d kB", &n); err == nil {
			m.MemTotal = n << 10
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				m.Revision = s.Value
			case "vcs.modified":
				m.Modified = s.Value == "true"
			}
		}
	}
	return &Report{Meta: m}
}

// Finish records the end of the run.
func (r *Report) Finish() {
	r.Meta.Seconds = time.Since(r.Meta.Started).Round(time.Second).Seconds()
	r.Meta.LoadAvgEnd = loadAvg()
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("read report %s: %w", path, err)
	}
	return &r, nil
}

// WriteJSON writes r, indented, to path.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// procField returns the value of the first "name: value" line of a /proc file.
func procField(path, name string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Target is one of Herald's performance targets, judged on a report's figures.
type Target struct {
	Name string `json:"name"`
	// Goal states the target, e.g. "at most 2x".
	Goal string `json:"goal"`
	// Measured states the figure it is judged on.
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
	// Detail gives the figures the measure is made of.
	Detail string `json:"detail"`
}

// Targets judges the report against Herald's performance targets (the
// "Benchmarks" of docs/operations.md), for the scenarios it holds.
func (r *Report) Targets() []Target {
	var ts []Target
	for _, p := range r.Propagation {
		ts = append(ts, Target{
			Name:     fmt.Sprintf("propagation p99 from the revoke call to %d verifiers (%s) within 1.5x of raw JetStream fan-out", p.Verifiers, p.Mode),
			Goal:     "≤ 1.5x",
			Measured: fmtRatio(p.P99RatioFromCall),
			Met:      p.Herald.N > 0 && p.P99RatioFromCall > 0 && p.P99RatioFromCall <= 1.5,
			Detail: fmt.Sprintf("Herald p99 %s from the call (%s after it returned); raw fan-out p99 %s from the publish call",
				fmtDur(p.Herald.P99), fmtDur(p.HeraldAfterReturn.P99), fmtDur(p.RawFanOut.P99)),
		}, Target{
			Name:     fmt.Sprintf("the revoke call (%s run) within 1.5x of a raw acknowledged JetStream publish", p.Mode),
			Goal:     "≤ 1.5x (p50 and p99)",
			Measured: fmt.Sprintf("p50 %s, p99 %s", fmtRatio(p.CallP50Ratio), fmtRatio(p.CallP99Ratio)),
			Met:      p.RevokeCall.N > 0 && p.CallP50Ratio > 0 && p.CallP50Ratio <= 1.5 && p.CallP99Ratio > 0 && p.CallP99Ratio <= 1.5,
			Detail: fmt.Sprintf("revoke call p50 %s p99 %s; raw publish call p50 %s p99 %s",
				fmtDur(p.RevokeCall.P50), fmtDur(p.RevokeCall.P99), fmtDur(p.PublishCall.P50), fmtDur(p.PublishCall.P99)),
		})
	}
	if v := r.Verify; v != nil {
		for _, a := range v.Algorithms {
			ts = append(ts, Target{
				Name:     fmt.Sprintf("cached verify (%s) at least 30x faster than raw parse+verify", a.Algorithm),
				Goal:     "≥ 30x",
				Measured: fmtRatio(a.CachedSpeedup),
				Met:      a.CachedSpeedup >= 30,
				Detail:   fmt.Sprintf("cached %s/op, golang-jwt %s/op", fmtNs(a.Cached.NsPerOp), fmtNs(a.Raw.NsPerOp)),
			})
		}
	}
	if b := r.Baseline; b != nil {
		ts = append(ts, Target{
			Name:     "denylist check at least 50x faster than a Redis round trip",
			Goal:     "≥ 50x",
			Measured: fmtRatio(b.DenylistSpeedup),
			Met:      b.DenylistSpeedup >= 50,
			Detail:   fmt.Sprintf("denylist check %s/op, Redis MGET round trip %s/op", fmtNs(b.DenylistCheck.NsPerOp), fmtNs(b.RedisRoundTrip.NsPerOp)),
		})
	}
	if s := r.Scale; s != nil && len(s.Points) > 0 {
		pt := s.Points[len(s.Points)-1]
		at := fmtCount(pt.Revocations)
		if pt.Revocations != 1_000_000 {
			at += " (not 1M: a smaller run)"
		}
		catchUp, how := pt.CatchUp, "in-process verifier"
		if pt.Process != nil {
			catchUp, how = pt.Process.CatchUp, "verifier process, from exec to ready"
		}
		detail := fmt.Sprintf("%s; in-process verifier %s", how, fmtDur(pt.CatchUp))
		ts = append(ts, Target{
			Name:     "fresh-verifier catch-up with " + at + " active revocations under 10 s",
			Goal:     "< 10 s",
			Measured: fmtDur(catchUp),
			Met:      catchUp < 10*time.Second,
			Detail:   detail,
		}, Target{
			Name:     "lookup p99 with " + at + " active revocations under 5 µs",
			Goal:     "< 5 µs",
			Measured: fmtDur(pt.DenylistCheck.Latency.P99),
			Met:      pt.DenylistCheck.Latency.P99 < 5*time.Microsecond,
			Detail: fmt.Sprintf("a token's denylist check (7 lookups); cached Verify p99 %s; each sample includes %s of timer",
				fmtDur(pt.VerifyCached.Latency.P99), fmtDur(s.TimerOverhead.Latency.P50)),
		})
		if pr := pt.Process; pr != nil {
			ts = append(ts, Target{
				Name:     "verifier process memory with " + at + " active revocations at most 150 MiB, start-up peak included",
				Goal:     "≤ 150 MiB",
				Measured: fmtBytes(int64(max(pr.RSS, pr.Peak))),
				Met:      max(pr.RSS, pr.Peak) <= 150<<20,
				Detail:   fmt.Sprintf("RSS once ready %s, peak %s", fmtBytes(int64(pr.RSS)), fmtBytes(int64(pr.Peak))),
			})
		}
	}
	if is := r.Issue; is != nil && is.SyncedWrite.N > 0 {
		ts = append(ts, Target{
			Name:     fmt.Sprintf("sessions created per second, %d callers, at least 5,000/s and at least the disk's single-writer synced-write rate", is.Workers),
			Goal:     "≥ 5,000/s and ≥ 1x the synced-write floor",
			Measured: fmt.Sprintf("%s/s, %s the floor", fmtRate(is.Sessions.PerSecond), fmtRatio(is.SyncRatio)),
			Met:      is.Sessions.PerSecond >= 5000 && is.SyncRatio >= 1,
			Detail: fmt.Sprintf("synced 4 KiB writes by one writer %s/s; raw publish of 2 acknowledged events %s/s",
				fmtRate(is.SyncedWrite.PerSecond), fmtRate(is.Publish.PerSecond)),
		})
		if is.Refresh.N > 0 {
			ts = append(ts, Target{
				Name:     fmt.Sprintf("refreshes per second through the shared session bucket, %d callers, at least 2,500/s", is.Refresh.Workers),
				Goal:     "≥ 2,500/s",
				Measured: fmtRate(is.Refresh.PerSecond) + "/s",
				Met:      is.Refresh.PerSecond >= 2500,
				Detail:   fmt.Sprintf("p50 %s, p99 %s; %s the synced-write floor", fmtDur(is.Refresh.Latency.P50), fmtDur(is.Refresh.Latency.P99), fmtRatio(is.RefreshSyncRatio)),
			})
		}
	}
	if l := r.Logout; l != nil {
		ts = append(ts, Target{
			Name:     fmt.Sprintf("back-channel logout to %d verifiers within 1.2x of a native session revocation", l.Verifiers),
			Goal:     "≤ 1.2x (p50 and p99)",
			Measured: fmt.Sprintf("p50 %s, p99 %s", fmtRatio(l.P50Ratio), fmtRatio(l.P99Ratio)),
			Met:      l.Logout.N > 0 && l.P50Ratio <= 1.2 && l.P99Ratio <= 1.2,
			Detail: fmt.Sprintf("logout p50 %s p99 %s; native p50 %s p99 %s; %d of each",
				fmtDur(l.Logout.P50), fmtDur(l.Logout.P99), fmtDur(l.Native.P50), fmtDur(l.Native.P99), l.Logouts),
		})
	}
	return ts
}

// WriteMarkdown writes the report as Markdown tables. plots, if not empty,
// is the directory (as the Markdown should link it) holding the charts
// WritePlots wrote; they are shown under their tables.
func (r *Report) WriteMarkdown(w io.Writer, plots string) error {
	var b strings.Builder
	img := func(name, alt string) {
		if plots != "" {
			fmt.Fprintf(&b, "\n![%s](%s/%s)\n", alt, strings.TrimSuffix(plots, "/"), name)
		}
	}
	if ts := r.Targets(); len(ts) > 0 {
		b.WriteString("### Targets\n\n| target | goal | measured | met | from |\n|---|---|---|---|---|\n")
		for _, t := range ts {
			met := "**met**"
			if !t.Met {
				met = "**missed**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", t.Name, t.Goal, t.Measured, met, t.Detail)
		}
	}
	for _, p := range r.Propagation {
		fmt.Fprintf(&b, "\n### Propagation: %d verifiers (%s), %d revocations\n\n", p.Verifiers, p.Mode, p.Revocations)
		summaryTable(&b,
			namedSummary{"Herald: revoke call returned → verifier refuses", p.HeraldAfterReturn},
			namedSummary{"Herald: revoke call made → verifier refuses", p.Herald},
			namedSummary{"Herald: the revoke call itself", p.RevokeCall},
			namedSummary{"raw JetStream: publish call → consumer receives (floor)", p.RawFanOut},
			namedSummary{"raw JetStream: publish acknowledged → consumer receives", p.RawAfterAck},
			namedSummary{"raw JetStream: the publish call itself", p.PublishCall},
		)
		fmt.Fprintf(&b, "\nFrom the call over raw fan-out: p50 **%s**, p99 **%s** (after the call returned: p99 %s). "+
			"The revoke call over the raw publish call: p50 **%s**, p99 **%s**. Detection: %s.\n",
			fmtRatio(p.P50RatioFromCall), fmtRatio(p.P99RatioFromCall), fmtRatio(p.P99Ratio),
			fmtRatio(p.CallP50Ratio), fmtRatio(p.CallP99Ratio), p.Detection)
		img("propagation-"+p.Mode+".svg", "propagation CDF, "+p.Mode)
	}
	if l := r.Logout; l != nil {
		fmt.Fprintf(&b, "\n### Identity provider logout: %d verifiers, %d back-channel logouts and %d native session revocations\n\n", l.Verifiers, l.Logouts, l.Logouts)
		summaryTable(&b,
			namedSummary{"back-channel logout POST → every verifier refuses", l.Logout},
			namedSummary{"native session revocation POST → every verifier refuses", l.Native},
			namedSummary{"the logout POST itself", l.LogoutCall},
			namedSummary{"the revocation POST itself", l.NativeCall},
		)
		fmt.Fprintf(&b, "\nLogout over native: p50 **%s**, p99 **%s**. Detection: %s.\n", fmtRatio(l.P50Ratio), fmtRatio(l.P99Ratio), l.Detection)
	}
	if x := r.SSF; x != nil {
		fmt.Fprintf(&b, "\n### SSF transmitter: %d session revocations, %d verifiers and one push receiver (RFC 8935)\n\n", x.Revocations, x.Verifiers)
		summaryTable(&b,
			namedSummary{"session revocation POST → every verifier refuses", x.Refused},
			namedSummary{"session revocation POST → its session-revoked SET arrives at the receiver", x.SET},
			namedSummary{"the revocation POST itself", x.RevokeCall},
		)
		fmt.Fprintf(&b, "\nSET over verifiers: p50 **%s**, p99 **%s**. Detection: %s.\n", fmtRatio(x.P50Ratio), fmtRatio(x.P99Ratio), x.Detection)
		fmt.Fprintf(&b, "\nCatch-up: the receiver answered 503 for %s (pushes refused: %d) while %s sessions were revoked, then 202 again.\n\n",
			fmtDur(time.Duration(x.OutageSeconds*float64(time.Second))), x.RefusedPushes, fmtCount(x.Backlog))
		b.WriteString("| measure | SETs | seconds | SETs/s |\n|---|---|---|---|\n")
		fmt.Fprintf(&b, "| catch-up: first SET accepted after the outage → last | %s | %s | %s |\n", fmtCount(x.Backlog+x.Duplicates), sig3(x.CatchUpSeconds), fmtRate(x.CatchUpRate))
		fmt.Fprintf(&b, "| floor: sequential POSTs of one pre-signed SET (%s) to the same receiver | %s | %s | %s |\n", fmtBytes(int64(x.SETBytes)), fmtCount(x.Backlog), sig3(x.FloorSeconds), fmtRate(x.FloorRate))
		fmt.Fprintf(&b, "| floor with an RS256 signature per SET (%s/op, measured apart) | | | %s |\n", fmtNs(x.Sign.NsPerOp), fmtRate(x.SignedFloorRate))
		fmt.Fprintf(&b, "\nCatch-up over floor: **%s** (over the floor with signing: %s). Backoff before the first retry after the receiver came back (not in the catch-up): %s. SETs delivered twice: %d.\n",
			fmtRatio(x.CatchUpRatio), fmtRatio(ratio(x.CatchUpRate, x.SignedFloorRate)), fmtDur(x.BackoffWait), x.Duplicates)
	}
	if v := r.Verify; v != nil {
		fmt.Fprintf(&b, "\n### Verify in process (%d tokens in turn, denylist of %s unrelated entries)\n\n", v.Tokens, fmtCount(v.Denylist))
		b.WriteString("| algorithm | golang-jwt parse+verify | Herald uncached | Herald cached | cached speedup over golang-jwt | uncached over golang-jwt | cached p50 / p99 |\n|---|---|---|---|---|---|---|\n")
		for _, a := range v.Algorithms {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s / %s |\n", a.Algorithm, fmtNs(a.Raw.NsPerOp), fmtNs(a.Uncached.NsPerOp),
				fmtNs(a.Cached.NsPerOp), fmtRatio(a.CachedSpeedup), fmtRatio(a.UncachedRatio),
				fmtDur(a.Cached.Latency.P50), fmtDur(a.Cached.Latency.P99))
		}
		fmt.Fprintf(&b, "\nPer call, from batches timed as a whole; p50/p99 from individually timed calls, each including about %s of timer.\n", fmtDur(v.TimerOverhead.Latency.P50))
		fmt.Fprintf(&b, "\n`GET /v1/verify` over HTTP on loopback, %d keep-alive clients, %.0f s: **%s requests/s**, p50 %s, p99 %s.\n",
			v.Clients, v.HTTP.Seconds, fmtRate(v.HTTP.PerSecond), fmtDur(v.HTTP.Latency.P50), fmtDur(v.HTTP.Latency.P99))
		img("verify.svg", "verify cost per call")
	}
	if bl := r.Baseline; bl != nil {
		rounds := 1
		if len(bl.Designs) > 0 {
			rounds = bl.Designs[0].Load.Rounds
		}
		fmt.Fprintf(&b, "\n### Baseline: an application checking every request, four ways (%d clients, %.0f s each in %d alternating rounds, Redis %s)\n\n",
			bl.Clients, bl.LoadSeconds, rounds, bl.RedisVersion)
		b.WriteString("| design | requests/s | Herald's rate over this | p50 | p99 | revocation delay p50 | p99 | max |\n|---|---|---|---|---|---|---|---|\n")
		for _, d := range bl.Designs {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", d.Name, fmtRate(d.Load.PerSecond), fmtRatio(d.HeraldSpeedup),
				fmtDur(d.Load.Latency.P50), fmtDur(d.Load.Latency.P99), fmtDur(d.Delay.P50), fmtDur(d.Delay.P99), fmtDur(d.Delay.Max))
		}
		b.WriteString("\n")
		for _, d := range bl.Designs {
			fmt.Fprintf(&b, "- **%s**: %s.\n", d.Name, d.Description)
		}
		fmt.Fprintf(&b, "\nRevocation delay: from the revoking call returning (Herald and introspection: the issuer's revoke; Redis: SET) to the arrival of the first refusal seen by one client polling the application, so each sample includes one request to it.\n")
		fmt.Fprintf(&b, "\nDenylist check of one token in process (seven lookups, %s entries): **%s**/op; the same check as one Redis MGET round trip: **%s**/op; ratio **%s**.\n",
			fmtCount(bl.Denylist), fmtNs(bl.DenylistCheck.NsPerOp), fmtNs(bl.RedisRoundTrip.NsPerOp), fmtRatio(bl.DenylistSpeedup))
		img("baseline-latency.svg", "request latency CDF per design")
		img("baseline-delay.svg", "revocation delay CDF per design")
	}
	if s := r.Scale; s != nil {
		b.WriteString("\n### Scale: active revocations\n\n")
		b.WriteString("| revocations | stream size | catch-up, in process | applied/s | catch-up, process | RSS, process | peak RSS | Go heap growth, in process | denylist check p50 / p99 | cached verify p50 / p99 |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, pt := range s.Points {
			proc, rss, peak := "—", "—", "—"
			if pt.Process != nil {
				proc, rss, peak = fmtDur(pt.Process.CatchUp), fmtBytes(int64(pt.Process.RSS)), fmtBytes(int64(pt.Process.Peak))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s |\n", fmtCount(pt.Revocations),
				fmtBytes(int64(pt.StreamBytes)), fmtDur(pt.CatchUp), fmtRate(pt.CatchUpRate), proc, rss, peak, fmtBytes(pt.HeapGrowth),
				fmtDur(pt.DenylistCheck.Latency.P50), fmtDur(pt.DenylistCheck.Latency.P99),
				fmtDur(pt.VerifyCached.Latency.P50), fmtDur(pt.VerifyCached.Latency.P99))
		}
		for _, pt := range s.Points {
			if pt.SnapshotSeq > 0 {
				fmt.Fprintf(&b, "\nAt %s revocations the fresh verifiers start from a signed denylist snapshot of the first %s (published in %.1f s, as an issuer does in the background) and replay the last %s.\n",
					fmtCount(pt.Revocations), fmtCount(int(pt.SnapshotSeq)), pt.SnapshotSeconds, fmtCount(pt.Revocations-int(pt.SnapshotSeq)))
			}
		}
		if len(s.Points) > 1 {
			first, last := s.Points[0], s.Points[len(s.Points)-1]
			fmt.Fprintf(&b, "\nFrom %s to %s revocations (%s): catch-up grows %s, stream size %s, denylist check p99 %s.\n",
				fmtCount(first.Revocations), fmtCount(last.Revocations), fmtRatio(float64(last.Revocations)/float64(first.Revocations)),
				fmtRatio(ratio(float64(last.CatchUp), float64(first.CatchUp))), fmtRatio(ratio(float64(last.StreamBytes), float64(first.StreamBytes))),
				fmtRatio(ratio(float64(last.DenylistCheck.Latency.P99), float64(first.DenylistCheck.Latency.P99))))
		}
		img("scale.svg", "scaling curves")
	}
	if is := r.Issue; is != nil {
		fmt.Fprintf(&b, "\n### Issue: sessions per second, %d concurrent callers, %.0f s each in %d alternating rounds\n\n",
			is.Workers, is.Sessions.Seconds, is.Sessions.Rounds)
		b.WriteString("| operation | per second | p50 | p99 | sessions/s over this |\n|---|---|---|---|---|\n")
		fmt.Fprintf(&b, "| CreateSession (state synced, 2 events acknowledged) | %s | %s | %s | 1x |\n", fmtRate(is.Sessions.PerSecond),
			fmtDur(is.Sessions.Latency.P50), fmtDur(is.Sessions.Latency.P99))
		for _, s := range is.Sign {
			fmt.Fprintf(&b, "| raw %s signing (golang-jwt) | %s | %s | %s | %s |\n", s.Algorithm, fmtRate(s.Rate.PerSecond),
				fmtDur(s.Rate.Latency.P50), fmtDur(s.Rate.Latency.P99), fmtRatio(ratio(is.Sessions.PerSecond, s.Rate.PerSecond)))
		}
		fmt.Fprintf(&b, "| raw publish of 2 events, both acknowledged | %s | %s | %s | %s |\n", fmtRate(is.Publish.PerSecond),
			fmtDur(is.Publish.Latency.P50), fmtDur(is.Publish.Latency.P99), fmtRatio(is.PublishRatio))
		if is.SyncedWrite.N > 0 {
			fmt.Fprintf(&b, "| single-writer synced 4 KiB write (fsync), the floor | %s | %s | %s | %s |\n", fmtRate(is.SyncedWrite.PerSecond),
				fmtDur(is.SyncedWrite.Latency.P50), fmtDur(is.SyncedWrite.Latency.P99), fmtRatio(is.SyncRatio))
		}
		if is.Refresh.N > 0 {
			fmt.Fprintf(&b, "\nRefreshes (grant_type=refresh_token over HTTP, shared HERALD_SESSIONS, %d callers each rotating its own session): %s/s, p50 %s, p99 %s; %s the synced-write floor.\n",
				is.Refresh.Workers, fmtRate(is.Refresh.PerSecond), fmtDur(is.Refresh.Latency.P50), fmtDur(is.Refresh.Latency.P99), fmtRatio(is.RefreshSyncRatio))
		}
		img("issue.svg", "issue rates")
	}
	m := r.Meta
	fmt.Fprintf(&b, "\n### Conditions\n\n`%s` — Herald %s", m.Command, m.Version)
	if m.Revision != "" {
		rev := m.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		fmt.Fprintf(&b, " (%s", rev)
		if m.Modified {
			b.WriteString(", modified")
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, ", %s %s/%s, %d CPUs (GOMAXPROCS %d)", m.GoVersion, m.OS, m.Arch, m.CPUs, m.GOMAXPROCS)
	if m.CPUModel != "" {
		fmt.Fprintf(&b, ", %s", m.CPUModel)
	}
	if m.MemTotal > 0 {
		fmt.Fprintf(&b, ", %s RAM", fmtBytes(int64(m.MemTotal)))
	}
	fmt.Fprintf(&b, "; started %s, %s; load average %s at the start, %s at the end.\n",
		m.Started.Format(time.RFC3339), fmtDur(time.Duration(m.Seconds*float64(time.Second))), m.LoadAvgStart, m.LoadAvgEnd)
	_, err := io.WriteString(w, b.String())
	return err
}

// fmtDur formats a duration with three significant digits in a unit that suits it.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%d ns", d.Nanoseconds())
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + " µs"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + " ms"
	}
	return sig3(d.Seconds()) + " s"
}

// fmtNs formats a cost in nanoseconds.
func fmtNs(ns float64) string { return fmtDur(time.Duration(ns + 0.5)) }

// sig3 formats v with three significant digits, without exponent.
func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 1 || v == 0:
		return fmt.Sprintf("%.2f", v)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// fmtRatio formats a ratio as "12.3x".
func fmtRatio(r float64) string {
	if r == 0 {
		return "—"
	}
	return sig3(r) + "x"
}

// fmtRate formats a per-second rate with thousands separators.
func fmtRate(r float64) string {
	if r < 100 {
		return sig3(r)
	}
	return fmtCount(int(r + 0.5))
}

// fmtCount formats n with thousands separators.
func fmtCount(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + fmtCount(-n)
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// fmtBytes formats a size in KiB, MiB or GiB.
func fmtBytes(n int64) string {
	if n < 0 {
		return "-" + fmtBytes(-n)
	}
	switch {
	case n >= 1<<30:
		return sig3(float64(n)/(1<<30)) + " GiB"
	case n >= 1<<20:
		return sig3(float64(n)/(1<<20)) + " MiB"
	case n >= 1<<10:
		return sig3(float64(n)/(1<<10)) + " KiB"
	}
	return fmt.Sprintf("%d B", n)
}

// namedSummary is one row of a summaryTable.
type namedSummary struct {
	name string
	s    Summary
}

// summaryTable writes a Markdown table of latency summaries, a row each,
// in order.
func summaryTable(b *strings.Builder, rows ...namedSummary) {
	b.WriteString("| measure | samples | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s |\n", r.name, r.s.N, fmtDur(r.s.P50), fmtDur(r.s.P90), fmtDur(r.s.P99), fmtDur(r.s.Max))
	}
}
