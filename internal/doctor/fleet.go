package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// member is one verifier's last heartbeat, as HERALD_VERIFIERS holds it.
type member struct {
	hb bus.Heartbeat
	// stored is when JetStream stored the heartbeat, by the NATS
	// server's clock.
	stored time.Time
	// age is how old the heartbeat is by the NATS server's clock.
	age  time.Duration
	live bool
}

// fleetView is what Run learned of the fleet.
type fleetView struct {
	members []member
	head    uint64
}

// live returns the members still reporting.
func (f *fleetView) live() []member {
	var out []member
	for _, m := range f.members {
		if m.live {
			out = append(out, m)
		}
	}
	return out
}

// kvOperation is the header that marks a deleted key-value entry.
const kvOperation = "KV-Operation"

// readFleet reads every verifier's last heartbeat: the subjects the
// bucket's stream holds (stream info), then the last message of each
// (direct get). Unlike a key-value watcher this needs no consumer, so
// the dashboard's read-only credential is enough. Each message keeps
// JetStream's own time stamp, by which heartbeats are aged: the NATS
// server's clock, not the verifiers' nor this host's.
func readFleet(ctx context.Context, conn *bus.Conn, serverNow time.Time) ([]member, error) {
	s, err := conn.JetStream().Stream(ctx, bus.BucketStream(bus.BucketVerifiers))
	if err != nil {
		return nil, err
	}
	prefix := bus.SubjectKVPrefix(bus.BucketVerifiers)
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, err
	}
	subjects := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		subjects = append(subjects, subj)
	}
	sort.Strings(subjects)
	if len(subjects) > MaxVerifiers {
		subjects = subjects[:MaxVerifiers]
	}
	var out []member
	for _, subj := range subjects {
		m, err := s.GetLastMsgForSubject(ctx, subj)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // expired since the listing
		}
		if err != nil {
			return nil, err
		}
		if op := m.Header.Get(kvOperation); op != "" {
			continue // the verifier left
		}
		var hb bus.Heartbeat
		if len(m.Data) > bus.MaxHeartbeatSize || json.Unmarshal(m.Data, &hb) != nil || prefix+hb.ID != subj {
			continue
		}
		every := time.Duration(hb.EveryMS) * time.Millisecond
		if every <= 0 {
			every = bus.DefaultHeartbeatEvery
		}
		age := max(serverNow.Sub(m.Time), 0)
		out = append(out, member{hb: hb, stored: m.Time, age: age, live: age < 3*every})
	}
	return out, nil
}

// fleet checks every verifier that reports: live, not stale, ready, not
// lagging; and that as many report as expected.
func (r *run) fleet(ctx context.Context, conn *bus.Conn) *fleetView {
	ctx, cancel := context.WithTimeout(ctx, 3*r.cfg.Timeout)
	defer cancel()
	now := r.cfg.Now()
	// The doctor's clock against the server's ages the heartbeats by the
	// server's clock.
	serverNow := now
	if off, err := conn.ClockOffset(ctx, r.cfg.Now); err == nil {
		serverNow = now.Add(-off)
	}
	_, head, err := conn.StreamHead(ctx, bus.StreamRevocations)
	if err != nil {
		return nil // reported by the stream checks
	}
	members, err := readFleet(ctx, conn, serverNow)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // reported by the bucket checks
	}
	if err != nil {
		r.add(CheckFleet, Error, fmt.Sprintf("could not read %s: %v", bus.BucketVerifiers, err),
			"the credentials may not read the verifiers' heartbeats: use the dashboard's or the issuer's (herald nats-permissions dashboard)")
		return nil
	}
	f := &fleetView{members: members, head: head}
	before := len(r.out)
	var worstLag uint64
	for _, m := range members {
		hb := m.hb
		name := verifierName(hb)
		lag := hb.Lag
		if head > hb.AppliedSeq {
			lag = max(lag, head-hb.AppliedSeq)
		}
		switch {
		case !m.live:
			r.add(CheckFleet, Error, fmt.Sprintf("verifier %s last reported %s ago (every %s): it stopped, or lost NATS", name,
				m.age.Round(time.Second), time.Duration(hb.EveryMS)*time.Millisecond),
				"check the verifier's process, host and logs, and that it reaches NATS; a verifier removed for good leaves the list once its heartbeat expires")
		case hb.Stale:
			r.add(CheckFleet, Error, fmt.Sprintf("verifier %s is stale: cut off from the bus for longer than its --max-staleness, it answers 503 (or, with --on-stale allow, from old state)", name),
				"check the verifier's NATS connection (its logs, /v1/status): credentials, network, the servers' health")
		case !hb.Ready:
			r.add(CheckFleet, Warning, fmt.Sprintf("verifier %s is not ready: applied %d of %d (lag %d)", name, hb.AppliedSeq, head, lag),
				"wait for it to catch up; if it does not move, see its /v1/status (last_error) and logs: a missing event key or a gap stops it")
		case lag > r.cfg.MaxLag:
			r.add(CheckFleet, Warning, fmt.Sprintf("verifier %s lags %d revocations behind (applied %d of %d)", name, lag, hb.AppliedSeq, head),
				"check the verifier's CPU, disk and network; herald status --fleet shows the lag as it changes")
		}
		if m.live {
			worstLag = max(worstLag, lag)
		}
	}
	live := len(f.live())
	switch {
	case r.cfg.ExpectVerifiers > 0 && live < r.cfg.ExpectVerifiers:
		r.add(CheckFleet, Error, fmt.Sprintf("%d verifiers report, %d expected", live, r.cfg.ExpectVerifiers),
			"find the missing verifiers: they stopped, cannot reach NATS, or their credential may not write "+bus.BucketVerifiers+" (herald nats-permissions verifier --id ID)")
	case len(members) == 0:
		r.add(CheckFleet, Warning, "no verifier reports to "+bus.BucketVerifiers,
			"start verifiers (herald verifier); if they run, check that their credential may write their heartbeat (herald nats-permissions verifier --id ID)")
	}
	if len(r.out) == before {
		r.add(CheckFleet, OK, fmt.Sprintf("%d verifiers live, ready, not stale; largest lag %d (stream head %d)", live, worstLag, head), "")
	}
	return f
}

// verifierName names a verifier in a finding: its id and host.
func verifierName(hb bus.Heartbeat) string {
	if hb.Host == "" {
		return hb.ID
	}
	return hb.ID + " (" + hb.Host + ")"
}

// pins checks that every live verifier trusts the event key that signs
// revocations, and that it chose its event keys by pinning them.
func (r *run) pins(f *fleetView, keys *keysBucket, current string) {
	if f == nil || keys == nil || current == "" {
		return
	}
	before := len(r.out)
	live := f.live()
	for _, m := range live {
		hb := m.hb
		name := verifierName(hb)
		switch {
		case hb.EventKeyTrust == "":
			r.add(CheckPins, Warning, fmt.Sprintf("verifier %s (version %s) does not report the event keys it trusts", name, hb.Version),
				"upgrade it: newer verifiers report them in their heartbeat")
			continue
		case !slices.Contains(hb.EventKeys, current):
			trusts := strings.Join(hb.EventKeys, ", ")
			if trusts == "" {
				trusts = "none"
			}
			r.add(CheckPins, Error, fmt.Sprintf("verifier %s does not trust event key %s, which signs revocations (it trusts: %s): it applies no revocation signed by it", name, current, trusts),
				fmt.Sprintf("give the verifier --event-keys %s (the issuers' event_kid), or certify the key with a root key the verifier pins (herald keys event certify)", current))
		}
		for _, kid := range hb.EventKeys {
			if keys.eventRevoked[kid] {
				r.add(CheckPins, Error, fmt.Sprintf("verifier %s trusts event key %s, which a root key revoked", name, kid),
					"remove it from the verifier's --event-keys, and give the verifier --root-keys so it honours root revocations")
			}
		}
		if hb.EventKeyTrust == bus.EventKeysFirstUse {
			r.add(CheckPins, Warning, fmt.Sprintf("verifier %s trusts the event keys it found first, not pinned ones: whoever wrote to %s first is trusted", name, bus.BucketKeys),
				fmt.Sprintf("pin the issuers' event key: --event-keys %s (or --root-keys)", current))
		}
	}
	if len(r.out) == before && len(live) > 0 {
		r.add(CheckPins, OK, fmt.Sprintf("%d live verifiers pin and trust event key %s", len(live), current), "")
	}
}

// clocks checks each live verifier's clock against the issuer's. Both
// measure themselves against the same clock, the NATS server's: a
// verifier reports its offset in every heartbeat (clock_offset_ms,
// measured half way through a request the server dates, so within half
// its round trip), the issuer in its API. A verifier too old to report
// its offset is measured by its heartbeat's own time against the time
// JetStream stored it at, which errs by the time the heartbeat took to
// reach the server, and only ever makes the verifier look slower.
func (r *run) clocks(f *fleetView, api *issuerView) {
	if f == nil {
		return
	}
	before := len(r.out)
	against := "the NATS server's"
	var issuerOff time.Duration
	if api != nil && api.clockKnown {
		against, issuerOff = "the issuer's", api.clockOffset
		if st := skewStatus(issuerOff); st != OK {
			r.add(CheckClock, st, fmt.Sprintf("the issuer's clock is %s off the NATS server's", fmtSkew(issuerOff)),
				"run NTP (chrony, systemd-timesyncd) on the issuer's host and on the NATS servers")
		}
	}
	var worst time.Duration
	var worstName string
	n := 0
	for _, m := range f.live() {
		hb := m.hb
		off, how := time.Duration(0), ""
		if hb.ClockOffsetMS != nil {
			off = time.Duration(*hb.ClockOffsetMS) * time.Millisecond
		} else {
			off, how = hb.Time.Sub(m.stored), " (from its heartbeat's time against JetStream's stamp)"
		}
		skew := off - issuerOff
		n++
		if skew.Abs() >= worst.Abs() {
			worst, worstName = skew, verifierName(hb)
		}
		if st := skewStatus(skew); st != OK {
			r.add(CheckClock, st, fmt.Sprintf("verifier %s's clock is %s off %s clock%s: revocations and token times are dated by the issuer's clock",
				verifierName(hb), fmtSkew(skew), against, how),
				"run NTP (chrony, systemd-timesyncd) on the verifier's host; beyond the verifiers' leeway tokens are judged expired or not yet valid by the wrong clock")
		}
	}
	if api == nil || !api.clockKnown {
		r.add(CheckClock, Warning, "the verifiers' clocks were compared with the NATS server's only, not with the issuer's",
			"give --issuer-url and an admin credential with the read scope: the issuer reports its own clock against the NATS server's")
	}
	if len(r.out) == before && n > 0 {
		r.add(CheckClock, OK, fmt.Sprintf("%d live verifiers within %s of %s clock; largest %s (%s)", n, bus.SkewWarning, against, fmtSkew(worst), worstName), "")
	}
}

// skewStatus grades a clock skew.
func skewStatus(d time.Duration) Status {
	switch {
	case d.Abs() > ClockSkewError:
		return Error
	case d.Abs() > bus.SkewWarning:
		return Warning
	}
	return OK
}

// fmtSkew prints a skew with its sign: + ahead, - behind.
func fmtSkew(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}
