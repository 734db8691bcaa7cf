package ssf

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/heraldsec/herald/bus"
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
