package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/heraldsec/herald/bus/bustest"
)

// TestFault_VerifierDiskFull takes the disk away from a verifier's
// denylist: its file size limit drops to one byte (RLIMIT_FSIZE; Go
// ignores SIGXFSZ, so writes fail with EFBIG as they would with ENOSPC on
// a full disk), while revocations keep coming. The verifier runs with
// --on-stale allow, its most permissive setting. It keeps refusing what it
// applied, and once Pebble's write fails it stops giving verdicts and
// exits with an error naming the cause, rather than go on without
// recording revocations. Restarted with space, it replays what it could
// not record and enforces everything.
func TestFault_VerifierDiskFull(t *testing.T) {
	f := newFleet(t)
	dir := t.TempDir()
	iss := f.startIssuer(filepath.Join(dir, "issuer"), "127.0.0.1:0")
	vdir := filepath.Join(dir, "verifier")
	ver := f.startVerifier(vdir, iss.nats, "127.0.0.1:0", "--on-stale", "allow")
	vURL := ver.waitLog(verifierReady, 20*time.Second)[1]
	ss := f.newSessions(iss.url, "user", 3)
	early, late, live := ss[0], ss[1], ss[2]

	var lim unix.Rlimit
	if err := unix.Prlimit(ver.cmd.Process.Pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 1, Max: unix.RLIM_INFINITY}, &lim); err != nil {
		t.Fatalf("limit the verifier's file size: %v", err)
	}
	// Pebble buffers unsynced writes in 32 KiB blocks: it meets the limit
	// once a few blocks' worth of revocations has arrived. Long values keep
	// that well below its first memtable (256 KiB): a full memtable
	// rotates the log, and Pebble cannot survive a failure to do that
	// (it stops the process with a fatal error that does not say why).
	long := strings.Repeat("f", 190)
	seq := f.revoke(iss.url, bulkTokens("full-0-"+long, 40, early.JTI))
	bustest.WaitFor(t, 10*time.Second, func() error {
		if code := tryVerify(vURL, early.Access); code != http.StatusUnauthorized {
			return fmt.Errorf("verify the early revoked token = %d, want 401", code)
		}
		return nil
	})
	for i := 1; !ver.exited(); i++ {
		if i > 40 {
			t.Fatalf("verifier still runs after %d revocations with no disk", i)
		}
		seq = f.revoke(iss.url, bulkTokens(fmt.Sprintf("full-%d-%s", i, long), 40))
		bustest.WaitFor(t, 10*time.Second, func() error {
			st, err := status(vURL)
			switch {
			case err != nil:
				return nil // gone
			case st.Applied >= seq:
				if code := tryVerify(vURL, early.Access); code == http.StatusOK {
					t.Fatalf("verifier accepts a token it revoked, with its disk full")
				}
				return nil
			}
			return fmt.Errorf("revocation %d not applied yet: %+v", seq, st)
		})
	}
	err := ver.wait(10 * time.Second)
	logs := ver.logs.String()
	if err == nil || !strings.Contains(logs, "denylist unusable") || !strings.Contains(logs, "file too large") {
		t.Fatalf("verifier exit: %v; want an error naming the cause:\n%s", err, lastLines(logs, 10))
	}
	if code := tryVerify(vURL, live.Access); code != 0 {
		t.Fatalf("verify after the verifier stopped = %d, want no answer", code)
	}
	t.Logf("verifier stopped: %s", lastLines(logs, 1))

	f.revoke(iss.url, sessionBody(late.ID)) // while it is down
	ver = f.startVerifier(vdir, iss.nats, "127.0.0.1:0", "--on-stale", "allow")
	vURL = ver.waitLog(verifierReady, 20*time.Second)[1]
	waitEnforced(t, vURL, []string{early.Access, late.Access}, []string{live.Access}, 20*time.Second)
}
