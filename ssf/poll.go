package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// Bounds of a poll request.
const (
	// MaxPollEvents bounds maxEvents.
	MaxPollEvents = 256
	// DefaultPollEvents is how many SETs a poll without maxEvents gets at
	// most.
	DefaultPollEvents = 32
	// MaxPollAcks bounds the jtis one poll acknowledges or reports.
	MaxPollAcks = 1024
	// MaxPollWait is the longest a poll without returnImmediately waits
	// for a SET.
	MaxPollWait = 25 * time.Second
	// MaxPollWaiters bounds the polls of one stream that wait at one
	// replica; a poll past it is answered at once, as with
	// returnImmediately.
	MaxPollWaiters = 4
)

// PollRequest is an RFC 8936 poll request.
type PollRequest struct {
	// MaxEvents is the most SETs to return; nil: DefaultPollEvents; 0:
	// none (an acknowledgement only).
	MaxEvents *int `json:"maxEvents,omitempty"`
	// ReturnImmediately: answer at once even with no SET.
	ReturnImmediately bool `json:"returnImmediately,omitempty"`
	// Ack lists the jtis of SETs the receiver processed.
	Ack []string `json:"ack,omitempty"`
	// SetErrs lists the SETs the receiver refused, by jti.
	SetErrs map[string]SetErr `json:"setErrs,omitempty"`
}

// SetErr is a receiver's refusal of one SET (RFC 8936 section 2.4.4).
type SetErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// PollResponse is an RFC 8936 poll response.
type PollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable,omitempty"`
}

// pendingMsg is a message of HERALD_SSF whose SETs a poll returned: it is
// acknowledged in JetStream once the receiver acknowledged (or reported)
// every one of them.
type pendingMsg struct {
	Reply string   `json:"reply"`
	JTIs  []string `json:"jtis"`
}

func pendingMsgKey(id string, seq uint64) string {
	return "m." + id + "." + strconv.FormatUint(seq, 10)
}
func pendingJTIKey(id, jti string) string { return "j." + id + "." + jti }

// validJTI reports whether jti could be one the transmitter issued,
// before it names a bucket key.
func validJTI(jti string) bool { return validID(jti) }

// Poll answers a poll of receiver's poll stream id (RFC 8936): it
// records the acknowledgements and errors, then returns up to MaxEvents
// SETs, waiting up to MaxPollWait for one unless ReturnImmediately. SETs
// not acknowledged within the poll acknowledgement wait come again, with
// the same jti.
func (t *Transmitter) Poll(ctx context.Context, receiver Receiver, id string, req *PollRequest) (*PollResponse, error) {
	r, _, err := t.load(ctx, receiver, id)
	if err != nil {
		return nil, err
	}
	if r.Stream.Delivery.Method != MethodPoll {
		return nil, badRequest("stream %s is delivered by push, not poll", id)
	}
	if len(req.Ack)+len(req.SetErrs) > MaxPollAcks {
		return nil, badRequest("at most %d acknowledgements and errors per poll", MaxPollAcks)
	}
	n := DefaultPollEvents
	if req.MaxEvents != nil {
		if *req.MaxEvents < 0 {
			return nil, badRequest("maxEvents must not be negative")
		}
		n = min(*req.MaxEvents, MaxPollEvents)
	}
	// Every jti is checked before any is acted on: a request refused
	// changes nothing.
	for _, jti := range req.Ack {
		if !validJTI(jti) {
			return nil, badRequest("ack: %.80q is not a jti this transmitter issued", jti)
		}
	}
	refused := slices.Sorted(maps.Keys(req.SetErrs)) // the same record for the same request
	for _, jti := range refused {
		if !validJTI(jti) {
			return nil, badRequest("setErrs: %.80q is not a jti this transmitter issued", jti)
		}
	}
	for _, jti := range req.Ack {
		if err := t.ack(ctx, r, jti, false); err != nil {
			return nil, err
		}
	}
	if len(refused) > 0 {
		// One record and one log line per poll, however many SETs it
		// reports.
		e := req.SetErrs[refused[0]]
		t.log.Warn("receiver refused SETs", "stream", id, "count", len(refused), "jti", refused[0], "err", truncate(e.Err, 32))
		t.noteError(ctx, id, fmt.Sprintf("receiver refused %d SET(s), first %s: %s: %s", len(refused), refused[0], truncate(e.Err, 32), truncate(e.Description, 200)))
	}
	for _, jti := range refused {
		if err := t.ack(ctx, r, jti, true); err != nil {
			return nil, err
		}
	}
	resp := &PollResponse{Sets: map[string]string{}}
	if r.Notice != nil && n > 0 {
		s, err := t.sign(r, r.Notice.ID, r.Notice.Time, r.Notice.item(id))
		if err != nil {
			return nil, err
		}
		resp.Sets[s.jti] = s.token
		n--
	}
	if n == 0 || r.Status != StatusEnabled {
		return resp, nil
	}
	cons, err := t.js.Consumer(ctx, bus.StreamSSF, consumerName(id))
	if err != nil {
		return nil, fmt.Errorf("position of stream %s: %w", id, err)
	}
	wait := !req.ReturnImmediately && len(resp.Sets) == 0
	if wait {
		if wait = t.enterWait(id); wait {
			defer t.leaveWait(id)
		}
	}
	msgs, err := fetch(ctx, cons, n, wait)
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", id, err)
	}
	stopped := false // the stream's receiver was revoked
	for _, m := range msgs {
		if stopped {
			_ = m.Nak() // handed back: the stream is paused
			continue
		}
		meta, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			continue
		}
		t.checkGap(ctx, r, meta.Sequence.Stream)
		c := t.counters(id)
		if meta.Sequence.Stream > c.last.Load() {
			c.last.Store(meta.Sequence.Stream)
		}
		resp.MoreAvailable = meta.NumPending > 0
		sets, revoked, err := t.sets(r, m, meta)
		if revoked {
			// Nothing past the receiver's own revocation: the stream is
			// paused, what this poll took after it is handed back.
			stopped = true
			if err := t.pauseRevoked(ctx, r); err != nil {
				_ = m.Nak()
				return nil, err
			}
		}
		if err != nil {
			t.log.Error("event refused: not transmitted", "stream", id, "seq", meta.Sequence.Stream, "err", err)
			t.metrics.count(ctx, id, "refused_event")
			_ = m.Term()
			continue
		}
		if len(sets) == 0 {
			_ = m.Ack()
			continue
		}
		if err := t.remember(ctx, id, meta.Sequence.Stream, m.Reply(), sets); err != nil {
			_ = m.Nak()
			return nil, err
		}
		for _, s := range sets {
			resp.Sets[s.jti] = s.token
		}
	}
	return resp, nil
}

// fetch takes up to n messages from cons: what is there, or, when wait,
// the first one to come within MaxPollWait (or ctx) and what follows it.
func fetch(ctx context.Context, cons jetstream.Consumer, n int, wait bool) ([]jetstream.Msg, error) {
	var out []jetstream.Msg
	take := func(b jetstream.MessageBatch, err error) error {
		if err != nil {
			return err
		}
		for m := range b.Messages() {
			out = append(out, m)
		}
		if err := b.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	if err := take(cons.FetchNoWait(n)); err != nil || len(out) > 0 || !wait {
		return out, err
	}
	wctx, cancel := context.WithTimeout(ctx, MaxPollWait)
	defer cancel()
	if err := take(cons.Fetch(1, jetstream.FetchContext(wctx))); err != nil || len(out) == 0 || n == 1 {
		return out, err
	}
	err := take(cons.FetchNoWait(n - 1))
	return out, err
}

// remember records that the SETs of message seq were returned, so that
// whichever replica the receiver's acknowledgements reach can
// acknowledge the message.
func (t *Transmitter) remember(ctx context.Context, id string, seq uint64, reply string, sets []signed) error {
	pm := pendingMsg{Reply: reply}
	for _, s := range sets {
		pm.JTIs = append(pm.JTIs, s.jti)
	}
	b, err := json.Marshal(pm)
	if err != nil {
		return err
	}
	if _, err := t.pending.Put(ctx, pendingMsgKey(id, seq), b); err != nil {
		return fmt.Errorf("record poll delivery: %w", err)
	}
	for _, s := range sets {
		if _, err := t.pending.Put(ctx, pendingJTIKey(id, s.jti), []byte(strconv.FormatUint(seq, 10))); err != nil {
			return fmt.Errorf("record poll delivery: %w", err)
		}
	}
	return nil
}

// ack records the receiver's acknowledgement (or, with refused, its
// error report) of SET jti on stream r, and acknowledges the message it
// came from once all its SETs are. A jti the transmitter does not know
// (already acknowledged, or its record expired and the SET will come
// again) is ignored.
func (t *Transmitter) ack(ctx context.Context, r *record, jti string, refused bool) error {
	id := r.Stream.ID
	if !validJTI(jti) {
		return badRequest("%q is not a jti this transmitter issued", jti)
	}
	if r.Notice != nil && jti == JTI(id, r.Notice.ID, 0) {
		t.clearNotice(ctx, id, r.Notice.ID)
		return nil
	}
	e, err := t.pending.Get(ctx, pendingJTIKey(id, jti))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read poll delivery: %w", err)
	}
	seq, _ := strconv.ParseUint(string(e.Value()), 10, 64)
	result := "acked"
	if refused {
		result = "set_error"
	}
	for range 16 {
		me, err := t.pending.Get(ctx, pendingMsgKey(id, seq))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			break
		}
		if err != nil {
			return fmt.Errorf("read poll delivery: %w", err)
		}
		var pm pendingMsg
		if err := json.Unmarshal(me.Value(), &pm); err != nil {
			return fmt.Errorf("read poll delivery: %w", err)
		}
		pm.JTIs = slices.DeleteFunc(pm.JTIs, func(s string) bool { return s == jti })
		if len(pm.JTIs) > 0 {
			b, _ := json.Marshal(pm)
			if _, err := t.pending.Update(ctx, pendingMsgKey(id, seq), b, me.Revision()); err != nil {
				if isConflict(err) {
					continue
				}
				return fmt.Errorf("record acknowledgement: %w", err)
			}
			break
		}
		// Published, not requested: JetStream does not answer an
		// acknowledgement of a message no longer pending, and an
		// acknowledgement lost on the way only makes the SET come again.
		if err := t.cfg.Conn.NATS().Publish(pm.Reply, []byte("+ACK")); err != nil {
			return fmt.Errorf("acknowledge SET %s: %w", jti, err)
		}
		_ = t.pending.Delete(ctx, pendingMsgKey(id, seq))
		break
	}
	_ = t.pending.Delete(ctx, pendingJTIKey(id, jti))
	t.metrics.count(ctx, id, result)
	return nil
}

// enterWait takes one of stream id's MaxPollWaiters places for a poll
// that waits; false when they are all taken.
func (t *Transmitter) enterWait(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.waiting[id] >= MaxPollWaiters {
		return false
	}
	t.waiting[id]++
	return true
}

// leaveWait gives back the place enterWait took.
func (t *Transmitter) leaveWait(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.waiting[id]--; t.waiting[id] <= 0 {
		delete(t.waiting, id)
	}
}
