package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// worker pushes the SETs of one push stream. Every replica runs one per
// push stream; the stream's consumer hands its head to one of them at a
// time.
type worker struct {
	id     string
	wake   chan struct{} // the stream's record changed; capacity 1
	cancel context.CancelFunc
	done   chan struct{}
	// sentNotice is the stream-updated SET this worker last sent.
	sentNotice string
}

// counters are what this replica knows of a stream's deliveries.
type counters struct {
	last atomic.Uint64 // the last HERALD_SSF sequence it saw delivered
}

// pushLoop delivers stream w.id's SETs in order until ctx ends: a notice
// owed first, then, while the stream is enabled, its consumer's head.
func (t *Transmitter) pushLoop(ctx context.Context, w *worker) {
	idle := func(d time.Duration) {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-timer.C:
		}
	}
	for ctx.Err() == nil {
		r := t.record(w.id)
		if r == nil || r.Stream.Delivery.Method != MethodPush {
			return
		}
		if r.Notice != nil && r.Notice.ID != w.sentNotice {
			t.pushNotice(ctx, r)
			w.sentNotice = r.Notice.ID // the view may show it a moment longer
			continue
		}
		if r.Status != StatusEnabled {
			idle(time.Hour)
			continue
		}
		cons, err := t.js.Consumer(ctx, bus.StreamSSF, consumerName(w.id))
		if err != nil {
			if ctx.Err() == nil {
				t.log.Warn("stream position unavailable", "stream", w.id, "err", err)
			}
			idle(t.cfg.RetryMin)
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			if ctx.Err() == nil {
				t.log.Warn("read stream position", "stream", w.id, "err", err)
				idle(t.cfg.RetryMin)
			}
			continue
		}
		for m := range batch.Messages() {
			if t.deliver(ctx, w.id, m) {
				// Stopped, maybe paused here: nothing more goes until
				// this replica's view of the stream is the bucket's.
				for ctx.Err() == nil {
					if r := t.record(w.id); r == nil || r.Status != StatusEnabled {
						break
					}
					if r, _, err := t.load(ctx, "", w.id); err == nil && r.Status == StatusEnabled {
						break
					}
					idle(t.cfg.RetryMin)
				}
			}
		}
		cancel()
	}
}

// deliver pushes what message m of HERALD_SSF becomes on stream id, in
// order, and acknowledges m once the receiver took all of it (or refused
// a SET for itself). A receiver that must not be sent more (paused,
// deleted, refusing the stream) or a replica stopping leaves m to the
// consumer, which hands it out again. It reports whether it stopped the
// stream's delivery (paused, refused or changed).
func (t *Transmitter) deliver(ctx context.Context, id string, m jetstream.Msg) (paused bool) {
	r := t.record(id)
	if r == nil {
		_ = m.Nak()
		return false
	}
	meta, err := m.Metadata()
	if err != nil {
		t.log.Error("message without metadata", "stream", id, "err", err)
		_ = m.Term()
		return false
	}
	t.checkGap(ctx, r, meta.Sequence.Stream)
	sets, revoked, err := t.sets(r, m, meta)
	if err != nil {
		t.log.Error("event refused: not transmitted", "stream", id, "seq", meta.Sequence.Stream, "err", err)
		t.metrics.count(ctx, id, "refused_event")
		_ = m.Term()
		return false
	}
	for _, s := range sets {
		if cur := t.record(id); cur == nil || cur.Status != StatusEnabled {
			_ = m.Nak() // paused or deleted meanwhile: held, or dropped with the consumer
			return false
		}
		if t.pushWithRetry(ctx, r, m, s) == pushStop {
			_ = m.Nak()
			return ctx.Err() == nil
		}
	}
	if revoked {
		// Paused before the acknowledgement: a replica stopping in
		// between sends this message again, never the next one.
		if err := t.pauseRevoked(ctx, r); err != nil {
			_ = m.Nak()
			return false
		}
		paused = true
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.log.Warn("acknowledge delivered message", "stream", id, "err", err)
		return paused
	}
	t.counters(id).last.Store(meta.Sequence.Stream)
	return paused
}

// revokesReceiver reports whether e is Herald's revocation of the
// client that is stream r's receiver.
func (t *Transmitter) revokesReceiver(r *record, e *bus.Event) bool {
	rv := e.Revocation
	if e.Type != bus.TypeRevocation || rv == nil || rv.Kind != bus.KindClient || (rv.Issuer != "" && rv.Issuer != t.cfg.Issuer) {
		return false
	}
	return slices.Contains(rv.AllValues(), r.Receiver)
}

// pauseRevoked pauses stream r because its receiver's client was
// revoked: whoever holds its endpoint or its credential is sent nothing
// more (not even a stream-updated SET) until an operator enables it.
func (t *Transmitter) pauseRevoked(ctx context.Context, r *record) error {
	const reason = "paused by the transmitter: the receiver's client was revoked"
	_, err := t.change(ctx, "", r.Stream.ID, func(r *record) error {
		if r.Status == StatusEnabled {
			r.Status, r.Reason = StatusPaused, reason
		}
		return nil
	})
	if err != nil {
		t.log.Error("pause the stream of a revoked receiver", "stream", r.Stream.ID, "err", err)
		return err
	}
	t.log.Warn("stream paused: its receiver's client was revoked", "stream", r.Stream.ID, "receiver", r.Receiver)
	t.metrics.count(ctx, r.Stream.ID, "paused")
	return nil
}

// signed is one SET ready to send.
type signed struct {
	jti, token, typ string
}

// sets returns the SETs message m becomes on stream r, signed, and
// whether m revokes the stream's receiver (revokesReceiver).
func (t *Transmitter) sets(r *record, m jetstream.Msg, meta *jetstream.MsgMetadata) ([]signed, bool, error) {
	var items []Item
	var eventID string
	var at time.Time
	var revoked bool
	if strings.HasPrefix(m.Subject(), bus.SubjectSSFPrefix) {
		var c control
		if err := json.Unmarshal(m.Data(), &c); err != nil {
			return nil, false, fmt.Errorf("control message: %w", err)
		}
		items, eventID, at = []Item{c.item(r.Stream.ID)}, c.ID, c.Time
	} else {
		e, err := t.cfg.Open(bus.Delivery{Seq: meta.Sequence.Stream, Time: meta.Timestamp, Subject: m.Subject(),
			Header: m.Headers(), Data: m.Data()})
		if err != nil {
			return nil, false, err
		}
		if e.Time.Before(r.Since) {
			return nil, false, nil // made before the stream began
		}
		items, eventID, at = Map(e, t.cfg.Issuer), e.ID, e.Time
		revoked = t.revokesReceiver(r, e)
	}
	var out []signed
	for _, it := range items {
		if !r.wants(it) {
			continue
		}
		s, err := t.sign(r, eventID, at, it)
		if err != nil {
			return nil, false, err
		}
		out = append(out, s)
	}
	return out, revoked, nil
}

// sign addresses it to stream r and signs it. Its jti and iat come from
// the Herald event, so every replica and every retransmission produces
// the same SET.
func (t *Transmitter) sign(r *record, eventID string, at time.Time, it Item) (signed, error) {
	c := &Claims{Issuer: t.cfg.Issuer, JTI: JTI(r.Stream.ID, eventID, it.Index), IssuedAt: at.Unix(),
		Audience: r.Stream.Audience, TXN: eventID, Subject: it.Subject, Type: it.Type, Event: it.Event}
	tok, err := t.cfg.Signer.Sign(c)
	if err != nil {
		return signed{}, fmt.Errorf("sign SET: %w", err)
	}
	return signed{jti: c.JTI, token: tok, typ: it.Type}, nil
}

// pushOutcome is how one SET's delivery ended.
type pushOutcome int

const (
	pushDelivered pushOutcome = iota // the receiver took it
	pushRefused                      // the receiver refused this SET (RFC 8935 error): not sent again
	pushStop                         // stop the stream here: paused, deleted, refused, or the replica stops
)

// pushWithRetry pushes s until the receiver takes it, refuses it for
// itself, refuses the stream, or the stream stops; between attempts it
// waits, doubling from RetryMin to RetryMax, keeping m (the message s
// came from) its own.
func (t *Transmitter) pushWithRetry(ctx context.Context, r *record, m jetstream.Msg, s signed) pushOutcome {
	wait := t.cfg.RetryMin
	failures := 0
	for {
		res := t.post(ctx, r, s.token)
		switch res.kind {
		case resultOK:
			t.metrics.count(ctx, r.Stream.ID, "delivered")
			if failures > 0 {
				t.log.Info("receiver back", "stream", r.Stream.ID, "after_failures", failures)
			}
			return pushDelivered
		case resultSETError:
			t.metrics.count(ctx, r.Stream.ID, "refused_by_receiver")
			t.log.Warn("receiver refused a SET", "stream", r.Stream.ID, "jti", s.jti, "err", res.err)
			t.noteError(ctx, r.Stream.ID, fmt.Sprintf("receiver refused SET %s: %v", s.jti, res.err))
			return pushRefused
		case resultStreamError:
			t.metrics.count(ctx, r.Stream.ID, "paused")
			t.pauseFor(ctx, r, res.err.Error())
			return pushStop
		}
		failures++
		t.metrics.count(ctx, r.Stream.ID, "retry")
		if failures == 1 || failures%10 == 0 {
			t.log.Warn("push failed; retrying", "stream", r.Stream.ID, "jti", s.jti, "failures", failures, "err", res.err)
			t.noteError(ctx, r.Stream.ID, res.err.Error())
		}
		if !t.hold(ctx, m, wait) {
			return pushStop
		}
		wait = min(2*wait, t.cfg.RetryMax)
		cur := t.record(r.Stream.ID)
		if cur == nil || cur.Status != StatusEnabled || cur.Stream.Delivery != r.Stream.Delivery {
			return pushStop
		}
	}
}

// hold waits d while keeping m from being handed to another replica; it
// reports false when ctx ended.
func (t *Transmitter) hold(ctx context.Context, m jetstream.Msg, d time.Duration) bool {
	tick := time.NewTicker(max(t.cfg.AckWait/3, time.Millisecond))
	defer tick.Stop()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-tick.C:
			_ = m.InProgress()
		}
	}
}

type resultKind int

const (
	resultOK          resultKind = iota
	resultRetry                  // 5xx, 408, 429, a timeout, no connection
	resultSETError               // 400 with an RFC 8935 error: this SET only
	resultStreamError            // any other 4xx: the stream
)

type pushResult struct {
	kind resultKind
	err  error
}

// post sends one SET (RFC 8935 section 2) and classifies the answer.
func (t *Transmitter) post(ctx context.Context, r *record, token string) pushResult {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.PushTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.Stream.Delivery.EndpointURL, strings.NewReader(token))
	if err != nil {
		return pushResult{resultStreamError, fmt.Errorf("endpoint_url: %w", err)}
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if a := r.Stream.Delivery.AuthorizationHeader; a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := t.cfg.HTTP.Do(req)
	if err != nil {
		return pushResult{resultRetry, fmt.Errorf("push: %w", redact(err))}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return pushResult{kind: resultOK}
	case code == http.StatusBadRequest:
		var e struct {
			Err         string `json:"err"`
			Description string `json:"description"`
		}
		if json.Unmarshal(body, &e) == nil && e.Err != "" {
			return pushResult{resultSETError, fmt.Errorf("%s: %.200s", e.Err, e.Description)}
		}
		return pushResult{resultStreamError, fmt.Errorf("receiver answered %s", resp.Status)}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return pushResult{resultRetry, fmt.Errorf("receiver answered %s", resp.Status)}
	default:
		return pushResult{resultStreamError, fmt.Errorf("receiver answered %s", resp.Status)}
	}
}

// redact keeps a transport error's cause without the URL, which may
// carry what a receiver considers private.
func redact(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// noteError records err as the stream's last error, for operators.
func (t *Transmitter) noteError(ctx context.Context, id, msg string) {
	now := t.cfg.Now().UTC()
	if _, err := t.change(ctx, "", id, func(r *record) error {
		r.LastError, r.LastErrorAt = msg, now
		return nil
	}); err != nil && ctx.Err() == nil {
		t.log.Warn("record stream error", "stream", id, "err", err)
	}
}

// pauseFor pauses stream r because its receiver refused it, and tells
// the receiver so (a stream-updated SET, sent once: it is refusing).
func (t *Transmitter) pauseFor(ctx context.Context, r *record, why string) {
	reason := "paused by the transmitter: " + why
	now := t.cfg.Now().UTC()
	if _, err := t.change(ctx, "", r.Stream.ID, func(r *record) error {
		if r.Status == StatusEnabled {
			r.Status, r.Reason = StatusPaused, reason
		}
		r.LastError, r.LastErrorAt = why, now
		return nil
	}); err != nil {
		t.log.Error("pause stream", "stream", r.Stream.ID, "err", err)
		return
	}
	t.log.Warn("stream paused: the receiver refuses it", "stream", r.Stream.ID, "receiver", r.Receiver, "reason", why)
	n := &notice{ID: bus.NewID(), Status: StatusPaused, Reason: reason, Time: now}
	if s, err := t.sign(r, n.ID, n.Time, n.item(r.Stream.ID)); err == nil {
		t.post(ctx, r, s.token)
	}
}

// item returns the stream-updated event of n.
func (n *notice) item(streamID string) Item { return StreamUpdated(streamID, n.Status, n.Reason) }

// pushNotice sends the stream-updated SET owed to stream r's receiver, a
// few times at most, then forgets it.
func (t *Transmitter) pushNotice(ctx context.Context, r *record) {
	n := r.Notice
	s, err := t.sign(r, n.ID, n.Time, n.item(r.Stream.ID))
	if err == nil {
		wait := t.cfg.RetryMin
		for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
			res := t.post(ctx, r, s.token)
			if res.kind == resultOK {
				break
			}
			t.log.Warn("stream-updated not delivered", "stream", r.Stream.ID, "err", res.err)
			if res.kind != resultRetry || !sleep(ctx, wait) {
				break
			}
			wait *= 2
		}
	}
	if ctx.Err() != nil {
		return
	}
	t.clearNotice(ctx, r.Stream.ID, n.ID)
}

func (t *Transmitter) clearNotice(ctx context.Context, id, noticeID string) {
	if _, err := t.change(ctx, "", id, func(r *record) error {
		if r.Notice != nil && r.Notice.ID == noticeID {
			r.Notice = nil
		}
		return nil
	}); err != nil && !errors.Is(err, errNotFound) {
		t.log.Warn("clear stream notice", "stream", id, "err", err)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// checkGap reports events of HERALD_SSF that expired before stream r
// delivered them: seq, the next message, lies past what the stream last
// delivered, and the stream no longer holds what is in between.
func (t *Transmitter) checkGap(ctx context.Context, r *record, seq uint64) {
	c := t.counters(r.Stream.ID)
	floor := max(c.last.Load(), r.StartSeq-1)
	if seq <= floor+1 {
		return
	}
	if cons, err := t.js.Consumer(ctx, bus.StreamSSF, consumerName(r.Stream.ID)); err == nil {
		floor = max(floor, cons.CachedInfo().AckFloor.Stream)
	}
	if seq <= floor+1 {
		return
	}
	s, err := t.js.Stream(ctx, bus.StreamSSF)
	if err != nil {
		return
	}
	first := s.CachedInfo().State.FirstSeq
	if first <= floor+1 {
		return // what lies in between is other streams' own SETs
	}
	gap := fmt.Sprintf("events %d to %d of %s expired before delivery (retention %s)", floor+1, first-1, bus.StreamSSF, t.cfg.Retention)
	t.log.Error("stream gap: events expired before the receiver took them", "stream", r.Stream.ID, "from", floor+1, "to", first-1)
	t.metrics.count(ctx, r.Stream.ID, "gap")
	c.last.Store(seq - 1)
	if _, err := t.change(ctx, "", r.Stream.ID, func(r *record) error { r.Gap = gap; return nil }); err != nil {
		t.log.Warn("record stream gap", "stream", r.Stream.ID, "err", err)
	}
}
