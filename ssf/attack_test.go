package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/nats-io/nats.go/jetstream"
)

// TestAttack_ConcurrentCreatesKeepTheBounds: a receiver firing many
// creates at once (at one replica or several) gets at most
// MaxStreamsPerReceiver streams; the rest are refused 409.
func TestAttack_ConcurrentCreatesKeepTheBounds(t *testing.T) {
	g := newRig(t)
	edit := func(c *Config) { c.MaxStreamsPerReceiver = 3; c.MaxStreams = 5 }
	tr1, _, _ := g.transmitter(t, edit)
	tr2, _, _ := g.transmitter(t, edit)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			tr := tr1
			if i%2 == 1 {
				tr = tr2
			}
			_, errs[i] = tr.Create(t.Context(), "receiver-a", &StreamRequest{})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !isStatus(err, http.StatusConflict) {
			t.Errorf("create: %v", err)
		}
	}
	list, err := tr1.List(t.Context(), "receiver-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) > 3 || len(list) == 0 {
		t.Errorf("receiver-a has %d streams, bound 3", len(list))
	}
	// Again once they are deleted: the freed slots race the same way.
	for _, st := range list {
		if err := tr1.Delete(t.Context(), "receiver-a", st.ID); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		wg.Go(func() { _, errs[i] = tr2.Create(t.Context(), "receiver-a", &StreamRequest{}) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !isStatus(err, http.StatusConflict) {
			t.Errorf("create in a freed slot: %v", err)
		}
	}
	if list, err = tr1.List(t.Context(), "receiver-a"); err != nil || len(list) > 3 || len(list) == 0 {
		t.Errorf("receiver-a has %d streams (%v), bound 3", len(list), err)
	}
	// The deployment's bound holds the same way across receivers.
	for i := range n {
		wg.Go(func() { _, _ = tr1.Create(t.Context(), fmt.Sprintf("receiver-%d", i), &StreamRequest{}) })
	}
	wg.Wait()
	all, err := tr1.Streams(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) > 5 {
		t.Errorf("%d streams in all, bound 5", len(all))
	}
}

// TestAttack_PollBadInputChangesNothing: a poll whose acknowledgements
// or errors hold one jti that cannot be one Herald issued is refused
// whole: nothing acknowledged, no error recorded for operators.
func TestAttack_PollBadInputChangesNothing(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	ctx := t.Context()
	st, err := tr.Create(ctx, "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e := g.revoke(t, bus.KindSession, "sid-1")
	var first *PollResponse
	for first == nil || len(first.Sets) == 0 {
		if first, err = tr.Poll(ctx, "receiver-a", st.ID, &PollRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	jti := JTI(st.ID, e.ID, 0)
	zero := 0
	bad := []*PollRequest{
		{MaxEvents: &zero, Ack: []string{jti, "no.such*jti>"}},
		{MaxEvents: &zero, Ack: []string{jti}, SetErrs: map[string]SetErr{"bad jti\n": {Err: "x", Description: "forged"}}},
		{MaxEvents: &zero, SetErrs: map[string]SetErr{"a.b": {Err: "x", Description: "forged"}}},
	}
	for i, req := range bad {
		if _, err := tr.Poll(ctx, "receiver-a", st.ID, req); !isStatus(err, http.StatusBadRequest) {
			t.Errorf("poll %d: %v, want 400", i, err)
		}
	}
	in, err := tr.Operator(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.LastError != "" {
		t.Errorf("a refused poll recorded an error: %q", in.LastError)
	}
	if in.Lag != 1 {
		t.Errorf("lag %d after refused acknowledgements, want 1 (nothing acknowledged)", in.Lag)
	}
	// The same acknowledgement, well formed, is taken.
	if _, err := tr.Poll(ctx, "receiver-a", st.ID, &PollRequest{MaxEvents: &zero, Ack: []string{jti}}); err != nil {
		t.Fatal(err)
	}
}

// TestAttack_SubjectsBoundedInBytes: a receiver listing (removing, the default subjects being ALL) the largest
// subjects it may is refused with a 400 once the stream's subjects
// reach their bound in bytes, before its record outgrows what the bus
// stores; the stream still works.
func TestAttack_SubjectsBoundedInBytes(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	ctx := t.Context()
	st, err := tr.Create(ctx, "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	big := func(i int) Subject {
		s, err := ParseSubject(json.RawMessage(fmt.Sprintf(`{"format":"opaque","id":"%04d%s"}`, i, strings.Repeat("x", maxSubjectString-4))))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var refused error
	for i := range 1000 {
		if err := tr.RemoveSubject(ctx, "receiver-a", st.ID, big(i)); err != nil {
			refused = err
			break
		}
	}
	if refused == nil {
		t.Fatal("1000 subjects of 1 KiB each taken")
	}
	if !isStatus(refused, http.StatusBadRequest) {
		t.Fatalf("refused with %v, want a 400", refused)
	}
	if err := tr.Verify(ctx, "receiver-a", st.ID, "still-works"); err != nil {
		t.Errorf("stream after the refusal: %v", err)
	}
}

// TestAttack_LongPollsBounded: a receiver opening many long polls on a
// stream holds at most MaxPollWaiters of them at a replica; the others
// are answered at once, empty, as with returnImmediately.
func TestAttack_LongPollsBounded(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	st, err := tr.Create(t.Context(), "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const n = 3 * MaxPollWaiters
	done := make(chan error, n)
	for range n {
		go func() {
			resp, err := tr.Poll(ctx, "receiver-a", st.ID, &PollRequest{})
			if err == nil && len(resp.Sets) != 0 {
				err = fmt.Errorf("%d SETs", len(resp.Sets))
			}
			done <- err
		}()
	}
	timeout := time.After(MaxPollWait / 2)
	for i := range n - MaxPollWaiters {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatalf("%d polls answered at once, want %d: every long poll holds the server", i, n-MaxPollWaiters)
		}
	}
	cancel()
	for range MaxPollWaiters {
		<-done
	}
}

// TestAttack_PushEndpointRefusedAtCreation: an endpoint_url no push can
// ever reach (a port out of range) is refused when the stream is
// created, not retried for ever; so are http hosts that only look like
// loopback, user information and fragments. Redirects are not followed.
func TestAttack_PushEndpointRefusedAtCreation(t *testing.T) {
	for _, u := range []string{
		"https://[::1]:99999/events", "https://example.com:0/events", "https://example.com:65536/",
		"http://localhost.attacker.example/events", "http://127.0.0.1.nip.io/events", "http://0.0.0.0/events",
		"http://[fe80::1%25lo]/events", "https://user:pw@example.com/events", "https://example.com/events#x",
		"ftp://example.com/events", "//example.com/events", "https:///events",
	} {
		if err := CheckDelivery(&Delivery{Method: MethodPush, EndpointURL: u}); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
	for _, u := range []string{"https://example.com:443/events", "http://[::1]:8080/events", "http://127.0.0.1/events", "http://localhost:1/x"} {
		if err := CheckDelivery(&Delivery{Method: MethodPush, EndpointURL: u}); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, a := range []string{"Bearer x\r\nX-Injected: 1", "Bearer x\n", "Bearer \x00", "Bearer \xff", "Bearer \x7f"} {
		if err := CheckDelivery(&Delivery{Method: MethodPush, EndpointURL: "https://example.com/", AuthorizationHeader: a}); err == nil {
			t.Errorf("authorization_header %q accepted", a)
		}
	}
}

// TestAttack_RevokedReceiverStopsReceiving: once the receiver's own
// client is revoked (its credential stolen, say), its push stream is
// paused after the revocation itself: the endpoint it registered gets
// nothing more, whatever it answers. The operator sees why.
func TestAttack_RevokedReceiverStopsReceiving(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	rc := newReceiver(t)
	st := pushStream(t, tr, "cl_receiver", rc)
	before := g.revoke(t, bus.KindSession, "sid-before")
	g.revoke(t, bus.KindClient, "cl_other") // another client: nothing changes
	revoked := g.revoke(t, bus.KindClient, "cl_receiver")
	g.revoke(t, bus.KindSession, "sid-after")
	waitStatus(t, tr, st.ID, StatusPaused)
	got := rc.received()
	if len(got) < 3 || got[0].txn() != before.ID || got[len(got)-1].txn() != revoked.ID {
		t.Errorf("received %v, want up to the receiver's own revocation %s", txns(got), revoked.ID)
	}
	in, err := tr.Operator(t.Context(), st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.Status != StatusPaused || !strings.Contains(in.Reason, "revoked") {
		t.Errorf("operator sees %s %q", in.Status, in.Reason)
	}
	// Nothing held is pushed while paused, nor what comes next.
	g.revoke(t, bus.KindSession, "sid-later")
	if err := tr.Verify(t.Context(), "cl_receiver", st.ID, "probe"); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.received()); n != len(got) {
		t.Errorf("%d SETs pushed after the pause", n-len(got))
	}
}

// TestAttack_RevokedReceiverPollStops: a poll stream stops at its
// receiver's revocation too, should a poll still get through.
func TestAttack_RevokedReceiverPollStops(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	st, err := tr.Create(t.Context(), "cl_receiver", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	revoked := g.revoke(t, bus.KindClient, "cl_receiver")
	after := g.revoke(t, bus.KindSession, "sid-after")
	var sets map[string]string
	for len(sets) == 0 {
		resp, err := tr.Poll(t.Context(), "cl_receiver", st.ID, &PollRequest{MaxEvents: ptr(10)})
		if err != nil {
			t.Fatal(err)
		}
		sets = resp.Sets
	}
	if _, ok := sets[JTI(st.ID, revoked.ID, 0)]; !ok || len(sets) != 1 {
		t.Errorf("polled %d SETs, want only the receiver's revocation", len(sets))
	}
	if _, ok := sets[JTI(st.ID, after.ID, 0)]; ok {
		t.Error("a SET past the receiver's revocation was returned")
	}
	if s, _ := tr.Status(t.Context(), "cl_receiver", st.ID); s == nil || s.Status != StatusPaused {
		t.Errorf("status %+v, want paused", s)
	}
}

// TestAttack_AckOfAnotherReceiversJTI: a receiver acknowledging the jti
// of another receiver's SET, on its own stream or on the other's,
// acknowledges nothing of the other's: that SET stays pending.
func TestAttack_AckOfAnotherReceiversJTI(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	ctx := t.Context()
	a, err := tr.Create(ctx, "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := tr.Create(ctx, "receiver-b", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e := g.revoke(t, bus.KindSession, "sid-1")
	for _, st := range []*Stream{a, b} {
		for {
			resp, err := tr.Poll(ctx, st.Audience[0], st.ID, &PollRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Sets) > 0 {
				break
			}
		}
	}
	jtiA := JTI(a.ID, e.ID, 0)
	zero := 0
	if _, err := tr.Poll(ctx, "receiver-b", b.ID, &PollRequest{MaxEvents: &zero, Ack: []string{jtiA}}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Poll(ctx, "receiver-b", a.ID, &PollRequest{MaxEvents: &zero, Ack: []string{jtiA}}); !isStatus(err, http.StatusNotFound) {
		t.Errorf("b acknowledging on a's stream: %v, want 404", err)
	}
	for _, st := range []*Stream{a, b} {
		in, err := tr.Operator(ctx, st.ID)
		if err != nil {
			t.Fatal(err)
		}
		if in.Lag != 1 {
			t.Errorf("stream of %s: lag %d, want its SET still pending", st.Audience[0], in.Lag)
		}
	}
}

// TestAttack_CreateDeleteLoopLeavesNothing: a receiver creating and
// deleting streams in a loop leaves nothing growing in the streams
// bucket once the transmitter has tidied it: each deleted stream's
// marker goes, live streams stay.
func TestAttack_CreateDeleteLoopLeavesNothing(t *testing.T) {
	g := newRig(t)
	tr, conn, _ := g.transmitter(t, nil)
	ctx := t.Context()
	keep, err := tr.Create(ctx, "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for range 40 {
		st, err := tr.Create(ctx, "receiver-a", &StreamRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if err := tr.Delete(ctx, "receiver-a", st.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := tr.dropMarkers(ctx, -1); err != nil {
		t.Fatal(err)
	}
	s, err := conn.JetStream().Stream(ctx, "KV_"+bus.BucketSSFStreams)
	if err != nil {
		t.Fatal(err)
	}
	// The live stream, its slot and the transmitter key.
	if n := s.CachedInfo().State.Msgs; n > 4 {
		t.Errorf("%d messages left in %s after 40 creates and deletes", n, bus.BucketSSFStreams)
	}
	if _, err := tr.Get(ctx, "receiver-a", keep.ID); err != nil {
		t.Errorf("the live stream: %v", err)
	}
	if _, err := tr.Create(ctx, "receiver-a", &StreamRequest{}); err != nil {
		t.Errorf("create after tidying: %v", err)
	}
}

// TestAttack_OnlyHeraldsOwnSessionRevocationsGo: over a real stream,
// revocations of tokens, keys and everything, and revocations limited to
// an external issuer (even of a client id equal to the receiver's) are
// never transmitted nor pause the stream; every SET pushed has a kid,
// typ secevent+jwt, one event, no sub and no exp (verifySET).
func TestAttack_OnlyHeraldsOwnSessionRevocationsGo(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, nil)
	rc := newReceiver(t)
	st := pushStream(t, tr, "cl_receiver", rc)
	publish := func(kind bus.Kind, iss string, values ...string) *bus.Event {
		now := time.Now().UTC()
		r := &bus.Revocation{Kind: kind, Issuer: iss, Reason: "test", At: now, Until: now.Add(bustest.RevocationMaxAge)}
		if len(values) == 1 {
			r.Value = values[0]
		} else if len(values) > 1 {
			r.Values = values
		}
		e := &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "admin:test", Revocation: r}
		bustest.Publish(t, g.conn, e)
		return e
	}
	const ext = "https://idp.example"
	publish(bus.KindToken, "", "jti-1")
	publish(bus.KindToken, "", "jti-2", "jti-3")
	publish(bus.KindKey, "", "kid-1")
	publish(bus.KindAll, "")
	publish(bus.KindSubject, ext, "alice")
	publish(bus.KindSession, ext, "sid-x", "sid-y")
	publish(bus.KindClient, ext, "cl_receiver")
	last := publish(bus.KindSession, "", "sid-1")
	gs := rc.waitFor(t, 1)
	if len(gs) != 1 || gs[0].txn() != last.ID {
		t.Fatalf("received %v, want only %s", txns(gs), last.ID)
	}
	if kid, _ := gs[0].header["kid"].(string); kid == "" || kid != tr.Signer().KeyID() {
		t.Errorf("kid %q, want the transmitter key's %q", kid, tr.Signer().KeyID())
	}
	if s, err := tr.Status(t.Context(), "cl_receiver", st.ID); err != nil || s.Status != StatusEnabled {
		t.Errorf("status %+v (%v), want enabled", s, err)
	}
}

// TestAttack_NoPushToTheIssuersOwnHost: a receiver cannot have a
// transmitter that is not a development one POST, with a header of its
// choosing, to services on the issuer's own host (an Envoy sidecar's
// admin port answers POST /quitquitquit): endpoints on a loopback host
// are refused, over http or https. A transmitter whose issuer URL is on
// loopback (herald dev) takes them.
func TestAttack_NoPushToTheIssuersOwnHost(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, func(c *Config) { c.LoopbackPush = false })
	ctx := t.Context()
	for _, u := range []string{"http://127.0.0.1:15000/quitquitquit", "http://localhost:8222/", "http://[::1]:15000/",
		"https://127.0.0.1/events", "https://LOCALHOST/events", "http://[::ffff:127.0.0.1]/"} {
		if _, err := tr.Create(ctx, "receiver-a", pushRequest(u)); !isStatus(err, http.StatusBadRequest) {
			t.Errorf("%s: %v, want 400", u, err)
		}
	}
	st, err := tr.Create(ctx, "receiver-a", pushRequest("https://receiver.example/events"))
	if err != nil {
		t.Fatal(err)
	}
	patch := pushRequest("http://127.0.0.1:15000/quitquitquit")
	patch.ID = st.ID
	if _, err := tr.Update(ctx, "receiver-a", patch, false); !isStatus(err, http.StatusBadRequest) {
		t.Errorf("update to a loopback endpoint: %v, want 400", err)
	}
	dev, _, _ := g.transmitter(t, func(c *Config) { c.Issuer = "http://127.0.0.1:8080"; c.LoopbackPush = false })
	if _, err := dev.Create(ctx, "receiver-b", pushRequest("http://127.0.0.1:9000/events")); err != nil {
		t.Errorf("a development transmitter refuses a loopback receiver: %v", err)
	}
}

// TestAttack_VerificationFloodTold: verification requests past the
// first within min_verification_interval are refused 429 with how long
// to wait, and queue nothing.
func TestAttack_VerificationFloodTold(t *testing.T) {
	g := newRig(t)
	tr, _, _ := g.transmitter(t, func(c *Config) { c.MinVerificationInterval = time.Hour })
	st, err := tr.Create(t.Context(), "receiver-a", &StreamRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Verify(t.Context(), "receiver-a", st.ID, "one"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		err := tr.Verify(t.Context(), "receiver-a", st.ID, "again")
		var e *Error
		if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests || e.RetryAfter <= 50*time.Minute {
			t.Fatalf("verification within the interval: %v", err)
		}
	}
	stream, err := g.conn.JetStream().Stream(t.Context(), bus.StreamSSF)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context(), jetstream.WithSubjectFilter(bus.SubjectSSFPrefix+st.ID))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[bus.SubjectSSFPrefix+st.ID]; n != 1 {
		t.Errorf("%d events queued for the stream, want the one verification", n)
	}
	// The consumer's pending count follows the stream asynchronously
	// inside nats-server; the operator's view catches up with it.
	bustest.WaitFor(t, 10*time.Second, func() error {
		in, err := tr.Operator(t.Context(), st.ID)
		if err != nil {
			return err
		}
		if in.Lag != 1 {
			return fmt.Errorf("lag %d, want the one verification queued", in.Lag)
		}
		return nil
	})
}
