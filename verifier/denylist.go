package verifier

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// DenyKey returns the denylist key of a revocation of kind k for value,
// for programs (the issuer) that consult a denylist this package fills.
func DenyKey(k bus.Kind, value string) string { return denyKey(k, value) }

// DenyKeyFor returns the denylist key of a revocation of kind k for value
// limited to the tokens of issuer iss (bus.Revocation.Issuer), or, with
// iss empty, of one for every issuer (DenyKey).
func DenyKeyFor(k bus.Kind, iss, value string) string { return denyKeyFor(k, iss, value) }

// denyKey returns the store key of a revocation of kind k for value. Each
// kind has its own one-byte prefix so values of different kinds never collide.
func denyKey(k bus.Kind, value string) string {
	return string(rune('0'+k)) + ":" + value
}

// denyKeyFor returns the store key of a revocation of kind k for value
// limited to issuer iss: the kind's byte, '@' where an unlimited one has
// ':', the issuer, a NUL (which bus.CheckIssuer keeps out of issuers),
// then the value. With iss empty it is denyKey.
func denyKeyFor(k bus.Kind, iss, value string) string {
	if iss == "" {
		return denyKey(k, value)
	}
	return string(rune('0'+k)) + "@" + iss + "\x00" + value
}

// scopeMarker returns the key of the denylist entry that records that
// revocations limited to issuer iss may be in force: one is written with
// each of them, with the latest Until of theirs, so that while none is,
// checkDenylist skips their lookups for that issuer's tokens. Its first
// byte is no kind's.
func scopeMarker(iss string) string { return "~" + iss }

// entryFor returns the denylist entry that enforces revocation r for one
// of its values.
func entryFor(r *bus.Revocation, value string) store.Entry {
	return store.Entry{Key: denyKeyFor(r.Kind, r.Issuer, value), At: r.At, Until: r.Until}
}

// entriesFor appends to entries those that enforce revocation r: one per
// value, and, for a revocation limited to an issuer, its scope marker.
func entriesFor(entries []store.Entry, r *bus.Revocation) []store.Entry {
	for _, v := range r.AllValues() {
		entries = append(entries, entryFor(r, v))
	}
	if r.Issuer != "" {
		entries = append(entries, store.Entry{Key: scopeMarker(r.Issuer), At: r.At, Until: r.Until})
	}
	return entries
}

// checkDenylist reports whether a verified token is revoked, as the README's
// table of kinds says: token, session and key revocations reject every
// matching token; subject, client, tenant and all reject matching tokens
// issued at or before the revocation. Herald's iat has milliseconds; a
// token from another issuer with whole-second iat is compared as issued at
// the start of its second, so a same-second token is rejected.
//
// Each kind matches by its entry for every issuer and by the one limited
// to the token's issuer; the latter are looked up only while the scope
// marker of that issuer says one may be in force. A subject revocation
// also matches the token's Email (an external issuer's email claim).
func (v *Verifier) checkDenylist(c *Claims, kid string) error {
	if v.deny == nil {
		return nil
	}
	iss := ""
	if c.Issuer != "" && v.deny.Contains(v.scopeMarker(c.Issuer)) {
		iss = c.Issuer
	}
	has := func(k bus.Kind, value string) bool {
		return v.deny.Contains(denyKey(k, value)) || iss != "" && v.deny.Contains(denyKeyFor(k, iss, value))
	}
	if c.ID != "" && has(bus.KindToken, c.ID) {
		return fmt.Errorf("%w: token", ErrRevoked)
	}
	if c.SessionID != "" && has(bus.KindSession, c.SessionID) {
		return fmt.Errorf("%w: session", ErrRevoked)
	}
	if has(bus.KindKey, kid) {
		return fmt.Errorf("%w: key", ErrRevoked)
	}
	iat := c.IssuedAt.Time
	byIssuedAt := func(k bus.Kind, value string) bool {
		if e, ok := v.deny.Lookup(denyKey(k, value)); ok && !iat.After(e.At) {
			return true
		}
		if iss == "" {
			return false
		}
		e, ok := v.deny.Lookup(denyKeyFor(k, iss, value))
		return ok && !iat.After(e.At)
	}
	switch {
	case byIssuedAt(bus.KindSubject, c.Subject), c.Email != "" && byIssuedAt(bus.KindSubject, c.Email):
		return fmt.Errorf("%w: subject", ErrRevoked)
	case c.ClientID != "" && byIssuedAt(bus.KindClient, c.ClientID):
		return fmt.Errorf("%w: client", ErrRevoked)
	case c.Tenant != "" && byIssuedAt(bus.KindTenant, c.Tenant):
		return fmt.Errorf("%w: tenant", ErrRevoked)
	case byIssuedAt(bus.KindAll, ""):
		return fmt.Errorf("%w: all", ErrRevoked)
	}
	return nil
}

// scopeMarker returns the scope marker of iss, Herald's own without
// building it.
func (v *Verifier) scopeMarker(iss string) string {
	if iss == v.cfg.Issuer {
		return v.ownMarker
	}
	return scopeMarker(iss)
}

// denylistCacheSize sizes Pebble's block cache for a sidecar, which runs
// beside every application pod: lookups of keys the denylist does not hold
// never read Pebble, and those of keys it holds mostly hit the store's
// cache of recent hits, so a small block cache serves (Pebble's default is
// 8 MiB). The memtables keep Pebble's default size (4 MiB): at 2 MiB,
// loading a snapshot took twice as long.
const denylistCacheSize = 2 << 20

// OpenDenylist opens the denylist in dir and reads all of it. One that
// cannot be read back (damaged or missing files, bad data) is moved aside
// to dir.corrupt, replacing an older one, and an empty denylist takes its
// place: the Follower rebuilds it from the stream, which holds every
// revocation still in force, and the sidecar is not ready until it has.
// log, which must not be nil, hears of the move.
func OpenDenylist(dir string, log *slog.Logger) (*store.DB, error) {
	opts := store.Options{Logger: log, Verify: true, CacheSize: denylistCacheSize}
	db, err := store.Open(dir, opts)
	if !errors.Is(err, store.ErrCorrupt) {
		return db, err
	}
	aside := dir + ".corrupt"
	if rerr := os.RemoveAll(aside); rerr != nil {
		return nil, fmt.Errorf("%w; moving it aside: %w", err, rerr)
	}
	if rerr := os.Rename(dir, aside); rerr != nil {
		return nil, fmt.Errorf("%w; moving it aside: %w", err, rerr)
	}
	log.Error("denylist unreadable: moved aside; rebuilding it from the revocation stream", "err", err, "moved_to", aside)
	return store.Open(dir, opts)
}
