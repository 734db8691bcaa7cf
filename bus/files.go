package bus

import (
	"fmt"
	"os"
	"path/filepath"
)

// WritePrivateFile writes data to path with mode 0600 through a synced
// temporary file and a rename, so that a crash leaves the old or the new
// file, never a torn one, and the content is never readable by others.
// The directory must exist.
func WritePrivateFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReadPrivateFile reads a file that holds a secret (what names it in
// errors), refusing one that others may read: a key left world-readable
// is a key to replace, not to use.
func ReadPrivateFile(what, path string) ([]byte, error) {
	if err := checkPrivate(what, path); err != nil {
		return nil, err
	}
	return os.ReadFile(path)
}

// checkPrivate returns an error if path does not exist or others may
// read it.
func checkPrivate(what, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s %s is readable by others (mode %v); run chmod 600", what, path, fi.Mode().Perm())
	}
	return nil
}
