package doctor

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// keysBucket is what Run learned from HERALD_KEYS.
type keysBucket struct {
	// events are the published event keys, by kid, and newestEvent the
	// last published; eventRevoked the event keys revoked by a root key.
	events       map[string]eventKey
	newestEvent  string
	eventRevoked map[string]bool
	// tokens are the valid token keys of Herald's own issuer, by kid;
	// tokenRevoked the token keys recorded revoked; bad the entries that
	// do not open, with why.
	tokens       map[string]bus.KeyEntry
	tokenRevoked map[string]bool
	bad          []string
	// trusts are the external issuers trusted for tokens, and external
	// how many keys of each are published.
	trusts   map[string]bool
	external map[string]int
	// longest is the longest token lifetime a key entry or trust entry
	// states, and longestFrom what states it.
	longest     time.Duration
	longestFrom string
	truncated   bool
}

type eventKey struct {
	jwk bus.JWK
	pub crypto.PublicKey
	rev uint64
}

// eventKey is a bus.EventKeyFunc: the published event keys not revoked,
// and, when the deployment pins event keys, only those.
func (k *keysBucket) eventKey(pins []string) bus.EventKeyFunc {
	return func(kid string) (bus.JWK, crypto.PublicKey, bool) {
		e, ok := k.events[kid]
		if !ok || k.eventRevoked[kid] || (len(pins) > 0 && !slices.Contains(pins, kid)) {
			return bus.JWK{}, nil, false
		}
		return e.jwk, e.pub, true
	}
}

// readKeys reads HERALD_KEYS; nil when it cannot (the bucket check
// reports a missing bucket).
func (r *run) readKeys(ctx context.Context, conn *bus.Conn) *keysBucket {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	kv, err := conn.JetStream().KeyValue(ctx, bus.BucketKeys)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		r.add(CheckEventKeys, Error, fmt.Sprintf("could not open %s: %v", bus.BucketKeys, err),
			"the credentials may not read "+bus.BucketKeys+": use the dashboard's or the issuer's")
		return nil
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		r.add(CheckEventKeys, Error, fmt.Sprintf("could not read %s: %v", bus.BucketKeys, err),
			"the credentials may not read "+bus.BucketKeys+": use the dashboard's or the issuer's")
		return nil
	}
	defer w.Stop()
	var entries []jetstream.KeyValueEntry
	k := &keysBucket{events: map[string]eventKey{}, eventRevoked: map[string]bool{}, tokens: map[string]bus.KeyEntry{},
		tokenRevoked: map[string]bool{}, trusts: map[string]bool{}, external: map[string]int{}}
read:
	for {
		select {
		case <-ctx.Done():
			r.add(CheckEventKeys, Error, fmt.Sprintf("reading %s did not finish: %v", bus.BucketKeys, ctx.Err()),
				"check the NATS servers' health (nats stream info KV_"+bus.BucketKeys+")")
			return nil
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				break read
			}
			if len(entries) >= MaxBucketEntries {
				k.truncated = true
				break read
			}
			entries = append(entries, e)
		}
	}
	// Event keys and their revocations first: the other entries are
	// signed by them.
	var newest uint64
	for _, e := range entries {
		name := e.Key()
		switch {
		case strings.HasPrefix(name, bus.RevokedEventKeyPrefix):
			kid := strings.TrimPrefix(name, bus.RevokedEventKeyPrefix)
			if len(r.cfg.RootKeys) > 0 {
				if _, err := bus.OpenEventKeyRevocation(name, e.Value(), func(kid string) bool { return slices.Contains(r.cfg.RootKeys, kid) }); err != nil {
					k.bad = append(k.bad, fmt.Sprintf("%s: %v", name, err))
					continue
				}
			}
			k.eventRevoked[kid] = true
		case strings.HasPrefix(name, bus.EventKeyPrefix):
			jwk, pub, err := bus.ParseEventKey(name, e.Value())
			if err != nil {
				k.bad = append(k.bad, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			k.events[jwk.Kid] = eventKey{jwk: jwk, pub: pub, rev: e.Revision()}
			if e.Revision() > newest {
				newest, k.newestEvent = e.Revision(), jwk.Kid
			}
		}
	}
	keyOf := k.eventKey(r.cfg.EventKeys)
	for _, e := range entries {
		name := e.Key()
		switch {
		case strings.HasPrefix(name, bus.EventKeyPrefix), strings.HasPrefix(name, bus.RevokedEventKeyPrefix),
			strings.HasPrefix(name, bus.EventCertPrefix):
		case strings.HasPrefix(name, bus.RevokedKeyPrefix):
			if kid, err := bus.ParseRevokedKey(name, e.Value()); err == nil {
				k.tokenRevoked[kid] = true
			}
		case strings.HasPrefix(name, bus.TrustPrefix):
			t, err := bus.OpenTrust(name, e.Value(), keyOf)
			if err != nil {
				k.bad = append(k.bad, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			k.trusts[t.Issuer] = true
			k.longer(t.MaxLifetime(), "tokens of "+t.Issuer)
		default:
			ke, err := bus.OpenKeyEntry(name, e.Value(), keyOf)
			if err != nil {
				k.bad = append(k.bad, fmt.Sprintf("%s: %v", name, err))
				continue
			}
			if ke.Issuer != "" {
				k.external[ke.Issuer]++
				continue
			}
			k.tokens[ke.JWK.Kid] = ke
		}
	}
	for kid, ke := range k.tokens {
		if !k.tokenRevoked[kid] {
			k.longer(ke.MaxLifetime, "max_access_ttl of signing key "+kid)
		}
	}
	sort.Strings(k.bad)
	return k
}

// longer records lifetime d if it is the longest yet.
func (k *keysBucket) longer(d time.Duration, from string) {
	if d > k.longest || (d == k.longest && from < k.longestFrom) {
		k.longest, k.longestFrom = d, from
	}
}

// eventKeys checks the event keys: at least one published, the one that
// signs revocations published and not revoked, and every key the
// deployment pins published and not revoked. It returns the kid of the
// event key that signs revocations now: the signer of the stream's last
// revocation, or else the event key published last.
func (r *run) eventKeys(ctx context.Context, conn *bus.Conn, keys *keysBucket) string {
	if keys == nil {
		return ""
	}
	if keys.truncated {
		r.add(CheckEventKeys, Warning, fmt.Sprintf("%s holds more than %d entries; only the first were checked", bus.BucketKeys, MaxBucketEntries),
			"old entries are not removed by Herald: look for what writes so many (nats kv ls "+bus.BucketKeys+")")
	}
	if len(keys.events) == 0 {
		r.add(CheckEventKeys, Error, "no event key is published in "+bus.BucketKeys+": verifiers cannot check any event",
			"start an issuer: it publishes its event key at start (herald keys event-key FILE prints its kid)")
		return ""
	}
	current, from := lastSigner(ctx, conn, r.cfg.Timeout), "signs the last revocation"
	if current == "" {
		current, from = keys.newestEvent, "published last"
	}
	before := len(r.out)
	switch {
	case keys.eventRevoked[current]:
		r.add(CheckEventKeys, Error, fmt.Sprintf("event key %s %s, but a root key revoked it: verifiers refuse what it signs", current, from),
			"give the issuers a new event key (--event-key-file), certify it with the root key (herald keys event certify) and restart them")
	case keys.events[current].jwk.Kid == "":
		r.add(CheckEventKeys, Error, fmt.Sprintf("event key %s %s, but it is not published in %s: verifiers cannot check its events", current, from, bus.BucketKeys),
			"restart the issuer that holds it: it publishes its event key at start")
	}
	for _, kid := range r.cfg.EventKeys {
		switch {
		case keys.events[kid].jwk.Kid == "":
			r.add(CheckEventKeys, Error, fmt.Sprintf("pinned event key %s is not published in %s", kid, bus.BucketKeys),
				"check --event-keys against the issuers' event_kid (herald keys event-key FILE prints it): a typo, or the issuer holding it never started")
		case keys.eventRevoked[kid]:
			r.add(CheckEventKeys, Error, fmt.Sprintf("pinned event key %s is revoked by a root key", kid),
				"remove it from --event-keys everywhere and pin the issuers' new event key")
		}
	}
	for _, b := range keys.bad {
		if strings.HasPrefix(b, bus.EventKeyPrefix) || strings.HasPrefix(b, bus.RevokedEventKeyPrefix) {
			r.add(CheckEventKeys, Warning, "entry does not open: "+b,
				"something other than Herald wrote to "+bus.BucketKeys+": find out what, and delete the entry (nats kv del "+bus.BucketKeys+" NAME)")
		}
	}
	if len(r.out) == before {
		r.add(CheckEventKeys, OK, fmt.Sprintf("event key %s %s; %d published, %d revoked", current, from, len(keys.events), len(keys.eventRevoked)), "")
	}
	return current
}

// lastSigner returns the kid of the event key that signed the last
// revocation HERALD holds; empty if none or it cannot be read.
func lastSigner(ctx context.Context, conn *bus.Conn, timeout time.Duration) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := conn.JetStream().Stream(ctx, bus.StreamRevocations)
	if err != nil {
		return ""
	}
	st := s.CachedInfo().State
	if st.LastSeq == 0 || st.LastSeq < st.FirstSeq {
		return ""
	}
	m, err := s.GetMsg(ctx, st.LastSeq)
	if err != nil {
		return ""
	}
	return bus.SignatureKid(bus.Delivery{Header: m.Header})
}

// tokenKeys checks the token signing keys: at least one valid and not
// revoked, every entry signed by a trusted event key, and the key that
// signed the last token issued published, valid and not revoked.
func (r *run) tokenKeys(ctx context.Context, conn *bus.Conn, keys *keysBucket) {
	if keys == nil {
		return
	}
	before := len(r.out)
	var valid []string
	for kid := range keys.tokens {
		if !keys.tokenRevoked[kid] {
			valid = append(valid, kid)
		}
	}
	sort.Strings(valid)
	if len(valid) == 0 {
		r.add(CheckTokenKeys, Error, "no valid signing key is published in "+bus.BucketKeys+": verifiers refuse every token",
			"start an issuer: it publishes its signing keys at start, signed by its event key")
	}
	for _, b := range keys.bad {
		if strings.HasPrefix(b, bus.EventKeyPrefix) || strings.HasPrefix(b, bus.RevokedEventKeyPrefix) {
			continue
		}
		r.add(CheckTokenKeys, Error, "entry does not open: "+b,
			"an entry signed by an event key that is not published, revoked or not pinned is refused by verifiers: restart the issuers so they publish their keys again with their event key, "+
				"or delete the entry (nats kv del "+bus.BucketKeys+" NAME) if nothing of Herald wrote it")
	}
	if kid, at := lastTokenKey(ctx, conn, r.cfg.Timeout); kid != "" {
		_, held := keys.tokens[kid]
		switch {
		case keys.tokenRevoked[kid]:
			r.add(CheckTokenKeys, Error, fmt.Sprintf("the last token (issued %s) was signed by key %s, which is revoked: verifiers refuse the tokens it signs", at.Format(time.RFC3339), kid),
				"rotate the issuers' signing key (herald keys rotate): an issuer still signing with a revoked key has not reloaded its keys; restart it")
		case !held:
			r.add(CheckTokenKeys, Error, fmt.Sprintf("the last token (issued %s) was signed by key %s, of which %s holds no valid entry: verifiers refuse the tokens it signs", at.Format(time.RFC3339), kid, bus.BucketKeys),
				"restart the issuer: it publishes its signing keys at start, signed by its event key; check that its NATS credential may write "+bus.BucketKeys)
		}
	}
	if len(r.out) == before {
		r.add(CheckTokenKeys, OK, fmt.Sprintf("%d valid signing keys published (%s), %d revoked", len(valid), strings.Join(valid, ", "), len(keys.tokenRevoked)), "")
	}
}

// lastTokenKey returns the kid of the key that signed the last token
// issued, and when, from its token.issued event in HERALD_AUDIT; empty if
// there is none or it cannot be read.
func lastTokenKey(ctx context.Context, conn *bus.Conn, timeout time.Duration) (string, time.Time) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := conn.JetStream().Stream(ctx, bus.StreamAudit)
	if err != nil {
		return "", time.Time{}
	}
	m, err := s.GetLastMsgForSubject(ctx, bus.SubjectIssuePrefix+">")
	if err != nil {
		return "", time.Time{}
	}
	e, err := bus.Decode(m.Data)
	if err != nil || e.Token == nil {
		return "", time.Time{}
	}
	return e.Token.KeyID, e.Token.IssuedAt
}
