package store

import "testing"

// SetFingerprint makes the DBs opened until the test ends fingerprint
// their keys with f, to force collisions. Tests that call it must not
// run in parallel.
func SetFingerprint(tb testing.TB, f func(string) uint64) {
	fingerprintHook = f
	tb.Cleanup(func() { fingerprintHook = nil })
}
