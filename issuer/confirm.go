package issuer

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/heraldsec/herald/bus"
)

// MaxWait bounds ?wait on revocations.
const MaxWait = time.Minute

// fleetRecheck is how often a confirmation wait re-reads the fleet bucket,
// for verifiers that join or whose heartbeat shows them done.
const fleetRecheck = 250 * time.Millisecond

// Confirmation says which live verifiers have applied a revocation.
type Confirmation struct {
	// Confirmed counts the verifiers that applied it.
	Confirmed int `json:"confirmed"`
	// SlowestMS is how long the slowest of them took, from the revoke call
	// to its report, in milliseconds.
	SlowestMS float64 `json:"slowest_ms"`
	// Missing lists the live verifiers that had not applied it by the deadline.
	Missing []MissingVerifier `json:"missing,omitempty"`
}

// MissingVerifier is a live verifier that has not confirmed a revocation.
type MissingVerifier struct {
	ID         string `json:"id"`
	Host       string `json:"host"`
	URL        string `json:"url,omitempty"`
	AppliedSeq uint64 `json:"applied_seq"`
	Lag        uint64 `json:"lag"`
	LastSeenMS int64  `json:"last_seen_ms"`
}

// confirmer collects, during one revocation, what the verifiers announce.
// Its times are on the wall clock, not Config.Now: they measure how long
// the verifiers took, and heartbeats are dated by the verifiers' clocks.
type confirmer struct {
	start time.Time
	stop  func()

	mu   sync.Mutex
	seen map[string]bus.Heartbeat // latest heartbeat per verifier
	when map[string]time.Time     // when each verifier first reported the target
	seq  uint64                   // the sequence to confirm; 0 until known
	wake chan struct{}
}

// watchFleet starts listening to verifiers' announcements before a
// revocation is published, so that no fast verifier is missed.
func (s *Service) watchFleet() (*confirmer, error) {
	c := &confirmer{start: time.Now(), seen: map[string]bus.Heartbeat{}, when: map[string]time.Time{},
		wake: make(chan struct{}, 1)}
	stop, err := s.conn.WatchAnnouncements(c.observe)
	if err != nil {
		return nil, err
	}
	c.stop = stop
	return c, nil
}

// observe records a heartbeat, from an announcement or the fleet bucket.
func (c *confirmer) observe(h bus.Heartbeat) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.seen[h.ID]; ok && old.AppliedSeq > h.AppliedSeq {
		h.AppliedSeq = old.AppliedSeq
	}
	c.seen[h.ID] = h
	if c.seq > 0 && h.AppliedSeq >= c.seq {
		if _, ok := c.when[h.ID]; !ok {
			c.when[h.ID] = time.Now()
		}
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// wait blocks until every live verifier has applied seq or timeout passes.
func (s *Service) confirm(ctx context.Context, c *confirmer, seq uint64, timeout time.Duration) (*Confirmation, bool) {
	defer c.stop()
	c.mu.Lock()
	c.seq = seq
	for id, h := range c.seen {
		if h.AppliedSeq >= seq {
			c.when[id] = time.Now()
		}
	}
	c.mu.Unlock()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(fleetRecheck)
	defer tick.Stop()
	required := map[string]bool{}
	refresh := func() {
		list, err := s.conn.ListFleet(ctx)
		if err != nil {
			return // keep the last known fleet
		}
		now := time.Now()
		for _, h := range list {
			if h.Live(now) {
				required[h.ID] = true
				c.observe(h)
			}
		}
	}
	refresh()
	for {
		if conf, done := c.result(required, seq, false); done {
			return conf, true
		}
		select {
		case <-ctx.Done():
			conf, _ := c.result(required, seq, true)
			return conf, false
		case <-deadline.C:
			refresh()
			conf, done := c.result(required, seq, true)
			return conf, done
		case <-tick.C:
			refresh()
		case <-c.wake:
		}
	}
}

// result reports the confirmation so far and whether every required
// verifier has confirmed; final also lists the missing ones.
func (c *confirmer) result(required map[string]bool, seq uint64, final bool) (*Confirmation, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	conf := &Confirmation{}
	done := true
	for id := range c.seen {
		if t, ok := c.when[id]; ok {
			conf.Confirmed++
			conf.SlowestMS = max(conf.SlowestMS, float64(t.Sub(c.start).Microseconds())/1000)
			continue
		}
		if !required[id] {
			continue
		}
		done = false
		if final {
			h := c.seen[id]
			lag := uint64(0)
			if seq > h.AppliedSeq {
				lag = seq - h.AppliedSeq
			}
			conf.Missing = append(conf.Missing, MissingVerifier{ID: id, Host: h.Host, URL: h.URL, AppliedSeq: h.AppliedSeq,
				Lag: max(lag, h.Lag), LastSeenMS: time.Since(h.Time).Milliseconds()})
		}
	}
	sort.Slice(conf.Missing, func(i, j int) bool { return conf.Missing[i].ID < conf.Missing[j].ID })
	return conf, done
}
