// Package bench measures Herald against its baselines in the same run: the
// harness behind `herald bench` and the Go benchmarks of this package.
//
// Every figure that judges Herald is a ratio against a baseline measured
// in the same run, on the same machine, with real parts: the embedded NATS
// server Herald runs (JetStream writes synced), Pebble, redis-server
// started as a child process, `herald verifier` processes. A shared
// machine is noisy, so compared operations take turns: revocations
// alternate with raw JetStream messages, the designs of the baseline and
// the rates of the issue scenario alternate in rounds, and compared
// in-process costs alternate in ten rounds, each figure the median of its
// rounds.
//
// # Usage
//
// Each scenario is a function taking a Config and returning a Result:
// Propagation, Verify, Baseline, Scale and Issue. A Report gathers
// results, judges them against Herald's targets (Report.Targets),
// and writes them as JSON (WriteJSON, ReadReport), Markdown
// (WriteMarkdown) and SVG charts (WritePlots):
//
//	r := bench.NewReport("herald bench verify", version)
//	r.Verify, err = bench.Verify(ctx, bench.VerifyConfig{Dir: dir})
//	r.Finish()
//	err = r.WriteMarkdown(os.Stdout, "")
//
// Scenarios that run verifiers as processes (PropagationConfig.Command,
// ScaleConfig.Command) start `<Command> verifier ...` and, for the raw
// fan-out floor, `<Command> bench fanout-consumer ...`, which the herald
// binary answers with RunFanoutConsumer.
//
// # Concurrency
//
// Scenarios block until they are done and may run one after another in
// one process; running two at once would make each the other's noise.
// Every goroutine and child process a scenario starts is stopped before it
// returns, on every path: when ctx ends (Ctrl-C), children get SIGTERM,
// then SIGKILL after ten seconds, and on Linux the kernel kills them if
// the bench itself dies. A Progress may be shared by goroutines.
package bench
