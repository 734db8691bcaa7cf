package bench

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// childEnv, set to 1, makes the test binary run as one of the bench's
// child processes instead of running tests: the bench starts children as
// `<herald> verifier ...` and `<herald> bench fanout-consumer ...`, and in
// tests the test binary stands in for herald (it cannot import
// cmd/herald). The verifier child is a real sidecar.Sidecar in its own
// process with the flags the bench passes.
const childEnv = "HERALD_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		if err := runChild(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testCommand returns the Command that starts children from this test binary.
func testCommand(t testing.TB) *Command {
	t.Helper()
	if testing.Short() {
		t.Skip("a process test: skipped under -short")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &Command{Path: exe, Env: []string{childEnv + "=1"}}
}

func runChild(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case len(args) >= 1 && args[0] == "verifier":
		return runTestVerifier(ctx, args[1:])
	case len(args) >= 2 && args[0] == "bench" && args[1] == FanoutConsumer:
		return RunFanoutConsumer(ctx, args[2:], os.Stdout)
	}
	return fmt.Errorf("unknown child command %q", args)
}

// runTestVerifier runs a sidecar with the flags verifierSpec passes, as
// `herald verifier` does.
func runTestVerifier(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("verifier", flag.ContinueOnError)
	httpAddr := fs.String("http", "", "")
	data := fs.String("data", "", "")
	natsURL := fs.String("nats", "", "")
	iss := fs.String("issuer", "", "")
	aud := fs.String("audience", "", "")
	id := fs.String("id", "", "")
	upstream := fs.String("upstream", "", "")
	fs.String("log-level", "info", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	conn, err := bus.Connect(ctx, bus.Config{URL: *natsURL, Name: "test-verifier", Logger: log, Retry: true})
	if err != nil {
		return err
	}
	defer conn.Close()
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: *iss, Audience: *aud},
		DataDir:  *data, HTTPAddr: *httpAddr, Upstream: *upstream, ID: *id, Logger: log,
	}, conn)
	if err != nil {
		return err
	}
	defer sc.Close()
	return sc.Run(ctx)
}
