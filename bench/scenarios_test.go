package bench

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The scenarios at tiny sizes: every part real (NATS, Pebble, Redis,
// processes), measured for milliseconds. Their figures mean nothing; that
// each runs end to end and fills its result does.

func TestVerify_Small(t *testing.T) {
	t.Parallel()
	res, err := Verify(t.Context(), VerifyConfig{Dir: t.TempDir(), MicroDuration: 20 * time.Millisecond,
		Denylist: 100, Tokens: 10, Clients: 2, LoadDuration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Algorithms), 2; got != want {
		t.Fatalf("%d algorithms, want %d", got, want)
	}
	for _, a := range res.Algorithms {
		for name, m := range map[string]Micro{"raw": a.Raw, "uncached": a.Uncached, "cached": a.Cached} {
			if m.NsPerOp <= 0 || m.Ops == 0 || m.Latency.N == 0 {
				t.Errorf("%s %s: %+v", a.Algorithm, name, m)
			}
		}
		if a.CachedSpeedup <= 0 || a.UncachedRatio <= 0 {
			t.Errorf("%s ratios: %v, %v", a.Algorithm, a.CachedSpeedup, a.UncachedRatio)
		}
	}
	if res.HTTP.N == 0 || res.HTTP.PerSecond <= 0 {
		t.Errorf("http: %+v", res.HTTP)
	}
}

// redisServer returns the path of redis-server, skipping the test when it
// is not installed, except in CI, where it must be (.ci/run installs it).
func redisServerPath(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("a Redis test: skipped under -short")
	}
	path, err := exec.LookPath(DefaultRedisServer)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is required in CI: %v", err)
		}
		t.Skipf("redis-server not installed (apt-get install redis-server): %v", err)
	}
	return path
}

func TestBaseline_Small(t *testing.T) {
	t.Parallel()
	res, err := Baseline(t.Context(), BaselineConfig{Dir: t.TempDir(), RedisServer: redisServerPath(t),
		Clients: 2, LoadDuration: 300 * time.Millisecond, Rounds: 1, Tokens: 10, Denylist: 100, DelayTrials: 3,
		MicroDuration: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Designs), 4; got != want {
		t.Fatalf("%d designs, want %d", got, want)
	}
	for i, name := range []string{DesignHerald, DesignSidecar, DesignRedis, DesignIntrospection} {
		d := res.Designs[i]
		if d.Name != name || d.Load.N == 0 || d.Delay.N != 3 || d.Revoke.N != 3 || d.HeraldSpeedup <= 0 {
			t.Errorf("design %d: %s, %d requests, %d delays, speedup %v", i, d.Name, d.Load.N, d.Delay.N, d.HeraldSpeedup)
		}
	}
	if res.DenylistCheck.NsPerOp <= 0 || res.RedisRoundTrip.NsPerOp <= 0 || res.DenylistSpeedup <= 0 {
		t.Errorf("denylist %v ns, redis %v ns, speedup %v", res.DenylistCheck.NsPerOp, res.RedisRoundTrip.NsPerOp, res.DenylistSpeedup)
	}
	if res.RedisVersion == "" {
		t.Error("no redis version")
	}
}

func TestScale_Small(t *testing.T) {
	t.Parallel()
	res, err := Scale(t.Context(), ScaleConfig{Dir: t.TempDir(), Sizes: []int{100, 1000},
		Command: testCommand(t), MicroDuration: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Points), 2; got != want {
		t.Fatalf("%d points, want %d", got, want)
	}
	for _, pt := range res.Points {
		if pt.CatchUp <= 0 || pt.StreamBytes == 0 || pt.DenylistCheck.Latency.N == 0 || pt.VerifyCached.Latency.N == 0 {
			t.Errorf("%d revocations: %+v", pt.Revocations, pt)
		}
		if pt.Process == nil || pt.Process.CatchUp <= 0 || pt.Process.RSS == 0 || pt.Process.Peak < pt.Process.RSS {
			t.Errorf("%d revocations: process %+v", pt.Revocations, pt.Process)
		}
	}
	if a, b := res.Points[0].StreamBytes, res.Points[1].StreamBytes; b <= a {
		t.Errorf("stream did not grow: %d then %d bytes", a, b)
	}
}

func TestScale_BadSizes(t *testing.T) {
	if _, err := Scale(t.Context(), ScaleConfig{Dir: t.TempDir(), Sizes: []int{1000, 100}}); err == nil {
		t.Fatal("no error for descending sizes")
	}
}

func TestIssue_Small(t *testing.T) {
	t.Parallel()
	res, err := Issue(t.Context(), IssueConfig{Dir: t.TempDir(), Workers: 4, Duration: 100 * time.Millisecond, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sessions.N == 0 || res.Publish.N == 0 || len(res.Sign) != 2 || res.SignRatio <= 0 || res.PublishRatio <= 0 {
		t.Fatalf("issue: %+v", res)
	}
}

// TestLogout_Small: a short logout run measures both paths, with a ratio
// and a target, and a logout that is not refused by every verifier would
// fail it (Arm's watchers require ErrRevoked).
func TestLogout_Small(t *testing.T) {
	t.Parallel()
	res, err := Logout(t.Context(), LogoutConfig{Dir: t.TempDir(), Logouts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Logout.N != 3 || res.Native.N != 3 || res.Verifiers != DefaultLogoutVerifiers || res.P50Ratio <= 0 || res.P99Ratio <= 0 {
		t.Fatalf("logout: %+v", res)
	}
	r := &Report{Logout: res}
	if ts := r.Targets(); len(ts) != 1 || !strings.Contains(ts[0].Name, "back-channel logout") {
		t.Fatalf("targets: %+v", ts)
	}
}

// TestSSF_Small: a short SSF run has every SET of its revocations and of
// its backlog arrive (SSF fails otherwise: the receiver checks each SET's
// signature, iss, aud and event, and every backlog session is looked up),
// every verifier refuse each token (Arm's watchers require ErrRevoked),
// the outage refuse pushes, and both rates positive.
func TestSSF_Small(t *testing.T) {
	t.Parallel()
	res, err := SSF(t.Context(), SSFConfig{Dir: t.TempDir(), Revocations: 3, Backlog: 20, MicroDuration: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Refused.N != 3 || res.SET.N != 3 || res.RevokeCall.N != 3 || res.Verifiers != DefaultSSFVerifiers ||
		res.P50Ratio <= 0 || res.P99Ratio <= 0 {
		t.Fatalf("latency: %+v", res)
	}
	if res.Backlog != 20 || res.RefusedPushes < 1 || res.Duplicates < 0 || res.CatchUpRate <= 0 || res.FloorRate <= 0 ||
		res.CatchUpRatio <= 0 || res.SETBytes == 0 || res.OutageSeconds <= 0 || res.Sign.NsPerOp <= 0 ||
		res.SignedFloorRate <= 0 || res.SignedFloorRate >= res.FloorRate {
		t.Fatalf("catch-up: %+v", res)
	}
	var md strings.Builder
	if err := (&Report{SSF: res}).WriteMarkdown(&md, ""); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "### SSF transmitter: 3 session revocations, 3 verifiers") {
		t.Fatalf("markdown:\n%s", md.String())
	}
}
