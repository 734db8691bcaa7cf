package bench

import (
	"bufio"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// sampleReport returns a report with every scenario filled with made-up
// figures.
func sampleReport() *Report {
	dist := func(base time.Duration) Summary {
		var s []time.Duration
		for i := range 1000 {
			s = append(s, base+time.Duration(i)*base/100)
		}
		return Summarize(s)
	}
	micro := func(ns float64) Micro { return Micro{NsPerOp: ns, Ops: 1000, Latency: dist(time.Duration(ns))} }
	rate := func(ps float64) Rate {
		return Rate{PerSecond: ps, N: 1000, Workers: 4, Seconds: 1, Latency: dist(time.Duration(float64(time.Second) / ps))}
	}
	r := NewReport("herald bench all", "test")
	r.Propagation = []*PropagationResult{{Mode: ModeProcs, Verifiers: 50, Revocations: 200, Detection: "held requests",
		Herald: dist(2 * time.Millisecond), HeraldAfterReturn: dist(time.Millisecond), RevokeCall: dist(time.Millisecond),
		RawFanOut: dist(800 * time.Microsecond), RawAfterAck: dist(100 * time.Microsecond), PublishCall: dist(500 * time.Microsecond),
		P99Ratio: 1.25, P50RatioFromCall: 1.1, P99RatioFromCall: 1.4, CallP50Ratio: 1.2, CallP99Ratio: 1.3}}
	r.Verify = &VerifyResult{Denylist: 10000, Tokens: 1000, Clients: 16, TimerOverhead: micro(30), HTTP: rate(20000),
		Algorithms: []VerifyAlgorithm{
			{Algorithm: "EdDSA", Raw: micro(50000), Uncached: micro(55000), Cached: micro(900), CachedSpeedup: 55, UncachedRatio: 1.1},
			{Algorithm: "ES256", Raw: micro(80000), Uncached: micro(85000), Cached: micro(900), CachedSpeedup: 88, UncachedRatio: 1.06},
		}}
	r.Baseline = &BaselineResult{Clients: 16, Tokens: 1000, Denylist: 10000, LoadSeconds: 5, RedisVersion: "7.0.15",
		Designs: []BaselineDesign{
			{Name: DesignHerald, Description: "sidecar", Load: rate(20000), Delay: dist(time.Millisecond), Revoke: dist(time.Millisecond), HeraldSpeedup: 1},
			{Name: DesignSidecar, Description: "sidecar", Load: rate(15000), Delay: dist(time.Millisecond), Revoke: dist(time.Millisecond), HeraldSpeedup: 1.3},
			{Name: DesignRedis, Description: "redis", Load: rate(10000), Delay: dist(100 * time.Microsecond), Revoke: dist(50 * time.Microsecond), HeraldSpeedup: 2},
			{Name: DesignIntrospection, Description: "introspection", Load: rate(5000), Delay: dist(time.Millisecond), Revoke: dist(time.Millisecond), HeraldSpeedup: 4},
		},
		DenylistCheck: micro(200), RedisRoundTrip: micro(40000), DenylistSpeedup: 200}
	r.Scale = &ScaleResult{TimerOverhead: micro(30)}
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		r.Scale.Points = append(r.Scale.Points, ScalePoint{Revocations: n, StreamBytes: uint64(n) * 300,
			CatchUp: time.Duration(n) * 5 * time.Microsecond, CatchUpRate: 200000, HeapGrowth: int64(n) * 100,
			Process:       &ScaleProcess{CatchUp: time.Duration(n) * 6 * time.Microsecond, RSS: uint64(n) * 100, Peak: uint64(n) * 120},
			DenylistCheck: micro(300), VerifyCached: micro(1000)})
	}
	r.Issue = &IssueResult{Workers: 32, Sessions: rate(6000), Publish: rate(3000), SignRatio: 0.05, PublishRatio: 2,
		SyncedWrite: rate(3000), SyncRatio: 2, Refresh: rate(3000), RefreshSyncRatio: 1,
		Sign: []AlgorithmRate{{"EdDSA", rate(30000)}, {"ES256", rate(20000)}}}
	r.Finish()
	return r
}

func TestReport_Targets(t *testing.T) {
	r := sampleReport()
	ts := r.Targets()
	if got, want := len(ts), 10; got != want {
		t.Fatalf("%d targets, want %d: %+v", got, want, ts)
	}
	for _, tg := range ts {
		if !tg.Met {
			t.Errorf("target %q missed on figures that meet it: %+v", tg.Name, tg)
		}
	}
	r.Verify.Algorithms[0].CachedSpeedup = 29
	r.Scale.Points[2].Process.CatchUp = 11 * time.Second
	r.Scale.Points[2].Process.Peak = 151 << 20
	r.Propagation[0].CallP99Ratio = 1.6
	r.Issue.SyncRatio = 0.9
	var missed []string
	for _, tg := range r.Targets() {
		if !tg.Met {
			missed = append(missed, tg.Name)
		}
	}
	if len(missed) != 5 {
		t.Fatalf("missed %q, want the EdDSA cached verify, the catch-up, the memory peak, the revoke call and the sessions", missed)
	}
}

func TestReport_MarkdownJSONPlots(t *testing.T) {
	r := sampleReport()
	dir := t.TempDir()
	path := filepath.Join(dir, "results.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	var a, b strings.Builder
	if err := r.WriteMarkdown(&a, "plots"); err != nil {
		t.Fatal(err)
	}
	if err := back.WriteMarkdown(&b, "plots"); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Fatalf("Markdown differs after a JSON round trip:\n%s\n---\n%s", a.String(), b.String())
	}
	md := a.String()
	for _, want := range []string{"### Targets", "### Propagation: 50 verifiers (procs)", "### Verify in process",
		"### Baseline", "### Scale", "### Issue", "### Conditions", "![propagation CDF, procs](plots/propagation-procs.svg)",
		"| 1,000,000 |", "**met**"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	names, err := r.WritePlots(filepath.Join(dir, "plots"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	want := []string{"baseline-delay.svg", "baseline-latency.svg", "issue.svg", "propagation-procs.svg", "scale.svg", "verify.svg"}
	if !slices.Equal(names, want) {
		t.Fatalf("plots %q, want %q", names, want)
	}
	for _, name := range names {
		checkSVG(t, filepath.Join(dir, "plots", name))
	}
}

// checkSVG fails unless path is well-formed XML with an svg root and no
// NaN or Inf coordinates.
func checkSVG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(bufio.NewReader(f))
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			for _, a := range se.Attr {
				if strings.Contains(a.Value, "NaN") || strings.Contains(a.Value, "Inf") {
					t.Fatalf("%s: <%s %s=%q>", path, se.Name.Local, a.Name.Local, a.Value)
				}
			}
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q, want svg", path, root)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{fmtDur(0), "0"},
		{fmtDur(850 * time.Nanosecond), "850 ns"},
		{fmtDur(1500 * time.Nanosecond), "1.50 µs"},
		{fmtDur(12345 * time.Microsecond), "12.3 ms"},
		{fmtDur(2500 * time.Millisecond), "2.50 s"},
		{fmtCount(1234567), "1,234,567"},
		{fmtCount(999), "999"},
		{fmtBytes(3 << 20), "3.00 MiB"},
		{fmtRatio(31.26), "31.3x"},
		{fmtRatio(0), "—"},
		{fmtRatio(0.0229), "0.0229x"},
		{fmtRatio(0.5), "0.5x"},
		{fmtRatio(0.68123), "0.681x"},
		{fmtRate(12345.6), "12,346"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want any
	}{
		{"+OK\r\n", "OK"},
		{":42\r\n", int64(42)},
		{"$5\r\nhello\r\n", "hello"},
		{"$0\r\n\r\n", ""},
		{"$-1\r\n", nil},
		{"*-1\r\n", nil},
		{"-ERR wrong\r\n", redisError("ERR wrong")},
	} {
		got, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
		if err != nil || got != tc.want {
			t.Errorf("readReply(%q) = %#v, %v; want %#v", tc.in, got, err, tc.want)
		}
	}
	got, err := readReply(bufio.NewReader(strings.NewReader("*3\r\n$1\r\na\r\n$-1\r\n:7\r\n")))
	arr, ok := got.([]any)
	if err != nil || !ok || len(arr) != 3 || arr[0] != "a" || arr[1] != nil || arr[2] != int64(7) {
		t.Errorf("array reply = %#v, %v", got, err)
	}
	for _, bad := range []string{"", "+OK\n", "$5\r\nhi\r\n", "$x\r\n", "*2\r\n:1\r\n", "?\r\n", "$3\r\nabcde"} {
		if got, err := readReply(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("readReply(%q) = %#v, want an error", bad, got)
		}
	}
}

func TestWriteCommand(t *testing.T) {
	var b strings.Builder
	w := bufio.NewWriter(&b)
	writeCommand(w, []string{"SET", "k", ""})
	w.Flush()
	if got, want := b.String(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"; got != want {
		t.Fatalf("writeCommand = %q, want %q", got, want)
	}
}

func TestParseArrival(t *testing.T) {
	seq, at, ok := parseArrival("17 1700000000000000123")
	if !ok || seq != 17 || at.UnixNano() != 1700000000000000123 {
		t.Fatalf("parseArrival = %d, %v, %v", seq, at, ok)
	}
	for _, bad := range []string{"ready", "17", "x 1", "1 y", ""} {
		if _, _, ok := parseArrival(bad); ok {
			t.Errorf("parseArrival(%q) ok", bad)
		}
	}
}
