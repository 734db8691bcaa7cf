package issuer

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/heraldsec/herald/bus"
)

// RevocationRecord is a revocation in force, as GET /v1/revocations lists it.
type RevocationRecord struct {
	ID     string    `json:"id"`
	Seq    uint64    `json:"seq"`
	Kind   bus.Kind  `json:"kind"`
	Value  string    `json:"value,omitempty"`
	Count  int       `json:"count,omitempty"` // values of a bulk revocation
	Reason string    `json:"reason,omitempty"`
	Actor  string    `json:"actor"`
	At     time.Time `json:"at"`
	Until  time.Time `json:"until"`
	// Issuer is the issuer the revocation is limited to, if any.
	Issuer string `json:"iss,omitempty"`
}

// AuditRecord is an admin action, as GET /v1/audit lists it.
type AuditRecord struct {
	ID     string    `json:"id"`
	Seq    uint64    `json:"seq"`
	Type   bus.Type  `json:"type"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Source string    `json:"source,omitempty"`
	Reason string    `json:"reason,omitempty"`
	Kind   bus.Kind  `json:"kind,omitempty"`
	Value  string    `json:"value,omitempty"`
	Count  int       `json:"count,omitempty"`
	// Issuer is the issuer a revocation was limited to, or the issuer of
	// a received signal.
	Issuer string `json:"iss,omitempty"`
}

// listFilter is the query of the list endpoints.
type listFilter struct {
	kind   bus.Kind
	value  string
	actor  string
	action string
	since  time.Time
	limit  int
}

// keepLast appends v to list, keeping only the newest n.
func keepLast[T any](list []T, v T, n int) []T {
	list = append(list, v)
	if len(list) > n {
		list = list[1:]
	}
	return list
}

// ListRevocations returns the revocations the HERALD stream holds (those
// still in force), newest first, filtered.
func (s *Service) ListRevocations(ctx context.Context, f listFilter) ([]RevocationRecord, error) {
	out := []RevocationRecord{}
	err := s.conn.Read(ctx, bus.StreamRevocations, bus.ReadOptions{Since: f.since}, func(d bus.Delivery) bool {
		e, err := s.openEvent(d, bus.StreamRevocations)
		if err != nil || e.Revocation == nil {
			return true
		}
		r := e.Revocation
		switch {
		case f.kind != 0 && r.Kind != f.kind,
			f.actor != "" && e.Actor != f.actor,
			f.value != "" && r.Value != f.value && !slices.Contains(r.Values, f.value):
			return true
		}
		out = keepLast(out, RevocationRecord{ID: e.ID, Seq: d.Seq, Kind: r.Kind, Value: r.Value, Count: len(r.Values),
			Reason: r.Reason, Actor: e.Actor, At: r.At, Until: r.Until, Issuer: r.Issuer}, f.limit)
		return true
	})
	slices.Reverse(out)
	return out, err
}

// ListAudit returns the admin actions and the signals received from
// outside that HERALD_AUDIT holds, newest first, filtered. A signal is
// listed with action signal.<format> (signal.logout, signal.push,
// signal.poll), its sender as source and what it caused.
func (s *Service) ListAudit(ctx context.Context, f listFilter) ([]AuditRecord, error) {
	// What this replica has answered is in the trail, its audit events
	// published after the answer included.
	if err := s.outbox.settle(ctx); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	out := []AuditRecord{}
	opts := bus.ReadOptions{Subjects: []string{bus.SubjectAdminPrefix + ">", bus.SubjectSignalPrefix + ">"}, Since: f.since}
	err := s.conn.Read(ctx, bus.StreamAudit, opts, func(d bus.Delivery) bool {
		e, err := s.openEvent(d, bus.StreamAudit)
		if err != nil {
			return true
		}
		a := e.Admin
		if sg := e.Signal; sg != nil {
			a = &bus.Admin{Action: "signal." + sg.Format, Source: sg.Sender, Reason: sg.Note, Kind: sg.Kind, Value: sg.Value, Issuer: sg.Issuer}
		}
		if a == nil {
			return true
		}
		switch {
		case f.kind != 0 && a.Kind != f.kind,
			f.actor != "" && e.Actor != f.actor,
			f.action != "" && a.Action != f.action,
			f.value != "" && a.Value != f.value:
			return true
		}
		out = keepLast(out, AuditRecord{ID: e.ID, Seq: d.Seq, Type: e.Type, Time: e.Time, Actor: e.Actor,
			Action: a.Action, Source: a.Source, Reason: a.Reason, Kind: a.Kind, Value: a.Value, Count: a.Count, Issuer: a.Issuer}, f.limit)
		return true
	})
	slices.Reverse(out)
	return out, err
}

// openEvent checks the signature of an event read from stream, as
// verifiers do: the audit API, the revocation list and the event stream
// show only what an issuer of this deployment signed.
func (s *Service) openEvent(d bus.Delivery, stream string) (*bus.Event, error) {
	return bus.OpenEvent(d, stream, s.trusted.EventKey)
}
