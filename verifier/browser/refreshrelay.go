package browser

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/verifier"
)

// Refreshes of browser sessions are shared by the sidecar replicas of one
// deployment through the HERALD_BFF bucket. Two replicas refreshing one
// session at once would both present its refresh token to the issuer, which
// takes the second for theft and ends the session. So a replica first
// claims the refresh with a Create under a keyed hash of the refresh token,
// which exactly one replica wins. The winner refreshes at the issuer and
// writes the session's next state over its claim, sealed with the cookie
// key and bound to the claim and to the session's handle and generation.
// The others never call the issuer: while their access token is valid they
// serve with it; once it has expired they watch the claim for the result,
// for at most Config.RefreshWait.

// Bounds of the relay's calls to the bus.
const (
	// relayOpTimeout bounds one claim, read or write: past it a replica
	// refreshes on its own, as without the bucket.
	relayOpTimeout = 2 * time.Second
	// relayRetryOpen is how long a replica that could not open the bucket
	// refreshes on its own before it tries again.
	relayRetryOpen = 10 * time.Second
)

// claimMarker is the value of a claim not yet settled.
const claimMarker = "claimed"

// Outcomes of a refresh another replica claimed.
var (
	// errRefreshElsewhere: another replica is refreshing the session; the
	// current access token serves meanwhile. Not a refusal.
	errRefreshElsewhere = errors.New("another replica is refreshing the session")
	// errRefreshLost: the replica that claimed the refresh wrote no result
	// in time (it crashed, or the issuer is slow): the session's refresh
	// token may be used up, so the browser logs in again.
	errRefreshLost = fmt.Errorf("%w: another replica's refresh of the session did not finish in time", verifier.ErrExpired)
	// errRefreshWithdrawn: the replica that claimed the refresh could not
	// reach the issuer and withdrew its claim; a later request claims again.
	errRefreshWithdrawn = errors.New("another replica's refresh of the session failed")
	// errNoRelay: the bucket cannot be used now; refresh alone.
	errNoRelay = errors.New("refresh relay unavailable")
	// errRelayFull: the bucket refused the claim for lack of room (its
	// limits, or the store's). Whoever fills it must not make replicas
	// refresh on their own, which ends sessions when two do at once: the
	// refresh fails closed, and a later request tries again.
	errRelayFull = errors.New("refresh relay full: the session's refresh is postponed")
)

// JetStream API errors of a write refused for lack of room.
const (
	jsErrStoreFailed           jetstream.ErrorCode = 10077 // "maximum bytes/messages exceeded"
	jsErrInsufficientResources jetstream.ErrorCode = 10023
	jsErrStorageExceeded       jetstream.ErrorCode = 10047
)

// refreshRelay claims refreshes in HERALD_BFF and hands their results
// between replicas. A nil *refreshRelay has no bucket: every refresh is the
// replica's own. It is safe for concurrent use.
type refreshRelay struct {
	conn     *bus.Conn
	seal     *sealer
	patience time.Duration // how long a request waits for another replica's result
	now      func() time.Time
	log      *slog.Logger

	mu    sync.Mutex
	kv    jetstream.KeyValue // nil until opened
	retry time.Time          // when to try opening it again
}

// relayResult is what the replica that won a claim writes over it, sealed.
type relayResult struct {
	// Next is the session's state after the refresh.
	Next *cookieState `json:"next,omitempty"`
	// Ended reports that the issuer refused the refresh for good.
	Ended bool `json:"ended,omitempty"`
	// At is when the refresh was made, by the session clock of the replica
	// that made it: a cookie from before it is served only shortly after
	// (refreshGrace). A result without it (an older replica's) counts from
	// when the bucket stored it.
	At time.Time `json:"at,omitzero"`
}

// refreshClaim is a claim this replica won: its revision, over which the
// result is written.
type refreshClaim struct {
	kv  jetstream.KeyValue
	key string
	rev uint64
}

// bucket returns HERALD_BFF, opened at first use; nil when it cannot be
// used now (the bus is down, or no issuer has created it yet).
func (r *refreshRelay) bucket(ctx context.Context) jetstream.KeyValue {
	if r == nil || !r.conn.Connected() {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kv != nil || r.now().Before(r.retry) {
		return r.kv
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), relayOpTimeout)
	defer cancel()
	kv, err := r.conn.RefreshRelay(ctx)
	if err != nil {
		r.retry = r.now().Add(relayRetryOpen)
		r.log.Warn("cookie session refreshes are not shared with the other replicas for now", "err", err)
		return nil
	}
	r.kv = kv
	return kv
}

// claim tries to win the refresh of st. It returns the claim when this
// replica won it. When another replica holds it, it returns that replica's
// result if already written, else neither. It fails with errNoRelay when
// the bucket cannot be used: the caller refreshes on its own; and with
// errRelayFull when the bucket has no room: the caller does not refresh.
func (r *refreshRelay) claim(ctx context.Context, st *cookieState) (*refreshClaim, *relayResult, error) {
	kv := r.bucket(ctx)
	if kv == nil {
		return nil, nil, errNoRelay
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), relayOpTimeout)
	defer cancel()
	key := r.seal.claimKey(st.Refresh)
	rev, err := kv.Create(ctx, key, []byte(claimMarker))
	if err == nil {
		return &refreshClaim{kv: kv, key: key, rev: rev}, nil, nil
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrStoreFailed ||
		apiErr.ErrorCode == jsErrInsufficientResources || apiErr.ErrorCode == jsErrStorageExceeded):
		return nil, nil, fmt.Errorf("%w: claim: %w", errRelayFull, err)
	case !claimTaken(err):
		return nil, nil, fmt.Errorf("%w: claim: %w", errNoRelay, err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil, nil, nil // withdrawn or gone since: as if pending
	}
	return nil, r.result(st, key, e), nil
}

// claimTaken reports whether a Create failed because the key exists: the
// error differs when the key was deleted and two replicas raced to reuse it.
func claimTaken(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// wait watches the claim on st's refresh until its result is written. It
// fails with errRefreshWithdrawn when the claim is withdrawn or gone, and
// with errRefreshLost when no result came within r.patience.
func (r *refreshRelay) wait(ctx context.Context, st *cookieState) (*relayResult, error) {
	kv := r.bucket(ctx)
	if kv == nil {
		return nil, errNoRelay
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.patience)
	defer cancel()
	key := r.seal.claimKey(st.Refresh)
	w, err := kv.Watch(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("watch the refresh claim: %w", err)
	}
	defer w.Stop()
	seen := false
	for {
		select {
		case <-ctx.Done():
			return nil, errRefreshLost
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil, errRefreshLost
			case e == nil: // the current value, if any, was delivered
				if !seen {
					return nil, errRefreshWithdrawn
				}
				continue
			case e.Operation() != jetstream.KeyValuePut:
				return nil, errRefreshWithdrawn
			}
			seen = true
			if res := r.result(st, key, e); res != nil {
				return res, nil
			}
		}
	}
}

// settle writes the outcome of the refresh of st over the claim cl: its
// next state and when it was made, or that the issuer ended the session. When the issuer could
// not be reached it withdraws the claim, so that a later request (on any
// replica) tries again, as a single replica would. The request's
// cancellation does not stop it: the others wait for it.
func (r *refreshRelay) settle(ctx context.Context, cl *refreshClaim, st, next *cookieState, at time.Time, rerr error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), relayOpTimeout)
	defer cancel()
	var res relayResult
	switch {
	case next != nil:
		res.Next, res.At = next, at
	case errors.Is(rerr, errSessionEnded):
		res.Ended = true
	default:
		if err := cl.kv.Delete(ctx, cl.key, jetstream.LastRevision(cl.rev)); err != nil {
			r.log.Warn("could not withdraw a session refresh claim; the other replicas fail it closed", "sid", st.Session, "err", err)
		}
		return
	}
	v, err := r.seal.sealData(&res, relayAD(cl.key, st))
	if err == nil && len(v) > bus.MaxRefreshRelayEntry {
		err = fmt.Errorf("sealed result of %d bytes, more than %d", len(v), bus.MaxRefreshRelayEntry)
	}
	if err == nil {
		_, err = cl.kv.Update(ctx, cl.key, []byte(v), cl.rev)
	}
	if err != nil {
		r.log.Warn("could not hand a session refresh to the other replicas; they fail it closed", "sid", st.Session, "err", err)
	}
}

// result opens the result of the refresh of st in e. It returns nil when e
// holds none: a claim not yet settled, or a value this deployment did not
// seal for this very refresh (another deployment's, or one moved from
// another key or session), which is ignored.
func (r *refreshRelay) result(st *cookieState, key string, e jetstream.KeyValueEntry) *relayResult {
	v := e.Value()
	if e.Operation() != jetstream.KeyValuePut || string(v) == claimMarker {
		return nil
	}
	var res relayResult
	if len(v) > bus.MaxRefreshRelayEntry || !r.seal.openData(string(v), relayAD(key, st), &res) {
		r.log.Warn("ignored a session refresh result that does not open with this deployment's cookie key", "sid", st.Session)
		return nil
	}
	if res.Ended {
		return &relayResult{Ended: true}
	}
	n := res.Next
	if n == nil || n.Handle != st.Handle || n.Gen != st.Gen+1 || n.Session != st.Session || n.Created != st.Created ||
		n.Access == "" || n.Refresh == "" {
		return nil
	}
	if res.At.IsZero() {
		res.At = e.Created()
	}
	return &res
}

// relayAD is what a result is bound to: the claim's key (so the refresh
// token it replaces) and the handle and generation of the session state
// the refresh started from, so that it opens for that refresh only.
func relayAD(key string, st *cookieState) []byte {
	return []byte("herald refresh result v1\x00" + key + "\x00" + st.Handle + "\x00" + strconv.FormatUint(st.Gen, 10))
}
