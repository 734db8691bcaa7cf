package doctor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// streamWant is what Herald needs of one of its streams or buckets.
type streamWant struct {
	stream string // the JetStream stream's name
	check  string // the finding's name
	// denyDelete: messages may not be deleted or purged (the log only
	// shrinks by age); atomic: batches are written at once
	// (AllowAtomicPublish); retention: MaxAge must outlast every token.
	denyDelete, atomic, retention bool
}

// wants lists Herald's streams and buckets and what each needs. The
// issuer creates them all at start.
func wants() []streamWant {
	bucket := func(name string) streamWant {
		return streamWant{stream: bus.BucketStream(name), check: checkBucketWord + name}
	}
	sessions := bucket(bus.BucketSessions)
	sessions.denyDelete, sessions.atomic = true, true
	return []streamWant{
		{stream: bus.StreamRevocations, check: checkStreamWord + bus.StreamRevocations, denyDelete: true, atomic: true, retention: true},
		{stream: bus.StreamAudit, check: checkStreamWord + bus.StreamAudit, denyDelete: true, atomic: true},
		{stream: bus.StreamSnapshots, check: checkStreamWord + bus.StreamSnapshots, denyDelete: true},
		bucket(bus.BucketKeys),
		bucket(bus.BucketVerifiers),
		sessions,
		bucket(bus.BucketRefreshRelay),
		bucket(bus.BucketSignals),
	}
}

// fixRestartIssuer is the fix for a setting the issuer restores.
const fixRestartIssuer = "restart an issuer: at start it gives Herald's streams and buckets the settings Herald needs " +
	"(or set it by hand with the nats CLI: nats stream edit %s)"

// streams checks every stream and bucket of wants against what the
// server holds.
func (r *run) streams(ctx context.Context, conn *bus.Conn, keys *keysBucket) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	have := make(map[string]*jetstream.StreamInfo)
	names := make(map[string]bool)
	for _, w := range wants() {
		names[w.stream] = true
	}
	l := conn.JetStream().ListStreams(ctx)
	for info := range l.Info() {
		if names[info.Config.Name] {
			have[info.Config.Name] = info
		}
	}
	if err := l.Err(); err != nil {
		r.add(checkStreamWord+bus.StreamRevocations, Error, "could not list the streams: "+err.Error(),
			"the credentials may not list streams ($JS.API.STREAM.LIST): use the dashboard's or the issuer's")
		return
	}
	for _, w := range wants() {
		info, ok := have[w.stream]
		if !ok {
			r.add(w.check, Error, fmt.Sprintf("%s does not exist", w.stream),
				"start an issuer (herald issuer): it creates Herald's streams and buckets at start; "+
					"with a leaf node, give the hub's JetStream domain with --nats-domain")
			continue
		}
		r.stream(w, info, keys)
	}
}

// stream checks one stream against w: one finding per problem, or one ok
// finding.
func (r *run) stream(w streamWant, info *jetstream.StreamInfo, keys *keysBucket) {
	c := info.Config
	before := len(r.out)
	restart := fmt.Sprintf(fixRestartIssuer, w.stream)
	if c.Storage != jetstream.FileStorage {
		r.add(w.check, Error, fmt.Sprintf("%s is kept in memory: a server restart loses it", w.stream),
			"Herald's streams live on disk; nats-server cannot change a stream's storage: back it up (nats stream backup), delete it and restart an issuer, which creates it on file storage")
	}
	if c.PersistMode == jetstream.AsyncPersistMode {
		r.add(w.check, Error, fmt.Sprintf("%s writes asynchronously (persist_mode async): a write is acknowledged before it is on disk, and a crash loses acknowledged revocations", w.stream),
			"nats-server cannot change a stream's persist mode: back it up (nats stream backup), delete it and restart an issuer, which creates it with the default persist mode")
	}
	if w.denyDelete && (!c.DenyDelete || !c.DenyPurge) {
		var off []string
		if !c.DenyDelete {
			off = append(off, "deny_delete")
		}
		if !c.DenyPurge {
			off = append(off, "deny_purge")
		}
		r.add(w.check, Error, fmt.Sprintf("%s allows deleting or purging messages (%s off): anyone allowed to can erase revocations", w.stream, strings.Join(off, " and ")), restart)
	}
	if w.atomic && !c.AllowAtomicPublish {
		r.add(w.check, Warning, fmt.Sprintf("%s does not allow atomic batch publishes: concurrent events are written one by one", w.stream),
			"upgrade nats-server to 2.12 or later, then "+restart)
	}
	r.replicas(w, info)
	if w.retention {
		r.retention(w, c.MaxAge, keys)
	}
	if len(r.out) == before {
		r.add(w.check, OK, fmt.Sprintf("%s: file storage, R%d, %s", w.stream, c.Replicas, describe(w, c)), "")
	}
}

// describe summarizes the settings of c that w cares about.
func describe(w streamWant, c jetstream.StreamConfig) string {
	var parts []string
	if w.denyDelete {
		parts = append(parts, "deny delete and purge")
	}
	if w.atomic {
		parts = append(parts, "atomic batches")
	}
	if w.retention {
		parts = append(parts, "keeps revocations "+c.MaxAge.String())
	}
	if len(parts) == 0 {
		return "as Herald creates it"
	}
	return strings.Join(parts, ", ")
}

// replicas checks the replication of a stream against the cluster: R3 in
// a JetStream cluster (fewer nodes: all of them), R1 on a single server;
// and that every replica is online and current.
func (r *run) replicas(w streamWant, info *jetstream.StreamInfo) {
	ci := info.Cluster
	clustered := r.clusterSize > 1 || (ci != nil && (ci.Name != "" || ci.RaftGroup != ""))
	want := 1
	if clustered {
		want = 3
		if r.clusterSize > 0 {
			want = min(3, r.clusterSize)
		}
	}
	n := info.Config.Replicas
	if n < want {
		r.add(w.check, Error, fmt.Sprintf("%s has %d replica(s) in a JetStream cluster: losing one server's disk loses what only it holds", w.stream, n),
			fmt.Sprintf("run issuers with --replicas %d: at start they raise the replicas of Herald's streams and buckets (or nats stream edit %s --replicas %d)", want, w.stream, want))
	}
	if ci == nil {
		return
	}
	if clustered && ci.Leader == "" {
		r.add(w.check, Error, fmt.Sprintf("%s has no leader: it accepts no writes", w.stream),
			"bring back a majority of the stream's servers; nats stream info "+w.stream+" shows which are missing")
	}
	for _, p := range ci.Replicas {
		switch {
		case p.Offline:
			r.add(w.check, Warning, fmt.Sprintf("%s: the replica on server %s is offline", w.stream, p.Name),
				"restart NATS server "+p.Name+" or replace it (nats server raft peer-remove, then let the stream place a new replica)")
		case !p.Current:
			r.add(w.check, Warning, fmt.Sprintf("%s: the replica on server %s is %d operations behind", w.stream, p.Name, p.Lag),
				"wait for it to catch up; if it does not, check server "+p.Name+"'s disk and network")
		}
	}
}

// retention checks that HERALD keeps revocations longer than any token
// they may match lives: the longest lifetime the published keys state
// (the issuer's max_access_ttl, each trusted issuer's token lifetime),
// plus the verifiers' leeway.
func (r *run) retention(w streamWant, maxAge time.Duration, keys *keysBucket) {
	if keys == nil || keys.longest == 0 {
		return // no key entries to compare with: reported by the key checks
	}
	const leeway = ClockSkewError // the verifiers' default leeway
	fix := "restart an issuer: it sets HERALD's max age to the longest token lifetime (--max-access-ttl and each trusted issuer's max_token_lifetime) plus its leeway and a minute"
	switch {
	case maxAge == 0:
		r.add(w.check, Warning, fmt.Sprintf("%s keeps revocations forever: it only grows", w.stream), fix)
	case maxAge < keys.longest:
		r.add(w.check, Error, fmt.Sprintf("%s keeps revocations %s, less than the %s that tokens may live (%s): a revocation is forgotten while the token it revokes is still valid",
			w.stream, maxAge, keys.longest, keys.longestFrom), fix)
	case maxAge < keys.longest+leeway:
		r.add(w.check, Warning, fmt.Sprintf("%s keeps revocations %s, barely longer than the %s that tokens may live (%s): no room for the verifiers' leeway",
			w.stream, maxAge, keys.longest, keys.longestFrom), fix)
	}
}
