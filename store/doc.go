// Package store keeps Herald's local state in Pebble: a denylist of keyed
// entries, each with the time it was made and the time it expires, and the
// last applied stream sequence, written in the same batch as the entries it
// covers so that a crash never applies an event twice or skips one.
//
// The store knows nothing of events or tokens: the verifier decides what the
// keys mean. Lookups are served from an in-memory index rebuilt from Pebble
// at Open, so a check costs a map lookup, and an entry applied by Apply is
// visible to Lookup as soon as Apply returns.
//
// A DB whose disk write failed or whose data Pebble found damaged is
// broken: writes fail with ErrBroken from then on, and the program should
// stop. Open reports data it cannot read back, including entries missing
// against the count stored with the applied sequence, as ErrCorrupt.
//
// # Concurrency
//
// A DB is safe for concurrent use. Apply, Reset and Prune are serialized
// with each other; Lookup never waits on disk.
package store
