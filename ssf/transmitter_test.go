package ssf

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// txns returns the Herald event ids the SETs came from, in order.
func txns(gs []got) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.txn()
	}
	return out
}

func ids(es ...*bus.Event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func TestPush_DeliversRevocationsInOrder(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	rc := newReceiver(t)
	st := pushStream(t, tr, "receiver-a", rc)
	if st.Delivery.AuthorizationHeader != "" {
		t.Error("the push authorization is shown back")
	}
	var want []*bus.Event
	for i := range 5 {
		want = append(want, g.revoke(t, bus.KindSession, fmt.Sprintf("sid-%d", i)))
		g.revoke(t, bus.KindToken, fmt.Sprintf("jti-%d", i)) // no CAEP event fits: not sent
	}
	want = append(want, g.revoke(t, bus.KindSubject, "alice"))
	gs := rc.waitFor(t, len(want))
	if got, w := txns(gs), ids(want...); !slices.Equal(got, w) {
		t.Fatalf("txn order %v, want %v", got, w)
	}
	for i, s := range gs {
		if s.claims["iss"] != testIssuer || s.claims["aud"] != "receiver-a" {
			t.Errorf("SET %d: iss %v aud %v", i, s.claims["iss"], s.claims["aud"])
		}
		if s.eventType() != EventSessionRevoked {
			t.Errorf("SET %d: event %s", i, s.eventType())
		}
		if s.jti() != JTI(st.ID, want[i].ID, 0) {
			t.Errorf("SET %d: jti %s, want %s", i, s.jti(), JTI(st.ID, want[i].ID, 0))
		}
	}
	if sub := gs[5].claims["sub_id"].(map[string]any); sub["format"] != "iss_sub" || sub["sub"] != "alice" {
		t.Errorf("subject revocation's sub_id = %v", sub)
	}
	if len(rc.received()) != len(want) {
		t.Errorf("receiver took %d SETs, want %d", len(rc.received()), len(want))
	}
}

func TestPush_ReceiverDownGetsEverythingInOrderWhenBack(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	rc := newReceiver(t)
	var down atomic.Bool
	down.Store(true)
	rc.setAnswer(func(n int, _ got) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusAccepted
	})
	st := pushStream(t, tr, "receiver-a", rc)
	var want []*bus.Event
	for i := range 20 {
		want = append(want, g.revoke(t, bus.KindSession, fmt.Sprintf("sid-%d", i)))
	}
	// Failing attempts come, and the stream stays enabled.
	bustest.WaitFor(t, 10*time.Second, func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.tries < 3 {
			return fmt.Errorf("%d attempts", rc.tries)
		}
		return nil
	})
	if s, _ := tr.Status(t.Context(), "receiver-a", st.ID); s.Status != StatusEnabled {
		t.Fatalf("status %v while the receiver answers 503", s)
	}
	in, _ := tr.Operator(t.Context(), st.ID)
	if in.LastError == "" || in.Lag == 0 {
		t.Errorf("operator view while down: %+v", in)
	}
	down.Store(false)
	gs := rc.waitFor(t, len(want))
	if got, w := txns(gs), ids(want...); !slices.Equal(got, w) {
		t.Fatalf("after the outage: %v, want %v", got, w)
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		in, _ := tr.Operator(t.Context(), st.ID)
		if in.Lag != 0 {
			return fmt.Errorf("lag %d", in.Lag)
		}
		return nil
	})
}

func TestPush_ReceiverRefusingTheStreamPausesIt(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	rc := newReceiver(t)
	var refuse atomic.Bool
	refuse.Store(true)
	rc.setAnswer(func(_ int, s got) int {
		if refuse.Load() {
			return http.StatusForbidden
		}
		return http.StatusAccepted
	})
	st := pushStream(t, tr, "receiver-a", rc)
	first := g.revoke(t, bus.KindSession, "sid-1")
	bustest.WaitFor(t, 10*time.Second, func() error {
		s, err := tr.Status(t.Context(), "receiver-a", st.ID)
		if err != nil || s.Status != StatusPaused {
			return fmt.Errorf("status %v, %v", s, err)
		}
		return nil
	})
	// The refused SET, then the stream-updated SET telling the receiver
	// it is paused (refused too).
	bustest.WaitFor(t, 10*time.Second, func() error {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.tries < 2 {
			return fmt.Errorf("%d attempts", rc.tries)
		}
		return nil
	})
	second := g.revoke(t, bus.KindSession, "sid-2")
	in, _ := tr.Operator(t.Context(), st.ID)
	if in.Status != StatusPaused || in.LastError == "" || in.Reason == "" {
		t.Errorf("operator view: %+v", in)
	}
	// The operator enables it again once the receiver is fixed: held
	// events come, after the stream-updated SET Herald owes.
	refuse.Store(false)
	if _, err := tr.SetStatus(t.Context(), "", StreamStatus{ID: st.ID, Status: StatusEnabled, Reason: "receiver fixed"}); err != nil {
		t.Fatal(err)
	}
	gs := rc.waitFor(t, 3)
	if gs[0].eventType() != EventStreamUpdated || gs[0].event()["status"] != StatusEnabled {
		t.Errorf("first SET after enabling: %s %v", gs[0].eventType(), gs[0].event())
	}
	if got, w := txns(gs[1:3]), ids(first, second); !slices.Equal(got, w) {
		t.Errorf("held events %v, want %v", got, w)
	}
	// While paused nothing was retried: the refused SET, the paused
	// notice, then, enabled, the enabled notice and the two held SETs.
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.tries != 5 {
		t.Errorf("%d attempts, want 5", rc.tries)
	}
}

func TestPush_SETRefusedByReceiverIsSkipped(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	rc := newReceiver(t)
	bad := g.revoke(t, bus.KindSession, "sid-0") // before the stream: not sent
	_ = bad
	rc.setAnswer(func(_ int, s got) int {
		if s.event() != nil && s.claims["sub_id"].(map[string]any)["session"] != nil &&
			s.claims["sub_id"].(map[string]any)["session"].(map[string]any)["id"] == "sid-1" {
			return http.StatusBadRequest
		}
		return http.StatusAccepted
	})
	st := pushStream(t, tr, "receiver-a", rc)
	g.revoke(t, bus.KindSession, "sid-1")
	ok := g.revoke(t, bus.KindSession, "sid-2")
	gs := rc.waitFor(t, 1)
	if gs[0].txn() != ok.ID {
		t.Errorf("took %s, want the SET after the refused one", gs[0].txn())
	}
	in, _ := tr.Operator(t.Context(), st.ID)
	if in.Status != StatusEnabled || in.LastError == "" {
		t.Errorf("operator view: %+v", in)
	}
}

// A replica that dies holding a SET (its connection gone, no goodbye)
// loses nothing: another replica sends the same SET, byte for byte.
func TestPush_ReplicaKilledMidDelivery(t *testing.T) {
	g := newRig(t)
	rc := newReceiver(t)
	shortAck := func(c *Config) { c.AckWait = 500 * time.Millisecond }
	tr1, conn1, stop1 := g.transmitter(t, shortAck)
	st := pushStream(t, tr1, "receiver-a", rc)
	// Only replica 1 runs: it takes the first SET, and the receiver
	// holds the request until the replica's connection is gone.
	holding, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	first.Store(true)
	rc.setAnswer(func(n int, s got) int {
		if first.CompareAndSwap(true, false) {
			close(holding)
			<-release
		}
		return http.StatusAccepted
	})
	e1 := g.revoke(t, bus.KindSession, "sid-1")
	<-holding
	conn1.Close() // killed: it cannot acknowledge what it sent
	tr2, _, _ := g.transmitter(t, shortAck)
	_ = tr2
	close(release)
	e2 := g.revoke(t, bus.KindSession, "sid-2")
	bustest.WaitFor(t, 20*time.Second, func() error {
		gs := rc.received()
		var txs []string
		for _, s := range gs {
			if !slices.Contains(txs, s.txn()) {
				txs = append(txs, s.txn())
			}
		}
		if !slices.Equal(txs, ids(e1, e2)) {
			return fmt.Errorf("distinct SETs in order of arrival %v, want %v", txs, ids(e1, e2))
		}
		return nil
	})
	stop1()
	byJTI := map[string]string{}
	for _, s := range rc.received() {
		if prev, ok := byJTI[s.jti()]; ok && prev != s.raw {
			t.Errorf("jti %s sent again with other bytes", s.jti())
		}
		byJTI[s.jti()] = s.raw
	}
	_ = st
}

func TestPoll_AckAndRedelivery(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, func(c *Config) { c.PollAckWait = 700 * time.Millisecond })
	st, err := tr.Create(t.Context(), "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Delivery.Method != MethodPoll || st.Delivery.EndpointURL != testIssuer+"/ssf/poll/"+st.ID {
		t.Fatalf("delivery %+v", st.Delivery)
	}
	e1 := g.revoke(t, bus.KindSession, "sid-1")
	e2 := g.revoke(t, bus.KindSession, "sid-2")
	poll := func(req *PollRequest) *PollResponse {
		t.Helper()
		resp, err := tr.Poll(t.Context(), "receiver-a", st.ID, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	var first *PollResponse
	bustest.WaitFor(t, 10*time.Second, func() error {
		first = poll(&PollRequest{ReturnImmediately: true})
		if len(first.Sets) < 2 {
			return fmt.Errorf("%d SETs", len(first.Sets))
		}
		return nil
	})
	j1, j2 := JTI(st.ID, e1.ID, 0), JTI(st.ID, e2.ID, 0)
	if _, ok := first.Sets[j1]; !ok {
		t.Fatalf("sets %v lack %s", first.Sets, j1)
	}
	// Poll-only again: nothing new until the acknowledgement wait passes.
	if r := poll(&PollRequest{ReturnImmediately: true}); len(r.Sets) != 0 {
		t.Errorf("SETs returned again at once: %d", len(r.Sets))
	}
	// Ack-only (maxEvents 0) the first one; the second comes again,
	// the same bytes.
	zero := 0
	if r := poll(&PollRequest{MaxEvents: &zero, Ack: []string{j1}}); len(r.Sets) != 0 {
		t.Errorf("an ack-only poll returned %d SETs", len(r.Sets))
	}
	again := poll(&PollRequest{}) // waits for the redelivery
	if len(again.Sets) != 1 || again.Sets[j2] != first.Sets[j2] {
		t.Fatalf("redelivered %v, want only %s with the same bytes", again.Sets, j2)
	}
	// Poll-and-ack: acknowledge it and receive what came since.
	e3 := g.revoke(t, bus.KindSession, "sid-3")
	r := poll(&PollRequest{Ack: []string{j2}})
	if _, ok := r.Sets[JTI(st.ID, e3.ID, 0)]; !ok || len(r.Sets) != 1 {
		t.Fatalf("poll-and-ack returned %v", r.Sets)
	}
	if _, err := tr.Poll(t.Context(), "receiver-b", st.ID, &PollRequest{}); !isStatus(err, http.StatusNotFound) {
		t.Errorf("another receiver polls: %v", err)
	}
}

func isStatus(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == code
}

func TestVerification(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, func(c *Config) { c.MinVerificationInterval = time.Hour })
	rc := newReceiver(t)
	st := pushStream(t, tr, "receiver-a", rc)
	if err := tr.Verify(t.Context(), "receiver-a", st.ID, "state-123"); err != nil {
		t.Fatal(err)
	}
	s := rc.waitFor(t, 1)[0]
	if s.eventType() != EventVerification || s.event()["state"] != "state-123" {
		t.Errorf("verification SET %v", s.claims)
	}
	if sub := s.claims["sub_id"].(map[string]any); sub["format"] != "opaque" || sub["id"] != st.ID {
		t.Errorf("sub_id %v", sub)
	}
	if err := tr.Verify(t.Context(), "receiver-a", st.ID, "again"); !isStatus(err, http.StatusTooManyRequests) {
		t.Errorf("second verification within the interval: %v", err)
	}
}

func TestSubjects_DefaultNone(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, func(c *Config) { c.DefaultSubjects = SubjectsNone })
	rc := newReceiver(t)
	st := pushStream(t, tr, "receiver-a", rc)
	if err := tr.AddSubject(t.Context(), "receiver-a", st.ID, IssSub(testIssuer, "alice")); err != nil {
		t.Fatal(err)
	}
	g.revoke(t, bus.KindSubject, "bob")
	alice := g.revoke(t, bus.KindSubject, "alice")
	rc.waitFor(t, 1)
	if err := tr.RemoveSubject(t.Context(), "receiver-a", st.ID, IssSub(testIssuer, "alice")); err != nil {
		t.Fatal(err)
	}
	g.revoke(t, bus.KindSubject, "alice") // removed again: not sent
	if err := tr.Verify(t.Context(), "receiver-a", st.ID, "end"); err != nil {
		t.Fatal(err)
	}
	gs := rc.waitFor(t, 2)
	if gs[0].txn() != alice.ID || gs[1].eventType() != EventVerification || len(gs) != 2 {
		t.Errorf("received %v", txns(gs))
	}
}

func TestStreams_OwnershipAndBounds(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, func(c *Config) { c.MaxStreamsPerReceiver = 2 })
	ctx := t.Context()
	a, err := tr.Create(ctx, "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Get(ctx, "receiver-b", a.ID); !isStatus(err, http.StatusNotFound) {
		t.Errorf("another receiver reads the stream: %v", err)
	}
	if err := tr.Delete(ctx, "receiver-b", a.ID); !isStatus(err, http.StatusNotFound) {
		t.Errorf("another receiver deletes the stream: %v", err)
	}
	if list, _ := tr.List(ctx, "receiver-b"); len(list) != 0 {
		t.Errorf("receiver b lists %v", list)
	}
	if _, err := tr.Create(ctx, "receiver-a", &StreamRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Create(ctx, "receiver-a", &StreamRequest{}); !isStatus(err, http.StatusConflict) {
		t.Errorf("a third stream: %v", err)
	}
	if _, err := tr.Create(ctx, "receiver-a", pushRequest("http://example.com/events")); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("plain http off loopback: %v", err)
	}
	if err := tr.Delete(ctx, "receiver-a", a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Get(ctx, "receiver-a", a.ID); !isStatus(err, http.StatusNotFound) {
		t.Errorf("deleted stream: %v", err)
	}
}

func TestStatus_DisabledHoldsNothing(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	rc := newReceiver(t)
	st := pushStream(t, tr, "receiver-a", rc)
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusDisabled}); err != nil {
		t.Fatal(err)
	}
	g.revoke(t, bus.KindSession, "while-disabled")
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusEnabled}); err != nil {
		t.Fatal(err)
	}
	after := g.revoke(t, bus.KindSession, "after")
	gs := rc.waitFor(t, 1)
	if gs[0].txn() != after.ID {
		t.Errorf("first SET after re-enabling came from %s, want %s", gs[0].txn(), after.ID)
	}
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: "stopped"}); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("unknown status: %v", err)
	}
}

func TestGap_ReportedNotSkippedSilently(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, func(c *Config) { c.Retention = 2 * time.Second })
	rc := newReceiver(t)
	st := pushStream(t, tr, "receiver-a", rc)
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusPaused}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, tr, st.ID, StatusPaused)
	g.revoke(t, bus.KindSession, "expires-1")
	g.revoke(t, bus.KindSession, "expires-2")
	bustest.WaitFor(t, 10*time.Second, func() error {
		info := bustest.StreamInfo(t, g.conn, bus.StreamSSF)
		if info.State.Msgs != 0 || info.State.LastSeq < 2 {
			return fmt.Errorf("%s holds %d messages, last %d", bus.StreamSSF, info.State.Msgs, info.State.LastSeq)
		}
		return nil
	})
	kept := g.revoke(t, bus.KindSession, "kept")
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusEnabled}); err != nil {
		t.Fatal(err)
	}
	gs := rc.waitFor(t, 1)
	if gs[0].txn() != kept.ID {
		t.Errorf("delivered %s, want %s", gs[0].txn(), kept.ID)
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		in, _ := tr.Operator(t.Context(), st.ID)
		if in.Gap == "" {
			return errors.New("no gap reported")
		}
		return nil
	})
}

// A receiver slower than the push timeout gets the SET again, the same
// bytes, and nothing after it overtakes it.
func TestPush_SlowReceiverGetsTheSameSETAgain(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, func(c *Config) { c.PushTimeout = 200 * time.Millisecond })
	rc := newReceiver(t)
	var slow atomic.Int32
	slow.Store(2)
	stalled := make(chan string, 4)
	rc.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Add(-1) >= 0 {
			io.Copy(io.Discard, r.Body) // the server notices the client leave only once it read the body
			<-r.Context().Done()        // answers only after the transmitter gave up
			stalled <- "stalled"
			return
		}
		rc.serve(w, r)
	})
	if _, err := tr.Create(t.Context(), "receiver-a", pushRequest(rc.srv.URL)); err != nil {
		t.Fatal(err)
	}
	e1 := g.revoke(t, bus.KindSession, "sid-1")
	e2 := g.revoke(t, bus.KindSession, "sid-2")
	gs := rc.waitFor(t, 2)
	if got := txns(gs); !slices.Equal(got, ids(e1, e2)) {
		t.Errorf("order %v, want %v", got, ids(e1, e2))
	}
	if len(stalled) != 2 {
		t.Errorf("%d stalled attempts, want 2", len(stalled))
	}
}

// Every replica's jwks_uri serves the transmitter keys all replicas
// published, and a replica's own key before it has started.
func TestJWKS_ServesEveryReplicasKey(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(tr.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 || set.Keys[0]["kid"] != tr.Signer().KeyID() || set.Keys[0]["alg"] != "RS256" {
		t.Fatalf("jwks %v", set.Keys)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tr2, _, _ := g.transmitter(t, func(c *Config) {
		s, err := NewSigner(other)
		if err != nil {
			t.Fatal(err)
		}
		c.Signer = s
	})
	want := []string{tr.Signer().KeyID(), tr2.Signer().KeyID()}
	slices.Sort(want)
	// The first replica learns the second's key from the bucket's watch.
	bustest.WaitFor(t, 10*time.Second, func() error {
		if err := json.Unmarshal(tr.JWKS(), &set); err != nil {
			return err
		}
		var kids []string
		for _, k := range set.Keys {
			kids = append(kids, k["kid"].(string))
		}
		slices.Sort(kids)
		if !slices.Equal(kids, want) {
			return fmt.Errorf("kids %v, want %v", kids, want)
		}
		return nil
	})
}

// A stream the operator paused stays paused until the operator enables
// it: the receiver cannot undo the operator.
func TestStatus_OperatorPauseIsBinding(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	st, err := tr.Create(t.Context(), "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.SetStatus(t.Context(), "", StreamStatus{ID: st.ID, Status: StatusPaused, Reason: "abuse"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusEnabled}); !isStatus(err, http.StatusForbidden) {
		t.Errorf("the receiver enables a stream the operator paused: %v", err)
	}
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusDisabled}); err != nil {
		t.Errorf("the receiver disables it: %v", err)
	}
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusEnabled}); !isStatus(err, http.StatusForbidden) {
		t.Errorf("the receiver enables it after disabling it: %v", err)
	}
	if s, _ := tr.Status(t.Context(), "receiver-a", st.ID); s.Status != StatusDisabled {
		t.Errorf("status %v", s)
	}
	if _, err := tr.SetStatus(t.Context(), "", StreamStatus{ID: st.ID, Status: StatusEnabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusPaused}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.SetStatus(t.Context(), "receiver-a", StreamStatus{ID: st.ID, Status: StatusEnabled}); err != nil {
		t.Errorf("the receiver enables what it paused itself: %v", err)
	}
}
