// Package bench measures Herald against its baselines in the same run: the
// harness behind Go benchmarks and the herald bench command.
package bench
