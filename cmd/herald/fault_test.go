//go:build linux

package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/store/storetest"
)

// Fault injection with real processes (docs/production.md, "Crash safety"): every
// revocation the issuer acknowledged is enforced after any crash, and every
// token not revoked still verifies. Helpers are in procs_test.go.

// revoker revokes sessions from several clients at once, as a busy
// security team would, and remembers every answer.
type revoker struct {
	mu      sync.Mutex
	answers map[string]revokeResult // by session id
	acked   chan string             // session ids answered 200, as they come
	wg      sync.WaitGroup
}

// startRevoking revokes the sessions ss with n concurrent clients, each
// taking the next session once its request is answered (or fails).
func startRevoking(f *fleet, url string, ss []session, n int) *revoker {
	r := &revoker{answers: map[string]revokeResult{}, acked: make(chan string, len(ss))}
	next := make(chan session, len(ss))
	for _, s := range ss {
		next <- s
	}
	close(next)
	for range n {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for s := range next {
				res := f.tryRevoke(url, sessionBody(s.ID))
				r.mu.Lock()
				r.answers[s.ID] = res
				r.mu.Unlock()
				if res.code == http.StatusOK {
					r.acked <- s.ID
				}
			}
		}()
	}
	return r
}

// waitAcked waits until n more revocations have been answered 200.
func (r *revoker) waitAcked(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for range n {
		select {
		case <-r.acked:
		case <-deadline:
			t.Fatalf("fewer than %d revocations acknowledged after %s", n, timeout)
		}
	}
}

// results waits for every request to end and returns the answers.
func (r *revoker) results() map[string]revokeResult {
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers
}

// split returns the access tokens and the ids of the sessions among ss
// whose revocation's answer satisfies ok.
func split(ss []session, answers map[string]revokeResult, ok func(revokeResult) bool) (toks []string, ids []string) {
	for _, s := range ss {
		if a, found := answers[s.ID]; found && ok(a) {
			toks, ids = append(toks, s.Access), append(ids, s.ID)
		}
	}
	return toks, ids
}

func acked(a revokeResult) bool { return a.code == http.StatusOK }

// TestFault_IssuerKilledAfterAck kills -9 the issuer (and the NATS it
// embeds) as soon as ten revocations were answered 200 while more are in
// flight, and restarts it on the same data. Every acknowledged revocation
// is in the stream and enforced by a verifier that rode out the crash;
// tokens issued before the crash and never revoked, and tokens issued
// after it, verify.
func TestFault_IssuerKilledAfterAck(t *testing.T) {
	f := newFleet(t)
	dir := t.TempDir()
	natsAddr := freeAddr(t)
	iss := f.startIssuer(filepath.Join(dir, "issuer"), natsAddr)
	_, vURL := f.readyVerifier(filepath.Join(dir, "verifier"), iss.nats)
	ss := f.newSessions(iss.url, "user", 40)
	victims, live := ss[:30], ss[30:]

	r := startRevoking(f, iss.url, victims, 4)
	r.waitAcked(t, 10, 20*time.Second)
	iss.kill()
	answers := r.results()

	iss = f.startIssuer(filepath.Join(dir, "issuer"), natsAddr)
	revoked, ids := split(victims, answers, acked)
	if len(revoked) < 10 {
		t.Fatalf("%d acknowledged revocations, want at least 10", len(revoked))
	}
	inStream := f.streamRevocations(t, iss.nats)
	checkSessionsRevoked(t, inStream, ids)
	after := f.newSessions(iss.url, "after", 2)
	waitEnforced(t, vURL, revoked, append(tokens(live), tokens(after)...), 20*time.Second)
	t.Logf("%d of %d revocations acknowledged before kill -9; %d values in the stream after restart", len(revoked), len(victims), len(inStream))
}

// followStart is the Follower's first log line: where it starts from.
var followStart = regexp.MustCompile(`msg="(?:catching|caught) up with revocation stream".*? applied=(\d+)`)

// TestFault_VerifierKilledCatchingUp kills -9 a verifier while it catches
// up on a backlog of 200,001 revoked values (bulk events of 20,000)
// published while it was down: once /v1/status shows it has applied part
// of it. Restarted, it resumes from the checkpoint it had written, applies
// each remaining event once, reaches the head, refuses the revoked tokens
// and accepts the live ones. Should a kill land after the catch-up ended,
// more backlog is published and the verifier is killed again.
func TestFault_VerifierKilledCatchingUp(t *testing.T) {
	f := newFleet(t)
	dir := t.TempDir()
	iss := f.startIssuer(filepath.Join(dir, "issuer"), "127.0.0.1:0")
	vdir, vaddr := filepath.Join(dir, "verifier"), freeAddr(t)
	ver := f.startVerifier(vdir, iss.nats, vaddr)
	vURL := ver.waitLog(verifierReady, 20*time.Second)[1]
	ss := f.newSessions(iss.url, "user", 4)
	victim, last, live := ss[0], ss[1], ss[2:]
	ver.kill()

	f.revoke(iss.url, bulkTokens("leak-a", 99999, victim.JTI))
	f.revoke(iss.url, bulkTokens("leak-b", 100000))
	head := f.revoke(iss.url, sessionBody(last.ID))
	wantDenylist := 99999 + 1 + 100000 + 1
	var resumed uint64
	for attempt := 1; ; attempt++ {
		ver = f.startVerifier(vdir, iss.nats, vaddr)
		midway := false
		bustest.WaitFor(t, 20*time.Second, func() error {
			st, err := status(vURL)
			switch {
			case err != nil:
				return err
			case st.Head < head || st.Applied == 0 && !st.Ready:
				return fmt.Errorf("verifier has not started catching up: %+v", st)
			}
			midway = st.Applied < head
			return nil
		})
		ver.kill()
		ver = f.startVerifier(vdir, iss.nats, vaddr)
		resumed, _ = strconv.ParseUint(ver.waitLog(followStart, 20*time.Second)[1], 10, 64)
		if midway && resumed < head {
			break
		}
		// It finished catching up before the kill landed: more backlog.
		if attempt == 3 {
			t.Fatalf("verifier caught up before each of %d kills", attempt)
		}
		ver.kill()
		head = f.revoke(iss.url, bulkTokens(fmt.Sprintf("leak-%d", attempt), 100000))
		wantDenylist += 100000
	}
	st := waitEnforced(t, vURL, []string{victim.Access, last.Access}, tokens(live), 30*time.Second)
	if st.Applied != head || st.Denylist != wantDenylist {
		t.Errorf("applied %d with %d entries, want %d with %d", st.Applied, st.Denylist, head, wantDenylist)
	}
	if want := head - resumed; st.Events != want {
		t.Errorf("restarted verifier applied %d events from %d to %d, want each once: %d", st.Events, resumed, head, want)
	}
	t.Logf("killed midway, resumed at %d of %d, applied %d events once each", resumed, head, st.Events)
}

// recorded reports a revocation the issuer took but the bus did not
// acknowledge in time: 503, kept in the outbox, published later.
func recorded(a revokeResult) bool {
	return a.code == http.StatusServiceUnavailable && strings.HasPrefix(a.desc, "recorded")
}

// TestFault_NATSDownUnderLoad kills -9 the NATS server an issuer and a
// verifier use (a separate process here) while revocations keep coming,
// and restarts it on the same store a while later. During the outage the
// verifier turns stale and refuses verdicts (503, on-stale deny), and
// revocations are answered 503 "recorded" instead of 200; afterwards every
// revocation answered 200 or "recorded" is enforced, and live tokens
// verify again.
func TestFault_NATSDownUnderLoad(t *testing.T) {
	f := newFleet(t)
	dir := t.TempDir()
	natsAddr := freeAddr(t)
	natsURL := "nats://" + natsAddr
	nats := f.startNATS(filepath.Join(dir, "nats"), natsAddr)
	iss := f.startIssuer(filepath.Join(dir, "issuer"), natsURL)
	_, vURL := f.readyVerifier(filepath.Join(dir, "verifier"), natsURL, "--max-staleness", "1s")
	ss := f.newSessions(iss.url, "user", 40)
	victims, live := ss[:36], ss[36:]

	r := startRevoking(f, iss.url, victims, 3)
	r.waitAcked(t, 6, 20*time.Second)
	nats.kill()
	bustest.WaitFor(t, 20*time.Second, func() error {
		if st, err := status(vURL); err != nil || !st.Stale || st.Ready {
			return fmt.Errorf("verifier during the outage: %+v, %v; want stale, not ready", st, err)
		}
		if code := tryVerify(vURL, live[0].Access); code != http.StatusServiceUnavailable {
			return fmt.Errorf("verify a live token during the outage = %d, want 503", code)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if n := len(r.answers); n < 8 {
			return fmt.Errorf("%d revocations answered, want some during the outage", n)
		}
		return nil
	})
	nats = f.startNATS(filepath.Join(dir, "nats"), natsAddr)
	answers := r.results()

	var ackedToks, recordedToks []string
	for _, s := range victims {
		switch a := answers[s.ID]; {
		case acked(a):
			ackedToks = append(ackedToks, s.Access)
		case recorded(a):
			recordedToks = append(recordedToks, s.Access)
		default:
			t.Errorf("revocation of session %s: %d %q, want 200 or 503 recorded", s.ID, a.code, a.desc)
		}
	}
	if len(recordedToks) == 0 {
		t.Fatal("no revocation answered 503 recorded: the outage did not happen under load")
	}
	waitEnforced(t, vURL, append(ackedToks, recordedToks...), tokens(live), 30*time.Second)
	inStream := f.streamRevocations(t, natsURL)
	_, ids := split(victims, answers, func(a revokeResult) bool { return acked(a) || recorded(a) })
	checkSessionsRevoked(t, inStream, ids)
	t.Logf("%d revocations acknowledged, %d recorded during the outage and published after it", len(ackedToks), len(recordedToks))
}

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
	ver, vURL := f.readyVerifier(vdir, iss.nats, "--on-stale", "allow")
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
	_, vURL = f.readyVerifier(vdir, iss.nats, "--on-stale", "allow")
	waitEnforced(t, vURL, []string{early.Access, late.Access}, []string{live.Access}, 20*time.Second)
}

// TestFault_VerifierCorruptDenylist damages a stopped verifier's Pebble
// directory in the ways of storetest.Damages and restarts it. It notices
// (Open reads all of it), moves the directory aside to denylist.corrupt,
// says so in its log, rebuilds from the stream, and enforces every
// revocation. Damage Pebble reads past (a torn log) leaves an earlier
// state, which the verifier completes from the stream.
func TestFault_VerifierCorruptDenylist(t *testing.T) {
	f := newFleet(t)
	dir := t.TempDir()
	iss := f.startIssuer(filepath.Join(dir, "issuer"), "127.0.0.1:0")
	vdir := filepath.Join(dir, "verifier")
	ver, vURL := f.readyVerifier(vdir, iss.nats)
	ss := f.newSessions(iss.url, "user", 3)
	revoked, live := []string{ss[0].Access, ss[1].Access}, []string{ss[2].Access}
	// Enough entries for Pebble to flush sstables, not just a log.
	f.revoke(iss.url, bulkTokens("leak", 30000, ss[0].JTI))
	head := f.revoke(iss.url, sessionBody(ss[1].ID))
	const wantDenylist = 30000 + 1 + 1
	waitEnforced(t, vURL, revoked, live, 20*time.Second)
	ver.signal(syscall.SIGTERM)
	if err := ver.wait(10 * time.Second); err != nil {
		t.Fatalf("verifier stop: %v", err)
	}

	for _, damage := range storetest.Damages() {
		t.Run(damage.Name, func(t *testing.T) {
			f := f.in(t)
			d := filepath.Join(t.TempDir(), "verifier")
			copyDir(t, vdir, d)
			if err := damage.Apply(filepath.Join(d, "denylist")); err != nil {
				t.Fatal(err)
			}
			ver, url := f.readyVerifier(d, iss.nats, "--id", "rebuilt")
			_, err := os.Stat(filepath.Join(d, "denylist.corrupt"))
			aside := err == nil
			logged := strings.Contains(ver.logs.String(), "denylist unreadable: moved aside")
			switch {
			case aside != logged:
				t.Errorf("denylist moved aside: %v, logged so: %v; want both or neither", aside, logged)
			case damage.Detected && !aside:
				t.Errorf("damage not noticed:\n%s", lastLines(ver.logs.String(), 10))
			}
			st := waitEnforced(t, url, revoked, live, 20*time.Second)
			if st.Applied != head || st.Denylist != wantDenylist {
				t.Errorf("rebuilt: applied %d with %d entries, want %d with %d", st.Applied, st.Denylist, head, wantDenylist)
			}
		})
	}
}

// TestFault_PowerLoss restores copies of data directories taken mid-run,
// as a machine that lost power would find its disk, and starts from them.
// The issuer (with its embedded NATS store and Pebble state) and a
// verifier are frozen with SIGSTOP while revocations are in flight, copied,
// and killed -9; a second verifier's directory is copied while it runs,
// torn as it may be. Every revocation acknowledged before the freeze is in
// the restored stream and enforced by both restored verifiers, and the
// live tokens verify.
func TestFault_PowerLoss(t *testing.T) {
	f := newFleet(t)
	dir := t.TempDir()
	natsAddr := freeAddr(t)
	iss := f.startIssuer(filepath.Join(dir, "issuer"), natsAddr)
	ver, _ := f.readyVerifier(filepath.Join(dir, "verifier"), iss.nats)
	ver2, _ := f.readyVerifier(filepath.Join(dir, "verifier2"), iss.nats, "--id", "live-copy")
	ss := f.newSessions(iss.url, "user", 40)
	victims, live := ss[:30], ss[30:]

	r := startRevoking(f, iss.url, victims, 4)
	r.waitAcked(t, 8, 20*time.Second)
	copyDir(t, filepath.Join(dir, "verifier2"), filepath.Join(dir, "restored", "verifier2")) // while it runs
	r.waitAcked(t, 4, 20*time.Second)
	iss.signal(syscall.SIGSTOP)
	ver.signal(syscall.SIGSTOP)
	copyDir(t, filepath.Join(dir, "issuer"), filepath.Join(dir, "restored", "issuer"))
	copyDir(t, filepath.Join(dir, "verifier"), filepath.Join(dir, "restored", "verifier"))
	iss.kill()
	ver.kill()
	ver2.kill()
	answers := r.results() // every 200 was sent before the freeze

	iss = f.startIssuer(filepath.Join(dir, "restored", "issuer"), natsAddr)
	revoked, ids := split(victims, answers, acked)
	inStream := f.streamRevocations(t, iss.nats)
	checkSessionsRevoked(t, inStream, ids)
	for _, name := range []string{"verifier", "verifier2"} {
		_, url := f.readyVerifier(filepath.Join(dir, "restored", name), iss.nats)
		waitEnforced(t, url, revoked, tokens(live), 20*time.Second)
	}
	t.Logf("%d revocations acknowledged before the power loss, %d values in the restored stream", len(revoked), len(inStream))
}
