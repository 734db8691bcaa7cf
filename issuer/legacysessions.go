package issuer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// moveLegacySessions moves the sessions that versions before
// HERALD_SESSIONS kept in this replica's Pebble store to the bucket, once,
// at start: every live one with its current refresh token's hash and the
// hashes of its used ones (reuse detection), then the moved records are
// deleted. Their refresh tokens do not name their session; the rt/ index
// that maps them to it stays, so they keep working, on this replica, until
// their first refresh, which hands out a token of the new form that every
// replica accepts. Index entries of sessions past their lifetime go.
func (s *Service) moveLegacySessions(ctx context.Context) error {
	var legacy []*sessionRecord
	err := s.state.Scan(keySession, func(key string, b []byte) error {
		var sess sessionRecord
		if err := decodeJSON(b, &sess); err != nil {
			return fmt.Errorf("legacy session %s: %w", key, err)
		}
		legacy = append(legacy, &sess)
		return nil
	})
	if err != nil {
		return fmt.Errorf("move legacy sessions: %w", err)
	}
	now := s.now()
	used := map[string][]string{}
	var stale []string // rt/ entries of sessions that are over
	err = s.state.Scan(keyRefresh, func(key string, b []byte) error {
		var rt refreshRecord
		if decodeJSON(b, &rt) != nil || !now.Before(rt.Expires) {
			stale = append(stale, key)
			return nil
		}
		if rt.Used {
			used[rt.SessionID] = append(used[rt.SessionID], strings.TrimPrefix(key, keyRefresh))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move legacy sessions: %w", err)
	}
	moved := 0
	for _, sess := range legacy {
		if !sess.live(now, s.cfg.SessionIdle) {
			continue
		}
		sess.Used = used[sess.ID]
		if n := len(sess.Used) - maxUsedRefresh; n > 0 {
			sess.Used = sess.Used[n:] // their order is lost; any maxUsedRefresh of them
		}
		if _, sess.Registered, err = s.client(sess.ClientID); err != nil {
			return fmt.Errorf("move legacy sessions: %w", err)
		}
		err := s.sessions.create(ctx, sess)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // moved by a start that stopped before deleting it here
		}
		if err != nil {
			return fmt.Errorf("move legacy sessions: %w", err)
		}
		moved++
	}
	if len(legacy) == 0 && len(stale) == 0 {
		return nil
	}
	err = s.state.Update(func(tx *store.Tx) error {
		for _, sess := range legacy {
			tx.Delete(sessionKey(sess.ID))
			tx.Delete(subjectKey(sess.Subject, sess.ID))
		}
		for _, k := range stale {
			tx.Delete(k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move legacy sessions: %w", err)
	}
	if moved > 0 {
		s.log.Info("sessions moved to the shared bucket", "sessions", moved, "bucket", bus.BucketSessions)
	}
	return nil
}
