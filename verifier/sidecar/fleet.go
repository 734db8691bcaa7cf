package sidecar

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
)

// idFile holds a verifier's id in its data directory.
const idFile = "verifier.id"

// loadID returns the verifier id kept in dir, creating one at first start.
// The id outlives restarts, so the fleet view follows one verifier.
func loadID(dir string) (string, error) {
	path := filepath.Join(dir, idFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if !bus.ValidVerifierID(id) {
			return "", fmt.Errorf("verifier id in %s is not valid: %q", path, truncate(id, 64))
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read verifier id: %w", err)
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("create verifier id: %w", err)
	}
	id := hex.EncodeToString(r[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("create verifier id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("create verifier id: %w", err)
	}
	return id, nil
}

// Heartbeat returns what the sidecar reports to the fleet now.
func (s *Sidecar) Heartbeat() *bus.Heartbeat {
	st := s.Status()
	return &bus.Heartbeat{
		ID: s.id, Host: s.host, Version: s.cfg.Version, URL: s.URL(),
		AppliedSeq: st.Applied, StreamHead: st.Head, Lag: st.Lag,
		Ready: st.Ready, Stale: st.Stale, Denylist: st.Denylist,
		Started: s.started.UTC(), Time: s.clock()().UTC(),
		EveryMS:   s.cfg.HeartbeatEvery.Milliseconds(),
		EventKeys: heartbeatKids(st.EventKeys), EventKeyTrust: s.eventKeyTrust(),
	}
}

// heartbeatKids returns kids sorted, at most bus.MaxHeartbeatEventKeys.
func heartbeatKids(kids []string) []string {
	out := slices.Sorted(slices.Values(kids))
	if len(out) > bus.MaxHeartbeatEventKeys {
		out = out[:bus.MaxHeartbeatEventKeys]
	}
	return out
}

// eventKeyTrust says how the sidecar chooses the event keys it trusts.
func (s *Sidecar) eventKeyTrust() string {
	switch {
	case len(s.cfg.EventKeys) > 0:
		return bus.EventKeysPinned
	case len(s.cfg.RootKeys) > 0:
		return bus.EventKeysRooted
	}
	return bus.EventKeysFirstUse
}

// clock returns the sidecar's clock: its verifier's.
func (s *Sidecar) clock() func() time.Time {
	if s.cfg.Verifier.Now != nil {
		return s.cfg.Verifier.Now
	}
	return time.Now
}

// heartbeat reports the sidecar to HERALD_VERIFIERS every HeartbeatEvery,
// creating the bucket if no issuer has yet, and removes the report when
// ctx ends so the sidecar leaves the fleet at once.
func (s *Sidecar) heartbeat(ctx context.Context) error {
	var (
		fleet    *bus.Fleet
		failed   bool
		skewed   bool      // the last measured offset was beyond bus.SkewWarning
		warnedAt time.Time // when that was last logged
	)
	// offset measures the clock against the NATS server's, and warns
	// while it is off by more than bus.SkewWarning: on the first beat
	// that shows it, then every minute.
	offset := func(ctx context.Context) *int64 {
		off, err := s.conn.ClockOffset(ctx, s.clock())
		if err != nil {
			return nil
		}
		ms := off.Milliseconds()
		switch {
		case off.Abs() > bus.SkewWarning && (!skewed || time.Since(warnedAt) >= time.Minute):
			s.log.Warn("CLOCK SKEW: this verifier's clock differs from the NATS server's; revocations are dated by the issuer's clock, so check NTP",
				"offset", off.Round(time.Millisecond), "threshold", bus.SkewWarning)
			skewed, warnedAt = true, time.Now()
		case off.Abs() <= bus.SkewWarning && skewed:
			s.log.Info("clock back in step with the NATS server", "offset", off.Round(time.Millisecond))
			skewed = false
		}
		return &ms
	}
	timeout := max(s.cfg.HeartbeatEvery, time.Second)
	beat := func() {
		if !s.conn.Connected() {
			return // staleness is reported by watchBus
		}
		bctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		var err error
		if fleet == nil {
			fleet, err = s.conn.OpenFleet(bctx, true, bus.FleetConfig{TTL: s.cfg.FleetTTL})
		}
		if err == nil {
			h := s.Heartbeat()
			h.ClockOffsetMS = offset(bctx)
			err = fleet.Beat(bctx, h)
		}
		switch {
		case err != nil && ctx.Err() == nil && !failed:
			s.log.Warn("heartbeat failed; retrying", "err", err)
			failed = true
		case err == nil && failed:
			s.log.Info("heartbeat restored")
			failed = false
		}
	}
	beat()
	t := time.NewTicker(s.cfg.HeartbeatEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if fleet != nil && s.conn.Connected() {
				lctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				if err := fleet.Leave(lctx, s.id); err != nil {
					s.log.Debug("leave fleet", "err", err)
				}
			}
			return nil
		case <-t.C:
			beat()
		}
	}
}

// truncate shortens s to n bytes for a log or error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
