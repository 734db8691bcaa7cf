package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

// Signals received from outside: OpenID Connect back-channel logout
// tokens (POST /oidc/backchannel-logout) and Shared Signals SETs, pushed
// (POST /ssf/push, RFC 8935) or polled (RFC 8936). Each is checked by the
// signals package, claimed once across the replicas in HERALD_SIGNALS
// (by a hash of its iss and jti), turned into a revocation limited to its
// issuer, or only recorded, and audited as a signal.received event with
// the raw token, in the same commit as the revocation it caused.

// signalRecord is the value of a replay record in HERALD_SIGNALS: the
// hash of the token received under that iss and jti, and whether acting
// on it is done.
type signalRecord struct {
	Hash string `json:"hash"`
	Done bool   `json:"done"`
}

// errSignalReplayed refuses a token whose iss and jti came before with
// another token.
var errSignalReplayed = &signals.Error{Code: signals.CodeInvalidRequest, Description: "jti already received with another token (replay)"}

// signalOutcome is what receiving a signal did.
type signalOutcome struct {
	// Duplicate: the same token was received and acted on before; nothing
	// was done again.
	Duplicate bool
	Signal    *bus.Signal
	Seq       uint64
}

// signalWork is one received token, checked, and what it asks for.
type signalWork struct {
	format, sender, raw string
	iss, jti            string
	events              []string
	// revoke is the revocation to make; nil records the signal only, for
	// the reason note.
	revoke *RevocationRequest
	note   string
	// lookup, if not nil, is the read of the token's record started
	// before its checks (prefetchSignal).
	lookup *signalLookup
}

// receiveSignal acts on w and records it in HERALD_SIGNALS, so that a
// token received again, on any replica, is not acted on twice: the same
// token is a duplicate, another one with its iss and jti a replay.
//
// Nothing is written before the signal's own events, so that a logout
// reaches verifiers as fast as a revocation made in Herald. The record is
// read while the issuer writes its state for the signal (change.waitFor)
// and written once the events are acknowledged; two replicas acting on
// the same token at the same moment publish events with the same ids
// (bus.SignalEventID), which JetStream stores once, and the second to
// write the record answers as for a duplicate.
func (s *Service) receiveSignal(ctx context.Context, w *signalWork) (*signalOutcome, error) {
	key := bus.SignalKey(w.iss, w.jti)
	sum := sha256.Sum256([]byte(w.raw))
	hash := hex.EncodeToString(sum[:])
	val, err := json.Marshal(signalRecord{Hash: hash, Done: true})
	if err != nil {
		return nil, err
	}
	pre := w.lookup
	if pre == nil || pre.iss != w.iss || pre.jti != w.jti {
		pre = s.lookupSignal(ctx, w.iss, w.jti)
	}
	// judge reads the lookup's answer once: the same token acted on
	// before (a duplicate), or an error (a replay, one in progress, the
	// bus down).
	judge := sync.OnceValues(func() (*signalOutcome, error) {
		<-pre.done
		if pre.err != nil || pre.prev == nil {
			return nil, pre.err
		}
		return s.judgeSeen(pre.prev, hash)
	})
	gate := func() error {
		seen, err := judge()
		if seen != nil {
			return errSignalSeen
		}
		return err
	}
	out, err := s.actOnSignal(ctx, w, gate)
	if errors.Is(err, errSignalSeen) {
		seen, _ := judge()
		return seen, nil
	}
	if err != nil {
		return nil, err
	}
	<-pre.done           // the gate let the events out: the lookup is over
	if pre.prev != nil { // an abandoned record of an earlier version, taken over
		_, err = s.signalKV.Update(ctx, key, val, pre.prev.Revision())
	} else {
		_, err = s.signalKV.Create(ctx, key, val)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), err != nil && pre.prev != nil:
		// Another replica acted on the same token at the same moment;
		// JetStream stored their events once.
		e, gerr := s.signalKV.Get(ctx, key)
		if gerr != nil {
			return nil, fmt.Errorf("read signal record: %w", gerr)
		}
		if seen, serr := s.judgeSeen(e, hash); seen != nil || serr != nil {
			return seen, serr
		}
	case err != nil:
		s.log.Warn("signal acted on; its record not written, so the same token received again would be acted on again",
			"iss", w.iss, "jti", w.jti, "err", err)
	}
	return out, nil
}

// signalLookup is the read of a signal's record in HERALD_SIGNALS, under
// way: prev (nil when there is none) and err are set once done is closed.
type signalLookup struct {
	iss, jti string
	done     chan struct{}
	prev     jetstream.KeyValueEntry
	err      error
}

// lookupSignal starts reading the record of the token with issuer iss
// and id jti, bounded by signalLookupWait.
func (s *Service) lookupSignal(ctx context.Context, iss, jti string) *signalLookup {
	l := &signalLookup{iss: iss, jti: jti, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		lctx, cancel := context.WithTimeout(ctx, signalLookupWait)
		defer cancel()
		e, err := s.signalKV.Get(lctx, bus.SignalKey(iss, jti))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			l.err = fmt.Errorf("read signal record: %w", err)
		default:
			l.prev = e
		}
	}()
	return l
}

// prefetchSignal starts reading the record of raw, a logout token or SET
// not checked yet, as its unverified claims name it, so that the read
// overlaps the token's checks: receiveSignal uses it if the checked token
// names the same iss and jti. Only for a configured issuer: whatever
// else raw claims starts nothing.
func (s *Service) prefetchSignal(ctx context.Context, raw string) *signalLookup {
	iss, jti, ok := peekSignal(raw)
	if !ok {
		return nil
	}
	if _, trusted := s.signalSource(iss); !trusted {
		return nil
	}
	return s.lookupSignal(ctx, iss, jti)
}

// peekSignal returns the iss and jti claims of a compact JWS, unverified.
func peekSignal(raw string) (iss, jti string, ok bool) {
	_, rest, ok1 := strings.Cut(raw, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || len(payload) > bus.MaxSignalToken {
		return "", "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", "", false
	}
	var c struct {
		Iss string `json:"iss"`
		JTI string `json:"jti"`
	}
	if json.Unmarshal(b, &c) != nil || c.Iss == "" || c.JTI == "" || len(c.JTI) > bus.MaxValueLen {
		return "", "", false
	}
	return c.Iss, c.JTI, true
}

// signalLookupWait bounds the read of a signal's record, well within the
// time after which the outbox publishes an entry on its own (outboxGrace).
const signalLookupWait = 5 * time.Second

// errSignalSeen stops acting on a signal received and acted on before.
var errSignalSeen = errors.New("signal acted on already")

// signalClaimTimeout is how old a record not done must be to be taken
// over: longer than any request acting on it could take, so that its
// replica has stopped. (Issuers of earlier versions claimed a signal
// before acting on it.)
const signalClaimTimeout = 5 * time.Minute

// judgeSeen answers a token whose iss and jti have record e: the same
// token acted on is a duplicate (an outcome), another token a replay,
// the same token claimed and not acted on is in progress, or, claimed
// signalClaimTimeout ago, abandoned: judgeSeen then returns nothing, for
// the caller to act.
func (s *Service) judgeSeen(e jetstream.KeyValueEntry, hash string) (*signalOutcome, error) {
	var prev signalRecord
	if err := json.Unmarshal(e.Value(), &prev); err != nil || prev.Hash != hash {
		return nil, errSignalReplayed
	}
	if prev.Done {
		return &signalOutcome{Duplicate: true}, nil
	}
	if s.now().Sub(e.Created()) < signalClaimTimeout {
		return nil, errSignalInProgress
	}
	s.log.Warn("signal claimed long ago and never acted on; acting on it now", "key", e.Key(), "claimed", e.Created())
	return nil, nil
}

// errSignalInProgress answers a token another request is acting on: its
// sender should retry.
var errSignalInProgress = errors.New("the same token is being processed; retry")

// actOnSignal makes the revocation w asks for, or records w, with its
// audit event in the same commit, published once gate succeeded.
func (s *Service) actOnSignal(ctx context.Context, w *signalWork, gate func() error) (*signalOutcome, error) {
	sg := &bus.Signal{Format: w.format, Issuer: w.iss, JTI: w.jti, Sender: w.sender, Events: w.events,
		Token: w.raw, Outcome: "recorded", Note: w.note}
	actor := "signal:" + w.iss
	if len(actor) > bus.MaxValueLen {
		actor = actor[:bus.MaxValueLen]
	}
	if w.revoke != nil {
		kind, err := bus.ParseKind(w.revoke.Kind)
		if err != nil {
			return nil, err
		}
		sg.Outcome, sg.Kind, sg.Value = "revoked", kind, w.revoke.Value
		res, err := s.revoke(ctx, *w.revoke, actor, w.sender, sg, gate)
		if err != nil {
			return nil, err
		}
		s.log.Info("signal received", "format", w.format, "iss", w.iss, "jti", w.jti, "kind", kind, "seq", res.Seq)
		return &signalOutcome{Signal: sg, Seq: res.Seq}, nil
	}
	now := s.now()
	e := &bus.Event{ID: bus.SignalEventID(w.iss, w.jti, "signal"), Type: bus.TypeSignalReceived, Time: now, Actor: actor, Signal: sg}
	if _, err := s.outbox.commit(ctx, func(c *change) error {
		c.waitFor(gate)
		c.emit(e)
		return nil
	}); err != nil {
		return nil, err
	}
	s.log.Info("signal received and recorded", "format", w.format, "iss", w.iss, "jti", w.jti, "note", w.note)
	return &signalOutcome{Signal: sg}, nil
}

// signalMaxAge bounds how old a signal may be, by how it arrives: a logout
// token is fresh; a SET, pushed or polled, may have waited at the
// transmitter while this issuer was away, and a transmitter that sets iat
// to the event's time (so that a retransmission is byte-identical, as
// Herald's own does) sends it again with that iat. The bound stays an hour
// below the replay records' life, so a SET is refused as too old before
// its record could expire and let it be acted on twice.
func signalMaxAge(format string) time.Duration {
	switch format {
	case bus.SignalPoll, bus.SignalPush:
		return bus.DefaultSignalsTTL - time.Hour
	}
	return signals.DefaultMaxAge
}
