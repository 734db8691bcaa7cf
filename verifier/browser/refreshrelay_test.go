package browser

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
)

// testRelays returns two replicas' relays on one bucket, sharing a cookie
// key, that wait patience for each other.
func testRelays(t *testing.T, patience time.Duration) (a, b *refreshRelay, conn *bus.Conn) {
	t.Helper()
	s := bustest.RunServer(t)
	conn = bustest.Connect(t, s)
	if err := conn.EnsureRefreshRelay(t.Context(), bus.RefreshRelayConfig{}); err != nil {
		t.Fatal(err)
	}
	relay := func() *refreshRelay {
		return &refreshRelay{conn: bustest.Connect(t, s), seal: testSealer(t, 1), patience: patience, now: time.Now, log: testLogger(t)}
	}
	return relay(), relay(), conn
}

func testSession() *cookieState {
	return &cookieState{Handle: newHandle(), Gen: 4, Session: "sid-1", Access: "old.access.token", Refresh: "hrt_old." + newHandle(),
		Created: 100, Seen: 200}
}

func nextOf(st *cookieState) *cookieState {
	n := *st
	n.Gen++
	n.Access, n.Refresh = "new.access.token", "hrt_new."+newHandle()
	return &n
}

// TestRefreshRelay_OneWinner: of two replicas claiming one refresh, one
// wins; the other gets no result until the winner settles, then exactly
// the winner's next state, whether it asks again or was already waiting.
func TestRefreshRelay_OneWinner(t *testing.T) {
	a, b, _ := testRelays(t, 5*time.Second)
	st := testSession()

	cl, res, err := a.claim(t.Context(), st)
	if err != nil || cl == nil || res != nil {
		t.Fatalf("first claim = %v, %v, %v; want won", cl, res, err)
	}
	if cl2, res, err := b.claim(t.Context(), st); err != nil || cl2 != nil || res != nil {
		t.Fatalf("second claim = %v, %v, %v; want lost, nothing yet", cl2, res, err)
	}
	if cl3, _, _ := a.claim(t.Context(), st); cl3 != nil {
		t.Fatal("the winner won its own claim twice")
	}

	next := nextOf(st)
	waited := waitInBackground(t, b, st)
	a.settle(t.Context(), cl, st, next, time.Now(), nil)
	w := <-waited
	if w.err != nil {
		t.Fatalf("wait: %v", w.err)
	}
	for name, res := range map[string]*relayResult{"waiting": w.res, "asking after": second(b.claim(t.Context(), st))} {
		if res == nil || res.Ended || *res.Next != *next {
			t.Fatalf("%s: result %+v, want %+v", name, res, next)
		}
	}

	// The bucket holds no token in clear.
	e, err := b.bucket(t.Context()).Get(t.Context(), b.seal.claimKey(st.Refresh))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{st.Refresh, next.Refresh, next.Access, st.Handle} {
		if strings.Contains(string(e.Value()), secret) || strings.Contains(e.Key(), secret) {
			t.Fatalf("bucket entry %s shows %q", e.Key(), secret)
		}
	}
}

func second(_ *refreshClaim, res *relayResult, _ error) *relayResult { return res }

// waited is what a relay's wait returned.
type waited struct {
	res *relayResult
	err error
}

// waitInBackground runs r.wait for st's refresh, and sends what it
// returned; the wait has its own deadline, the relay's patience.
func waitInBackground(t *testing.T, r *refreshRelay, st *cookieState) <-chan waited {
	ch := make(chan waited, 1)
	go func() {
		res, err := r.wait(t.Context(), st)
		ch <- waited{res, err}
	}()
	return ch
}

// TestRefreshRelay_WinnerCrashed claims a refresh directly in the bucket,
// as a replica that crashed right after claiming: the replica waiting for
// its result fails within its patience, and never gets a result.
func TestRefreshRelay_WinnerCrashed(t *testing.T) {
	const patience = 300 * time.Millisecond
	a, _, conn := testRelays(t, patience)
	st := testSession()
	kv, err := conn.RefreshRelay(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(t.Context(), a.seal.claimKey(st.Refresh), []byte(claimMarker)); err != nil {
		t.Fatal(err)
	}
	if cl, res, err := a.claim(t.Context(), st); cl != nil || res != nil || err != nil {
		t.Fatalf("claim = %v, %v, %v; want lost, no result", cl, res, err)
	}
	start := time.Now()
	res, err := a.wait(t.Context(), st)
	if took := time.Since(start); !errors.Is(err, errRefreshLost) || res != nil || took < patience || took > patience+3*time.Second {
		t.Fatalf("wait = %v, %v after %s; want errRefreshLost after %s", res, err, took, patience)
	}
	if !errors.Is(errRefreshLost, verifier.ErrExpired) {
		t.Fatal("a lost refresh must refuse the session (expired), not answer 503")
	}
}

// TestRefreshRelay_ForeignResultsIgnored writes over a claim what the
// waiting replica must not use: a result sealed with another deployment's
// key, one sealed for another session or generation, garbage. None is
// taken; the genuine result written after them is.
func TestRefreshRelay_ForeignResultsIgnored(t *testing.T) {
	a, b, _ := testRelays(t, 5*time.Second)
	st := testSession()
	cl, _, err := a.claim(t.Context(), st)
	if err != nil || cl == nil {
		t.Fatalf("claim: %v", err)
	}
	other := *st
	other.Handle = newHandle()
	older := *st
	older.Gen--
	foreign := testSealer(t, 2)
	var values []string
	for _, v := range []struct {
		seal *sealer
		to   *cookieState
		res  relayResult
	}{
		{foreign, st, relayResult{Next: nextOf(st)}},    // another deployment's key
		{a.seal, &other, relayResult{Next: nextOf(st)}}, // bound to another session
		{a.seal, &older, relayResult{Next: nextOf(st)}}, // bound to another generation
		{a.seal, st, relayResult{Next: nextOf(&other)}}, // the next state of another session
		{foreign, st, relayResult{Ended: true}},         // a forged end
	} {
		s, err := v.seal.sealData(&v.res, relayAD(cl.key, v.to))
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, s)
	}
	values = append(values, "v1.garbage", strings.Repeat("x", 100))
	kv := a.bucket(t.Context())
	rev := cl.rev
	for _, v := range values {
		if rev, err = kv.Update(t.Context(), cl.key, []byte(v), rev); err != nil {
			t.Fatal(err)
		}
		if _, res, err := b.claim(t.Context(), st); res != nil || err != nil {
			t.Fatalf("after writing %.20q: result %+v, %v; want none", v, res, err)
		}
	}

	waited := waitInBackground(t, b, st)
	next := nextOf(st)
	a.settle(t.Context(), &refreshClaim{kv: kv, key: cl.key, rev: rev}, st, next, time.Now(), nil)
	if w := <-waited; w.err != nil || w.res == nil || *w.res.Next != *next {
		t.Fatalf("result %+v, %v; want the genuine %+v", w.res, w.err, next)
	}
}

// TestRefreshRelay_Settle: a refresh the issuer refused tells the others
// the session ended; one the issuer could not answer withdraws the claim,
// so the waiting replica fails at once and a later claim wins.
func TestRefreshRelay_Settle(t *testing.T) {
	a, b, _ := testRelays(t, 5*time.Second)

	ended := testSession()
	cl, _, _ := a.claim(t.Context(), ended)
	a.settle(t.Context(), cl, ended, nil, time.Time{}, errSessionEnded)
	if _, res, err := b.claim(t.Context(), ended); err != nil || res == nil || !res.Ended || res.Next != nil {
		t.Fatalf("after the issuer refused: %+v, %v; want ended", res, err)
	}

	down := testSession()
	cl, _, _ = a.claim(t.Context(), down)
	waited := waitInBackground(t, b, down)
	a.settle(t.Context(), cl, down, nil, time.Time{}, errors.New("issuer unreachable"))
	if w := <-waited; !errors.Is(w.err, errRefreshWithdrawn) {
		t.Fatalf("wait on a withdrawn claim: %v, want errRefreshWithdrawn", w.err)
	}
	if cl, _, err := b.claim(t.Context(), down); err != nil || cl == nil {
		t.Fatalf("claim after the withdrawal = %v, %v; want won", cl, err)
	}
}

// TestRefreshRelay_Unavailable: without the bucket (an older issuer) or
// without a bus, a replica refreshes on its own.
func TestRefreshRelay_Unavailable(t *testing.T) {
	s := bustest.RunServer(t)
	r := &refreshRelay{conn: bustest.Connect(t, s), seal: testSealer(t, 1), patience: time.Second, now: time.Now, log: testLogger(t)}
	if _, _, err := r.claim(t.Context(), testSession()); !errors.Is(err, errNoRelay) {
		t.Fatalf("claim without the bucket: %v, want errNoRelay", err)
	}
	var none *refreshRelay
	if _, _, err := none.claim(t.Context(), testSession()); !errors.Is(err, errNoRelay) {
		t.Fatalf("claim without a bus: %v, want errNoRelay", err)
	}
}
