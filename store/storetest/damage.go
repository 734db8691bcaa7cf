// Package storetest breaks store databases on disk, for tests of what
// Open and the programs above it do with the result: the ways failing
// disks, crashes and people damage a Pebble directory.
package storetest

import (
	"fmt"
	"os"
	"path/filepath"
)

// Damage is one way to damage the database in a directory.
type Damage struct {
	Name string
	// Detected: store.Open reports ErrCorrupt. Otherwise Open may also read
	// past the damage to an earlier state, an applied sequence with
	// exactly its entries, as it does with the torn end of a log that a
	// crash leaves.
	Detected bool
	// Apply damages the database in dir.
	Apply func(dir string) error
}

// Damages returns the damages tests try.
func Damages() []Damage {
	return []Damage{
		{"manifest garbage", true, scribble("MANIFEST-*", 0)},
		{"manifest truncated", false, truncate("MANIFEST-*", 2)},
		{"manifest emptied", true, truncate("MANIFEST-*", 0)},
		{"manifest removed", true, remove("MANIFEST-*")},
		{"sstable garbage", true, scribble("*.sst", 100)},
		{"sstable truncated", true, truncate("*.sst", 2)},
		{"sstable removed", true, remove("*.sst")},
		{"options garbage", true, scribble("OPTIONS-*", 0)},
		{"log garbage", false, scribble("*.log", 100)},
		{"log truncated", false, truncate("*.log", 2)},
	}
}

// newest returns the last file of dir matching pattern, by name: Pebble
// numbers its files in order.
func newest(dir, pattern string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		return "", err
	}
	if len(m) == 0 {
		return "", fmt.Errorf("no %s in %s", pattern, dir)
	}
	return m[len(m)-1], nil
}

// scribble writes garbage into the newest file matching pattern at offset at.
func scribble(pattern string, at int64) func(string) error {
	return func(dir string) error {
		p, err := newest(dir, pattern)
		if err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteAt([]byte("this is not what pebble wrote here"), at); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
}

// truncate cuts the newest file matching pattern to its size divided by
// div; div 0 empties it.
func truncate(pattern string, div int64) func(string) error {
	return func(dir string) error {
		p, err := newest(dir, pattern)
		if err != nil {
			return err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		size := int64(0)
		if div > 0 {
			size = fi.Size() / div
		}
		return os.Truncate(p, size)
	}
}

// remove removes the newest file matching pattern.
func remove(pattern string) func(string) error {
	return func(dir string) error {
		p, err := newest(dir, pattern)
		if err != nil {
			return err
		}
		return os.Remove(p)
	}
}
