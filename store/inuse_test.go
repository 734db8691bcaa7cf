package store_test

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/heraldsec/herald/store"
)

// TestDB_OpenInAnotherProcess: a directory another process has open is
// refused with ErrInUse, named as such, not as corruption nor as the bare
// errno of Pebble's lock ("resource temporarily unavailable"), so an
// operator who starts a second herald on the same data directory reads
// what is wrong.
func TestDB_OpenInAnotherProcess(t *testing.T) {
	if dir := os.Getenv("HERALD_STORE_HOLD"); dir != "" {
		// The other process: open dir, say so, hold it until stdin closes.
		db, err := store.Open(dir, store.Options{Logger: discard()})
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("open\n")
		bufio.NewReader(os.Stdin).ReadString('\n')
		db.Close()
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDB_OpenInAnotherProcess$")
	cmd.Env = append(os.Environ(), "HERALD_STORE_HOLD="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "open\n" {
		t.Fatalf("the other process did not open the store: %q, %v", line, err)
	}

	_, err = store.Open(dir, store.Options{Logger: discard()})
	if !errors.Is(err, store.ErrInUse) {
		t.Fatalf("open while another process has it open: %v, want ErrInUse", err)
	}
	if errors.Is(err, store.ErrCorrupt) {
		t.Errorf("open while another process has it open reads as corruption: %v", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Errorf("error %q does not name the directory", err)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the other process: %v", err)
	}
	db, err := store.Open(dir, store.Options{Logger: discard()})
	if err != nil {
		t.Fatalf("open once the other process closed it: %v", err)
	}
	db.Close()
}
