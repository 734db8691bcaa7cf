// Package secretfile writes and reads the files that hold Herald's secrets:
// signing and event keys, nkey seeds, the admin token, the cookie sealing
// key, root-signed statements. It is the one place that decides how such a
// file is written and which file modes are refused on reading, so that a
// fix to either lands once for every component.
//
// # Writing
//
// [Write] never leaves a torn file and never lets another user read the
// content, even for a moment: the data goes to a temporary file of mode
// 0600 in the same directory, which is synced and then renamed over the
// target; the directory is synced last so that the rename itself survives
// a crash. After a crash the path holds the old content or the new, never
// a mix, and never a file of wider mode.
//
// # Reading
//
// [Read] and [ReadFile] refuse a file that others may read, with a
// [*ModeError] naming the secret, the path and the mode: a key left
// world-readable is a key to replace, not to use. The mode is checked on
// the open file, so that the file read is the file checked. [Check] does
// the same for a file that another library reads.
//
// # Concurrency
//
// The functions hold no state and are safe to call concurrently. Two
// concurrent Writes to one path both succeed and the path ends up holding
// one of the two contents in full.
package secretfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Permission masks for [ReadFile]: the permission bits a secret file must
// not grant.
const (
	// OwnerOnly refuses any permission for the group or others: only the
	// owner may read the file (mode 0600 or 0400).
	OwnerOnly fs.FileMode = 0o077
	// GroupReadable lets the file's group read it but refuses every
	// other permission beyond the owner's (modes up to 0640), as
	// Kubernetes makes a mounted secret readable by the pod's fsGroup.
	GroupReadable fs.FileMode = 0o037
)

// Mode is the mode Write gives a file.
const Mode fs.FileMode = 0o600

// ModeError reports a secret file whose permissions grant what they must
// not. Callers that want their own wording find it with errors.As.
type ModeError struct {
	What string      // the secret, as "signing key"
	Path string      // the file
	Mode fs.FileMode // its permission bits
}

// Error names the secret, its path and its mode, and the fix.
func (e *ModeError) Error() string {
	return fmt.Sprintf("%s %s is readable by others (mode %v); run chmod 600", e.What, e.Path, e.Mode)
}

// Write writes data to path with mode 0600 through a temporary file in the
// same directory that is synced and renamed over path, then syncs the
// directory. A crash leaves the old content or the new, never a torn
// file, and no other user can read the content at any point. An existing
// file at path is replaced whatever its mode; the directory must exist.
// On error no temporary file is left behind; the error names the file or
// directory involved.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	// CreateTemp asks for 0600, which the umask may narrow; set it exactly.
	err = tmp.Chmod(Mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable. Tests replace it to see that
// Write calls it.
var syncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Read returns the content of the secret file at path, which only its
// owner may read (see [OwnerOnly]); what names the secret in errors. A
// file that others may read is refused with a [*ModeError]; a missing
// file gives an error for which errors.Is(err, fs.ErrNotExist) holds.
func Read(what, path string) ([]byte, error) {
	b, _, err := ReadFile(what, path, OwnerOnly)
	return b, err
}

// ReadFile returns the content and the file information of the secret
// file at path, refusing with a [*ModeError] a file whose mode grants any
// of the permissions in forbidden ([OwnerOnly] or [GroupReadable]); what
// names the secret in errors. A missing file gives an error for which
// errors.Is(err, fs.ErrNotExist) holds. The mode is checked on the opened
// file, so a file swapped in between the check and the read is not read.
func ReadFile(what, path string, forbidden fs.FileMode) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if err := checkMode(what, path, fi, forbidden); err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	return b, fi, nil
}

// Check returns an error if the secret file at path does not exist, for
// which errors.Is(err, fs.ErrNotExist) holds, or if its mode grants any of
// the permissions in forbidden, a [*ModeError]. It is for a file that
// another library reads, such as an nkey seed that the NATS client reads
// at every connect. A file this program reads itself is read with
// [ReadFile], which checks the file it reads.
func Check(what, path string, forbidden fs.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return checkMode(what, path, fi, forbidden)
}

// checkMode returns a *ModeError if fi grants any of forbidden.
func checkMode(what, path string, fi fs.FileInfo, forbidden fs.FileMode) error {
	if perm := fi.Mode().Perm(); perm&forbidden != 0 {
		return &ModeError{What: what, Path: path, Mode: perm}
	}
	return nil
}
