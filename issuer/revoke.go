package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
)

// RevocationRequest is the body of POST /v1/revocations.
type RevocationRequest struct {
	Kind  string `json:"kind"`
	Value string `json:"value,omitempty"`
	// Values revokes many values of one kind at once (bulk); then Value is
	// empty. At most MaxBulkRequest per request; they are published in few
	// events of up to bus.MaxBulkValues each.
	Values []string `json:"values,omitempty"`
	Reason string   `json:"reason,omitempty"`
	// Issuer, if set, limits the revocation to the tokens of that issuer:
	// Herald's own (its issuer URL) or a trusted external one. Without
	// it the revocation matches the tokens of every issuer.
	Issuer string `json:"iss,omitempty"`
}

// MaxBulkRequest bounds the values of one bulk revocation request.
const MaxBulkRequest = 100000

// RevocationResult is the answer to POST /v1/revocations.
type RevocationResult struct {
	// ID is the event id of the (first) revocation event.
	ID string `json:"id"`
	// Seq is the HERALD stream sequence of the (last) revocation event:
	// once a verifier has applied it, the whole request is enforced.
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
	// Events and Count tell how a bulk request was published.
	Events int `json:"events,omitempty"`
	Count  int `json:"count,omitempty"`
	// Rotated is the key that signs from now on, when the revocation
	// rotated the signing key (kind all, or the current key).
	Rotated string `json:"rotated_to,omitempty"`
}

// revocationEvent returns the event of a revocation made now, limited to
// the tokens of issuer iss if it is not empty.
func (s *Service) revocationEvent(now time.Time, actor string, k bus.Kind, value, reason, iss string) *bus.Event {
	return &bus.Event{
		ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: actor,
		Revocation: &bus.Revocation{Kind: k, Value: value, Reason: reason, Issuer: iss,
			At: now, Until: now.Add(s.cfg.revocationLifetime())},
	}
}

// Revoke records a revocation and publishes it to the HERALD stream with
// its audit event, answering once JetStream has acknowledged them; from
// then on it survives any crash. The issuers' state follows: first, in
// HERALD_SESSIONS, which every replica reads before a refresh, a session
// revocation ends each session, and subject, client, tenant and all
// revocations record a cut-off that stops refreshes of the sessions they
// cover for as long as those sessions live; a client revocation refuses
// the client new tokens, and a key revocation first makes sure another,
// already published key signs, then removes the key from HERALD_KEYS.
//
// A revocation limited to an external issuer (RevocationRequest.Issuer)
// changes nothing of Herald's own: no key rotates, no session of Herald's
// ends; verifiers enforce it on that issuer's tokens.
func (s *Service) Revoke(ctx context.Context, req RevocationRequest, actor, source string) (*RevocationResult, error) {
	return s.revoke(ctx, req, actor, source, nil, nil)
}

// revoke is Revoke. signal, if not nil, is the signal received from
// outside that asked for the revocation: its audit event takes the place
// of admin.revoke, in the same commit, so that the one is never recorded
// without the other. gate, if not nil, must succeed before the
// revocation is published (change.waitFor).
func (s *Service) revoke(ctx context.Context, req RevocationRequest, actor, source string, signal *bus.Signal, gate func() error) (*RevocationResult, error) {
	kind, values, err := checkRevocation(req)
	if err != nil {
		return nil, err
	}
	if err := s.checkIssuer(req.Issuer); err != nil {
		return nil, err
	}
	if s.ownEventKeyRevoked() {
		return nil, errOwnEventKeyRevoked // every verifier would drop what it signs
	}
	own := s.ownTokens(req.Issuer)
	ctx, span := tracer().Start(ctx, "herald.issuer.Revoke", trace.WithAttributes(
		attribute.String("herald.kind", kind.String()), attribute.Int("herald.values", len(values))))
	defer span.End()
	if kind == bus.KindKey {
		if err := s.checkTokenKeys(values); err != nil {
			return nil, err
		}
	}
	res := &RevocationResult{}
	if own && (kind == bus.KindKey || kind == bus.KindAll) {
		s.keyMu.Lock()
		defer s.keyMu.Unlock()
		before := s.keys.Current().kid
		if kind == bus.KindAll {
			// The emergency button: nothing signed before now is trusted,
			// and no key this replica held signs or verifies again, the
			// pre-published next key included.
			if _, err := s.replaceAllKeys(ctx, actor, source); err != nil {
				return nil, err
			}
		}
		for _, kid := range values {
			if err := s.stopSigningWith(ctx, kid); err != nil {
				return nil, err
			}
		}
		if cur := s.keys.Current().kid; cur != before {
			res.Rotated = cur
		}
	}
	var external []string // permanent records of external keys revoked
	if kind == bus.KindKey {
		external = s.revokedExternalKeys(req.Issuer, values)
	}
	now := s.now()
	events := s.revocationEvents(now, actor, kind, values, req.Reason, req.Issuer)
	if signal != nil && len(events) == 1 {
		events[0].ID = bus.SignalEventID(signal.Issuer, signal.JTI, "revocation")
	}
	seqs, err := s.outbox.commit(ctx, func(c *change) error {
		c.keep()
		for _, v := range values {
			if !own {
				break
			}
			if err := s.applyRevocation(c, kind, v, now); err != nil {
				return err
			}
		}
		for _, e := range events {
			c.emit(e)
		}
		if gate != nil {
			c.waitFor(gate)
		}
		if own && cutsOff(kind) && kind != bus.KindSession {
			// A cut-off must be in HERALD_SESSIONS before the answer: a
			// session created after it is known to be by its place in the
			// bucket (Service.covers). It is written while the revocation
			// is published.
			c.alongside(func() error { return s.shareCutoffs(context.WithoutCancel(ctx), kind, values, now) })
		}
		if signal != nil {
			c.emitAfter(&bus.Event{ID: bus.SignalEventID(signal.Issuer, signal.JTI, "signal"), Type: bus.TypeSignalReceived,
				Time: now, Actor: actor, Signal: signal})
			return nil
		}
		audit := &bus.Admin{Action: "revoke", Source: source, Reason: req.Reason, Kind: kind, Issuer: req.Issuer}
		if len(req.Values) > 0 {
			audit.Count = len(values)
		} else {
			audit.Value = req.Value
		}
		c.emitAfter(&bus.Event{ID: bus.NewID(), Type: bus.TypeAdminRevoke, Time: now, Actor: actor, Admin: audit})
		return nil
	})
	if err != nil {
		return nil, err // if it was recorded, Run publishes it and shares its cut-offs
	}
	if own && kind == bus.KindSession {
		// Every replica refuses to refresh a revoked session from its
		// denylist, once caught up with HERALD (Service.barrier); marking
		// the sessions ended follows the answer, and Run retries it.
		s.outbox.follow(func(ctx context.Context) {
			if err := s.shareCutoffs(ctx, kind, values, now); err != nil && ctx.Err() == nil {
				s.log.Warn("revoked sessions not marked ended in HERALD_SESSIONS yet; retrying", "err", err)
			}
		})
	}
	res.ID, res.Seq, res.At = events[0].ID, seqs[len(events)-1], now
	s.metrics.revoked(ctx, kind, len(values))
	span.SetAttributes(attribute.Int64("herald.seq", int64(res.Seq)))
	if len(req.Values) > 0 {
		res.Events, res.Count = len(events), len(values)
	}
	s.log.Info("revoked", "kind", kind, "values", len(values), "events", len(events), "seq", res.Seq, "actor", actor, "iss", req.Issuer)
	if own && kind == bus.KindKey {
		for _, kid := range values {
			s.recordRevokedKey(ctx, kid, now, req.Reason)
			s.removeKey(ctx, kid)
		}
	}
	for _, name := range external {
		s.recordRevokedKey(ctx, name, now, req.Reason)
	}
	if own && kind == bus.KindAll {
		if err := s.allHandled(now); err != nil {
			s.log.Error("revoke all not recorded as handled", "err", err)
		}
	}
	if comparesIssuedAt(kind) {
		s.waitMillisecond(now)
	}
	return res, nil
}

// sharedWrites bounds the writes to HERALD_SESSIONS one revocation has in
// flight.
const sharedWrites = 16

// shareCutoffs records in HERALD_SESSIONS what stops the sessions a
// revocation of kind k covers from being refreshed, on every replica: each
// revoked session is marked ended, and each distinct subject, client,
// tenant or all value gets a cut-off entry made at. It returns once the
// server has acknowledged every write, and then forgets the revocation's
// pending share/ entries; until then Run retries them (flushShares).
func (s *Service) shareCutoffs(ctx context.Context, k bus.Kind, values []string, at time.Time) error {
	if !cutsOff(k) {
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(sharedWrites)
	done := make(map[string][]byte, len(values))
	for _, v := range values {
		key := shareKey(k, v)
		if _, seen := done[key]; seen {
			continue
		}
		b, err := json.Marshal(&cutoff{At: at})
		if err != nil {
			return fmt.Errorf("encode %s: %w", key, err)
		}
		done[key] = b
		g.Go(func() error { return s.shareCutoff(gctx, k, v, at) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("record what the revocation stops in %s: %w", bus.BucketSessions, err)
	}
	return s.forgetShares(done)
}

// cutsOff reports whether a revocation of kind k stops sessions from
// being refreshed.
func cutsOff(k bus.Kind) bool {
	switch k {
	case bus.KindSession, bus.KindSubject, bus.KindClient, bus.KindTenant, bus.KindAll:
		return true
	}
	return false
}

// shareCutoff records one value of a revocation of kind k made at in
// HERALD_SESSIONS.
func (s *Service) shareCutoff(ctx context.Context, k bus.Kind, v string, at time.Time) error {
	if k == bus.KindSession {
		return s.markEnded(ctx, v, "revoked")
	}
	return s.sessions.putCutoff(ctx, k, v, at, s.now())
}

// forgetShares deletes the pending share/ entries of done, each only if it
// still holds what was shared: a later revocation of the same value may
// have replaced it and not be shared yet.
//
// The delete is not synced: a share a crash brings back is shared again,
// which changes nothing (putCutoff keeps the entry it finds).
func (s *Service) forgetShares(done map[string][]byte) error {
	err := s.state.UpdateNoSync(func(tx *store.Tx) error {
		for key, shared := range done {
			cur, ok, err := tx.Get(key)
			if err != nil {
				return err
			}
			if ok && bytes.Equal(cur, shared) {
				tx.Delete(key)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget shared cut-offs: %w", err)
	}
	return nil
}

// keySharedSince marks a state whose cut-offs are all in share/ or shared.
const keySharedSince = "meta/cutoffs-shared"

// shareOldCutoffs queues for HERALD_SESSIONS, once, the cut-offs an issuer
// recorded only in its own state before cut-offs were shared, so that
// revocations made before an upgrade stop refreshes on every replica too.
func shareOldCutoffs(state *store.DB) error {
	if _, ok, err := state.Get(keySharedSince); err != nil || ok {
		return err
	}
	err := state.Update(func(tx *store.Tx) error {
		err := state.Scan(keyCutoff, func(key string, val []byte) error {
			tx.Set(keyShare+strings.TrimPrefix(key, keyCutoff), slices.Clone(val))
			return nil
		})
		if err != nil {
			return err
		}
		tx.Set(keySharedSince, []byte("1"))
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue old cut-offs for %s: %w", bus.BucketSessions, err)
	}
	return nil
}

// flushEvery is how often Run retries the cut-offs not yet recorded in
// HERALD_SESSIONS.
const flushEvery = 2 * time.Second

// flushShares records in HERALD_SESSIONS, every flushEvery until ctx ends,
// the cut-offs of revocations that were committed but not shared (the bus
// was down when they were made, or the issuer stopped in between).
func (s *Service) flushShares(ctx context.Context) error {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	failed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := s.flushSharesOnce(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failed:
			s.log.Warn("recording cut-offs in HERALD_SESSIONS failed; retrying", "pending", n, "err", err)
			failed = true
		case err == nil && n > 0:
			s.log.Info("cut-offs recorded in HERALD_SESSIONS", "count", n)
			failed = false
		case err == nil:
			failed = false
		}
	}
}

// maxFlush bounds the pending cut-offs one pass of flushShares records.
const maxFlush = 10000

// errFlushFull stops the scan of one flushShares pass.
var errFlushFull = errors.New("enough pending cut-offs for one pass")

// flushSharesOnce records up to maxFlush pending cut-offs and forgets
// those the server acknowledged. It returns how many it found.
func (s *Service) flushSharesOnce(ctx context.Context) (int, error) {
	type pending struct {
		key string
		k   bus.Kind
		v   string
		at  time.Time
		val []byte
	}
	var todo []pending
	err := s.state.Scan(keyShare, func(key string, val []byte) error {
		ks, v, ok := strings.Cut(strings.TrimPrefix(key, keyShare), "/")
		k, err := bus.ParseKind(ks)
		var c cutoff
		if !ok || err != nil || !cutsOff(k) || json.Unmarshal(val, &c) != nil {
			s.log.Error("malformed pending cut-off skipped", "key", key)
			return nil
		}
		todo = append(todo, pending{key: key, k: k, v: v, at: c.At, val: slices.Clone(val)})
		if len(todo) >= maxFlush {
			return errFlushFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFlushFull) {
		return 0, fmt.Errorf("read pending cut-offs: %w", err)
	}
	if len(todo) == 0 {
		return 0, nil
	}
	var mu sync.Mutex
	done := make(map[string][]byte, len(todo))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(sharedWrites)
	for _, p := range todo {
		g.Go(func() error {
			if err := s.shareCutoff(gctx, p.k, p.v, p.at); err != nil {
				return err
			}
			mu.Lock()
			done[p.key] = p.val
			mu.Unlock()
			return nil
		})
	}
	werr := g.Wait()
	if err := s.forgetShares(done); err != nil {
		return len(todo), err
	}
	return len(todo), werr
}

// checkRevocation validates a revocation request and returns its kind and
// values (one empty value for kind all).
func checkRevocation(req RevocationRequest) (bus.Kind, []string, error) {
	kind, err := bus.ParseKind(req.Kind)
	if err != nil {
		return 0, nil, badRequest(fmt.Sprintf("unknown kind %q: want token, session, subject, client, tenant, key or all", req.Kind))
	}
	values := req.Values
	switch {
	case len(values) > 0 && req.Value != "":
		return 0, nil, badRequest("give value or values, not both")
	case len(values) > 0 && !kind.NeedsValue():
		return 0, nil, badRequest(fmt.Sprintf("kind %s takes no values", kind))
	case len(values) > MaxBulkRequest:
		return 0, nil, badRequest(fmt.Sprintf("at most %d values per request", MaxBulkRequest))
	case len(values) == 0 && kind.NeedsValue() && req.Value == "":
		return 0, nil, badRequest(fmt.Sprintf("kind %s needs a value", kind))
	case !kind.NeedsValue() && req.Value != "":
		return 0, nil, badRequest(fmt.Sprintf("kind %s takes no value", kind))
	case len(values) == 0:
		values = []string{req.Value}
	}
	for _, v := range values {
		if v == "" && kind.NeedsValue() {
			return 0, nil, badRequest("values must not be empty")
		}
		if err := checkIdent("value", v, false); err != nil {
			return 0, nil, err
		}
	}
	if err := checkText("reason", req.Reason, 1024); err != nil {
		return 0, nil, err
	}
	return kind, values, nil
}

// bulkBytes bounds the values carried by one event, leaving room for the
// rest of it below bus.MaxEventSize.
const bulkBytes = bus.MaxEventSize - 16<<10

// revocationEvents returns the events of a revocation of values: one for
// a single value, else as few bulk events as the size bounds allow.
func (s *Service) revocationEvents(now time.Time, actor string, k bus.Kind, values []string, reason, iss string) []*bus.Event {
	if len(values) == 1 {
		return []*bus.Event{s.revocationEvent(now, actor, k, values[0], reason, iss)}
	}
	var out []*bus.Event
	for len(values) > 0 {
		n, size := 0, 0
		for n < len(values) && n < bus.MaxBulkValues {
			b, _ := json.Marshal(values[n]) // a string always encodes
			if size+len(b)+1 > bulkBytes {
				break
			}
			size += len(b) + 1
			n++
		}
		e := s.revocationEvent(now, actor, k, "", reason, iss)
		e.Revocation.Values = values[:n]
		out = append(out, e)
		values = values[n:]
	}
	return out
}

// applyRevocation changes the issuer's state as a revocation of kind k
// requires, in the revocation's own commit.
func (s *Service) applyRevocation(c *change, k bus.Kind, value string, now time.Time) error {
	switch k {
	case bus.KindSession, bus.KindSubject, bus.KindClient, bus.KindTenant, bus.KindAll:
		if k == bus.KindClient {
			var cl clientRecord
			if ok, err := c.get(clientKey(value), &cl); err != nil {
				return err
			} else if ok {
				cl.Revoked = true
				if err := c.put(clientKey(value), &cl); err != nil {
					return err
				}
			}
		}
		if err := c.put(shareKey(k, value), &cutoff{At: now}); err != nil {
			return err
		}
		return c.put(cutoffKey(k, value), &cutoff{At: now})
	}
	return nil
}

// comparesIssuedAt reports whether a revocation of kind k covers tokens by
// their iat (issued at or before it) rather than every token it names.
func comparesIssuedAt(k bus.Kind) bool {
	switch k {
	case bus.KindSubject, bus.KindClient, bus.KindTenant, bus.KindAll:
		return true
	}
	return false
}

// waitMillisecond returns once the issuer's clock has left the
// millisecond of t. iat has milliseconds: once a revocation call returns,
// no token is issued in the revocation's millisecond, so none issued
// afterwards is refused by it. The wait and the check that it is over both
// use the issuer's clock (Config.Now): it waits on a timer for what that
// clock says remains (at least a microsecond, its resolution here) and
// reads it again, until it has left the millisecond or stood still over a
// wait, as a clock a test holds still and moves by hand does.
func (s *Service) waitMillisecond(t time.Time) {
	next := t.Truncate(time.Millisecond).Add(time.Millisecond)
	for before := s.now(); before.Before(next); {
		timer := time.NewTimer(max(next.Sub(before), time.Microsecond))
		<-timer.C
		after := s.now()
		if !after.After(before) {
			return
		}
		before = after
	}
}

// BlastRadius is what a revocation would cut off, for --dry-run.
type BlastRadius struct {
	DryRun bool   `json:"dry_run"`
	Kind   string `json:"kind"`
	Values int    `json:"values"`
	// Issuer is the issuer the revocation would be limited to, if any.
	Issuer string `json:"iss,omitempty"`
	// Sessions, Subjects and Clients count the live sessions the
	// revocation would end and their distinct subjects and clients.
	Sessions int `json:"sessions"`
	Subjects int `json:"subjects"`
	Clients  int `json:"clients"`
	// Note qualifies the counts where the issuer cannot know them exactly.
	Note string `json:"note,omitempty"`
}

// DryRun reports the blast radius of a revocation without doing it. It
// reads every session in HERALD_SESSIONS.
func (s *Service) DryRun(ctx context.Context, req RevocationRequest) (*BlastRadius, error) {
	kind, values, err := checkRevocation(req)
	if err != nil {
		return nil, err
	}
	if err := s.checkIssuer(req.Issuer); err != nil {
		return nil, err
	}
	if kind == bus.KindKey {
		if err := s.checkTokenKeys(values); err != nil {
			return nil, err
		}
	}
	if !s.ownTokens(req.Issuer) {
		return &BlastRadius{DryRun: true, Kind: kind.String(), Values: len(values), Issuer: req.Issuer,
			Note: "tokens of an external issuer: Herald holds none of its sessions, so it cannot count them; verifiers refuse every matching token of " + req.Issuer}, nil
	}
	set := make(map[string]bool, len(values))
	for _, v := range values {
		set[v] = true
	}
	br := &BlastRadius{DryRun: true, Kind: kind.String(), Values: len(values), Issuer: req.Issuer}
	current := s.keys.Current().kid
	switch kind {
	case bus.KindToken:
		br.Note = "tokens are not tracked one by one; each revoked jti cuts off at most that one token"
	case bus.KindKey:
		if !set[current] {
			br.Note = "not the current signing key: only tokens it signed before it retired are cut off"
			return br, nil
		}
		br.Note = "the current signing key: sessions are counted as if every live one holds a token it signed"
	}
	subjects, clients := map[string]bool{}, map[string]bool{}
	now := s.now()
	err = s.sessions.each(ctx, func(sess *sessionRecord) error {
		if !sess.live(now, s.cfg.SessionIdle) {
			return nil
		}
		var hit bool
		switch kind {
		case bus.KindSession:
			hit = set[sess.ID]
		case bus.KindSubject:
			hit = set[sess.Subject]
		case bus.KindClient:
			hit = set[sess.ClientID]
		case bus.KindTenant:
			hit = set[sess.Tenant]
		case bus.KindKey, bus.KindAll:
			hit = true
		}
		if hit {
			br.Sessions++
			subjects[sess.Subject], clients[sess.ClientID] = true, true
		}
		return nil
	})
	br.Subjects, br.Clients = len(subjects), len(clients)
	return br, err
}

// checkIssuer refuses a revocation limited to an issuer whose tokens no
// verifier accepts: neither Herald's own issuer nor a trusted one.
func (s *Service) checkIssuer(iss string) error {
	if iss == "" || iss == s.cfg.IssuerURL {
		return nil
	}
	if err := bus.CheckIssuer(iss); err != nil {
		return badRequest(err.Error())
	}
	if !s.cfg.trustsTokensOf(iss) {
		return badRequest(fmt.Sprintf("issuer %q is neither this issuer nor a trusted one (--trust-issuer)", iss))
	}
	return nil
}

// ownTokens reports whether a revocation limited to iss (none when
// empty) covers Herald's own tokens, so that Herald's own state (keys,
// sessions, cut-offs) follows it.
func (s *Service) ownTokens(iss string) bool { return iss == "" || iss == s.cfg.IssuerURL }
