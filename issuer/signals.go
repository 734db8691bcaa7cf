package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
}

// receiveSignal claims w's iss and jti in HERALD_SIGNALS, acts on it, and
// records it. Of two replicas receiving the same token exactly one acts:
// the claim is a create, and what the signal causes is published only
// once the claim succeeded. The claim is made while the issuer writes its
// own state for the signal (change.waitFor), so that it overlaps that
// synced write rather than preceding it. If acting fails after the claim,
// the claim is dropped, so that the sender's retry is acted on.
func (s *Service) receiveSignal(ctx context.Context, w *signalWork) (*signalOutcome, error) {
	key := bus.SignalKey(w.iss, w.jti)
	sum := sha256.Sum256([]byte(w.raw))
	rec := signalRecord{Hash: hex.EncodeToString(sum[:])}
	val, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	type claim struct {
		rev  uint64
		seen *signalOutcome // the same token, acted on before
		err  error
	}
	claimed := make(chan claim, 1)
	go func() {
		cctx, cancel := context.WithTimeout(ctx, signalClaimWait)
		defer cancel()
		rev, err := s.signalKV.Create(cctx, key, val)
		switch {
		case errors.Is(err, jetstream.ErrKeyExists):
			seen, rev, err := s.seenSignal(cctx, key, rec.Hash, val)
			claimed <- claim{rev: rev, seen: seen, err: err}
		case err != nil:
			claimed <- claim{err: fmt.Errorf("claim signal %s: %w", w.jti, err)}
		default:
			claimed <- claim{rev: rev}
		}
	}()
	var got *claim
	wait := func() claim {
		if got == nil {
			c := <-claimed
			got = &c
		}
		return *got
	}
	gate := func() error {
		switch c := wait(); {
		case c.seen != nil:
			return errSignalSeen
		case c.err != nil:
			return c.err
		}
		return nil
	}
	out, err := s.actOnSignal(ctx, w, gate)
	c := wait()
	switch {
	case errors.Is(err, errSignalSeen):
		return c.seen, nil
	case err != nil && c.err == nil:
		if derr := s.signalKV.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(c.rev)); derr != nil {
			s.log.Error("claim of a failed signal not released; the sender's retry will be refused as in progress until it expires",
				"iss", w.iss, "jti", w.jti, "err", derr)
		}
		return nil, err
	case err != nil:
		return nil, err
	}
	rec.Done = true
	if val, err = json.Marshal(rec); err == nil {
		if _, err = s.signalKV.Update(ctx, key, val, c.rev); err != nil {
			// The revocation is durable; only a retry of the same token
			// would be answered as in progress rather than done.
			s.log.Warn("signal acted on, record not marked done", "iss", w.iss, "jti", w.jti, "err", err)
		}
	}
	return out, nil
}

// signalClaimWait bounds the claim of a signal, well within the time
// after which the outbox publishes an entry on its own (outboxGrace).
const signalClaimWait = 5 * time.Second

// errSignalSeen stops acting on a signal received and acted on before.
var errSignalSeen = errors.New("signal acted on already")

// signalClaimTimeout is how old a claim not done must be to be taken
// over: longer than any request acting on it could take, so that its
// replica has stopped (a crash between claiming and acting).
const signalClaimTimeout = 5 * time.Minute

// seenSignal answers a token whose iss and jti are claimed already: the
// same token acted on is a duplicate, the same token being acted on is
// in progress, another token is a replay. The same token claimed
// signalClaimTimeout ago and not done was abandoned: seenSignal claims it
// again with val and returns the claim's revision, for the caller to act.
func (s *Service) seenSignal(ctx context.Context, key, hash string, val []byte) (*signalOutcome, uint64, error) {
	e, err := s.signalKV.Get(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("read signal record: %w", err)
	}
	var prev signalRecord
	if err := json.Unmarshal(e.Value(), &prev); err != nil || prev.Hash != hash {
		return nil, 0, errSignalReplayed
	}
	if prev.Done {
		return &signalOutcome{Duplicate: true}, 0, nil
	}
	if s.now().Sub(e.Created()) < signalClaimTimeout {
		return nil, 0, errSignalInProgress
	}
	rev, err := s.signalKV.Update(ctx, key, val, e.Revision())
	if err != nil {
		return nil, 0, errSignalInProgress // another replica took it over first
	}
	s.log.Warn("signal claimed long ago and never acted on; acting on it now", "key", key, "claimed", e.Created())
	return nil, rev, nil
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
	e := &bus.Event{ID: bus.NewID(), Type: bus.TypeSignalReceived, Time: now, Actor: actor, Signal: sg}
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
// token or pushed SET is fresh; a polled one may have waited at the
// transmitter while this issuer was down, up to the replay records' life.
func signalMaxAge(format string) time.Duration {
	switch format {
	case bus.SignalPoll:
		return bus.DefaultSignalsTTL - time.Hour
	case bus.SignalPush:
		return time.Hour
	}
	return signals.DefaultMaxAge
}
