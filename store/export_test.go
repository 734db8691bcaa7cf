package store

import "testing"

// SetFingerprint makes the DBs opened until the test ends map the
// fingerprints of their keys with f, to force collisions. Tests that call
// it must not run in parallel.
func SetFingerprint(tb testing.TB, f func(uint64) uint64) {
	fingerprintHook = f
	tb.Cleanup(func() { fingerprintHook = nil })
}
