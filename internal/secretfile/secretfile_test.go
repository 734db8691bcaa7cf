package secretfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// entries returns the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// writeMode writes a file and sets its mode exactly, whatever the umask.
func writeMode(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// wantFile fails t unless path has mode and, when content is not "", holds
// content.
func wantFile(t *testing.T, path string, mode fs.FileMode, content string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != mode {
		t.Fatalf("%s: mode = %v, want %v", path, got, mode)
	}
	if content == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != content {
		t.Fatalf("%s: content = %q, want %q", path, got, content)
	}
}

func TestWrite_Creates0600(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := Write(path, []byte("secret\n")); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, 0o600, "secret\n")
	if got := entries(t, dir); len(got) != 1 || got[0] != "key" {
		t.Fatalf("directory holds %q, want only key", got)
	}
}

func TestWrite_Umask(t *testing.T) {
	// Under a umask of 0277 the temporary file is created 0400; the file
	// written is still exactly 0600.
	old := syscall.Umask(0o277)
	t.Cleanup(func() { syscall.Umask(old) })
	path := filepath.Join(t.TempDir(), "key")
	if err := Write(path, []byte("x")); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, 0o600, "")
}

func TestWrite_ReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	writeMode(t, path, "old", 0o644)
	// A reader holding the old file keeps reading the old content: the new
	// content arrives by rename, not by rewriting the file in place.
	held, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := Write(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	wantFile(t, path, 0o600, "new")
	old := make([]byte, 16)
	n, _ := held.Read(old)
	if got, want := string(old[:n]), "old"; got != want {
		t.Fatalf("held file reads %q, want %q (rewritten in place?)", got, want)
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Fatalf("directory holds %q, want only key", got)
	}
}

func TestWrite_SyncsDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	var synced []string
	orig := syncDir
	t.Cleanup(func() { syncDir = orig })
	syncDir = func(d string) error {
		// The rename must be done when the directory is synced.
		if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
			t.Errorf("directory synced before the rename: %q, %v", b, err)
		}
		synced = append(synced, d)
		return orig(d)
	}
	if err := Write(path, []byte("data")); err != nil {
		t.Fatal(err)
	}
	if len(synced) != 1 || synced[0] != dir {
		t.Fatalf("synced directories %q, want [%q]", synced, dir)
	}

	// A failed directory sync is reported: the rename may not survive a
	// crash.
	boom := errors.New("disk gone")
	syncDir = func(string) error { return boom }
	if err := Write(path, []byte("data")); !errors.Is(err, boom) {
		t.Fatalf("Write with failing directory sync = %v, want %v", err, boom)
	}
}

func TestWrite_Errors(t *testing.T) {
	dir := t.TempDir()

	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(dir, "absent", "key")
		err := Write(path, []byte("x"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err = %v, want not exist", err)
		}
		if !strings.Contains(err.Error(), filepath.Join(dir, "absent")) {
			t.Fatalf("err = %v, want the directory named", err)
		}
	})

	t.Run("target is a directory", func(t *testing.T) {
		sub := t.TempDir()
		target := filepath.Join(sub, "key")
		if err := os.Mkdir(target, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(target, "inside"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := Write(target, []byte("x"))
		if err == nil {
			t.Fatal("Write over a non-empty directory succeeded")
		}
		if !strings.Contains(err.Error(), target) {
			t.Fatalf("err = %v, want %s named", err, target)
		}
		// The temporary file is gone.
		if got := entries(t, sub); len(got) != 1 || got[0] != "key" {
			t.Fatalf("directory holds %q after a failed write, want only key", got)
		}
	})
}

func TestRead(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		mode    fs.FileMode
		refused bool
	}{
		{0o600, false},
		{0o400, false},
		{0o700, false},
		{0o640, true},
		{0o604, true},
		{0o644, true},
		{0o660, true},
		{0o610, true},
		{0o601, true},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			path := filepath.Join(dir, "key-"+tt.mode.String())
			writeMode(t, path, "secret", tt.mode)
			b, err := Read("signing key", path)
			if !tt.refused {
				if err != nil || string(b) != "secret" {
					t.Fatalf("Read = %q, %v; want the content", b, err)
				}
				return
			}
			if b != nil {
				t.Errorf("Read returned %q with a refusal", b)
			}
			var me *ModeError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want a *ModeError", err)
			}
			if me.Path != path || me.Mode != tt.mode || me.What != "signing key" {
				t.Fatalf("ModeError = %+v, want path %s mode %v", me, path, tt.mode)
			}
			want := "signing key " + path + " is readable by others (mode " + tt.mode.String() + "); run chmod 600"
			if got := err.Error(); got != want {
				t.Fatalf("err = %q, want %q", got, want)
			}
		})
	}
}

func TestReadFile_GroupReadable(t *testing.T) {
	dir := t.TempDir()
	for mode, refused := range map[fs.FileMode]bool{
		0o600: false,
		0o640: false,
		0o440: false,
		0o660: true, // the group may read, not write
		0o650: true,
		0o644: true,
		0o604: true,
	} {
		path := filepath.Join(dir, "key-"+mode.String())
		writeMode(t, path, "secret", mode)
		b, fi, err := ReadFile("event key", path, GroupReadable)
		switch {
		case refused && err == nil:
			t.Errorf("%v: read, want refused", mode)
		case refused && !strings.Contains(err.Error(), mode.String()):
			t.Errorf("%v: err = %v, want the mode named", mode, err)
		case !refused && err != nil:
			t.Errorf("%v: %v", mode, err)
		case !refused && (string(b) != "secret" || fi.Mode().Perm() != mode):
			t.Errorf("%v: read %q, mode %v", mode, b, fi.Mode().Perm())
		}
	}
}

func TestRead_Missing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent")
	_, err := Read("admin token", path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want not exist", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want %s named", err, path)
	}
}

func TestRead_ChecksTheFileItReads(t *testing.T) {
	// A symbolic link is followed: the mode checked is the target's, as a
	// Kubernetes secret mount links each key to its data.
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	writeMode(t, target, "secret", 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Read("cookie key", link); err == nil {
		t.Fatal("read a world-readable file through a link")
	}
	if err := os.Chmod(target, 0o400); err != nil {
		t.Fatal(err)
	}
	if b, err := Read("cookie key", link); err != nil || !bytes.Equal(b, []byte("secret")) {
		t.Fatalf("Read through a link = %q, %v", b, err)
	}
}

func TestWriteRead_RoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed")
	want := []byte("SUAxxxxxxxx\n")
	if err := Write(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := Read("nkey seed", path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Read = %q, %v; want %q", got, err, want)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	private := filepath.Join(dir, "private")
	writeMode(t, private, "seed", 0o600)
	if err := Check("nkey seed file", private, OwnerOnly); err != nil {
		t.Fatalf("Check 0600 = %v", err)
	}
	open := filepath.Join(dir, "open")
	writeMode(t, open, "seed", 0o644)
	err := Check("nkey seed file", open, OwnerOnly)
	var me *ModeError
	if !errors.As(err, &me) || me.Path != open || me.Mode != 0o644 {
		t.Fatalf("Check 0644 = %v, want a *ModeError for %s", err, open)
	}
	if got, want := err.Error(), "nkey seed file "+open+" is readable by others (mode -rw-r--r--); run chmod 600"; got != want {
		t.Fatalf("err = %q, want %q", got, want)
	}
	if err := Check("nkey seed file", filepath.Join(dir, "absent"), OwnerOnly); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Check missing = %v, want not exist", err)
	}
}
