// Package store keeps Herald's local state in Pebble: a denylist of keyed
// entries, each with the time it was made and the time it expires, and the
// last applied stream sequence, written in the same batch as the entries it
// covers so that a crash never applies an event twice or skips one.
//
// The store knows nothing of events or tokens: the verifier decides what the
// keys mean. Lookups go through an in-memory index of 64-bit fingerprints
// of the keys, rebuilt from Pebble at Open: a key not held (the answer of
// almost every lookup) costs a hash and a map lookup, and a key held is
// confirmed, with its entry, from Pebble, or from a small cache of the
// keys recently found. The index holds no key and no times, so a million
// entries take about 12 MiB. An entry applied by Apply is visible to
// Lookup as soon as Apply returns. A Loader fills an empty denylist from a
// snapshot in bounded batches, setting the applied sequence last.
//
// A DB whose disk write failed or whose data Pebble found damaged is
// broken: writes fail with ErrBroken from then on, and the program should
// stop. Open reports data it cannot read back, including entries missing
// against the count stored with the applied sequence, as ErrCorrupt.
//
// # Concurrency
//
// A DB is safe for concurrent use. Apply, Reset and Prune are serialized
// with each other; Lookup waits on disk only to confirm a key it holds.
package store
