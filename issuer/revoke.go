package issuer

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldsec/herald/bus"
)

// RevocationRequest is the body of POST /v1/revocations.
type RevocationRequest struct {
	Kind   string `json:"kind"`
	Value  string `json:"value,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// RevocationResult is the answer to POST /v1/revocations.
type RevocationResult struct {
	ID  string    `json:"id"`
	Seq uint64    `json:"seq"`
	At  time.Time `json:"at"`
}

// revocationEvent returns the event of a revocation made now.
func (s *Service) revocationEvent(now time.Time, actor string, k bus.Kind, value, reason string) *bus.Event {
	return &bus.Event{
		ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: actor,
		Revocation: &bus.Revocation{Kind: k, Value: value, Reason: reason,
			At: now, Until: now.Add(s.cfg.revocationLifetime())},
	}
}

// Revoke records a revocation and publishes it to the HERALD stream with
// its audit event, answering once JetStream has acknowledged them; from
// then on it survives any crash. The issuer's own state follows: a session
// revocation ends the session, subject, client, tenant and all revocations
// stop refreshes of the sessions they cover, a client revocation refuses
// the client new tokens, and a key revocation first makes sure another,
// already published key signs, then removes the key from HERALD_KEYS.
func (s *Service) Revoke(ctx context.Context, req RevocationRequest, actor, source string) (*RevocationResult, error) {
	kind, err := bus.ParseKind(req.Kind)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("unknown kind %q: want token, session, subject, client, tenant, key or all", req.Kind))
	}
	switch {
	case kind.NeedsValue() && req.Value == "":
		return nil, badRequest(fmt.Sprintf("kind %s needs a value", kind))
	case !kind.NeedsValue() && req.Value != "":
		return nil, badRequest(fmt.Sprintf("kind %s takes no value", kind))
	}
	if err := checkIdent("value", req.Value, false); err != nil {
		return nil, err
	}
	if err := checkText("reason", req.Reason, 1024); err != nil {
		return nil, err
	}
	if kind == bus.KindKey {
		s.keyMu.Lock()
		defer s.keyMu.Unlock()
		if err := s.stopSigningWith(ctx, req.Value); err != nil {
			return nil, err
		}
	}
	if kind == bus.KindSession {
		defer s.sessions.lock(req.Value)()
	}
	now := s.now()
	rev := s.revocationEvent(now, actor, kind, req.Value, req.Reason)
	seqs, err := s.outbox.commit(ctx, func(c *change) error {
		c.keep()
		if err := s.applyRevocation(c, kind, req.Value, now); err != nil {
			return err
		}
		c.emit(rev)
		c.emit(&bus.Event{
			ID: bus.NewID(), Type: bus.TypeAdminRevoke, Time: now, Actor: actor,
			Admin: &bus.Admin{Action: "revoke", Source: source, Reason: req.Reason, Kind: kind, Value: req.Value},
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("revoked", "kind", kind, "seq", seqs[0], "actor", actor, "id", rev.ID)
	if kind == bus.KindKey {
		s.removeKey(ctx, req.Value)
	}
	s.waitMillisecond(now)
	return &RevocationResult{ID: rev.ID, Seq: seqs[0], At: now}, nil
}

// applyRevocation changes the issuer's state as a revocation of kind k
// requires, in the revocation's own commit.
func (s *Service) applyRevocation(c *change, k bus.Kind, value string, now time.Time) error {
	switch k {
	case bus.KindSession:
		var sess sessionRecord
		if ok, err := c.get(sessionKey(value), &sess); err != nil || !ok {
			return err
		}
		sess.Ended, sess.EndedWhy = true, "revoked"
		return c.put(sessionKey(value), &sess)
	case bus.KindSubject, bus.KindClient, bus.KindTenant, bus.KindAll:
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
		return c.put(cutoffKey(k, value), &cutoff{At: now})
	}
	return nil
}

// waitMillisecond returns once the millisecond of t has passed. iat has
// milliseconds: once a revocation call returns, no token is issued in the
// revocation's millisecond, so none issued afterwards is refused by it.
func (s *Service) waitMillisecond(t time.Time) {
	if wait := t.Truncate(time.Millisecond).Add(time.Millisecond).Sub(s.now()); wait > 0 {
		time.Sleep(wait)
	}
}
