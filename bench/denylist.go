package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/store"
)

// revocationLifetime is how long the revocations the bench publishes in
// bulk stay active: long enough for any run.
const revocationLifetime = time.Hour

// denyKey is the store key of a revocation as the verifier writes it: a
// one-byte kind prefix, a colon and the value. The bench only needs keys
// of the same shape and length, for lookups that cost what Verify's do.
func denyKey(k bus.Kind, value string) string {
	return string(rune('0'+k)) + ":" + value
}

// checkKeys returns the seven keys Verify looks up for a token: its jti,
// sid and kid, and its subject, client, tenant and the "all" entry.
func checkKeys(jti, sid, kid, sub, client, tenant string) []string {
	return []string{
		denyKey(bus.KindToken, jti), denyKey(bus.KindSession, sid), denyKey(bus.KindKey, kid),
		denyKey(bus.KindSubject, sub), denyKey(bus.KindClient, client), denyKey(bus.KindTenant, tenant),
		denyKey(bus.KindAll, ""),
	}
}

// fillDenylist writes n token revocations prefix-0 to prefix-(n-1) to db,
// in batches, as a verifier that applied them would hold them.
func fillDenylist(db *store.DB, n int, prefix string) error {
	return fillDenylistRange(db, 0, n, prefix)
}

// fillDenylistRange writes the token revocations prefix-from to
// prefix-(to-1) to db.
func fillDenylistRange(db *store.DB, from, n int, prefix string) error {
	const batch = 10_000
	now := time.Now()
	entries := make([]store.Entry, 0, batch)
	seq := db.Applied()
	for i := from; i < n; {
		entries = entries[:0]
		for ; i < n && len(entries) < batch; i++ {
			entries = append(entries, store.Entry{Key: denyKey(bus.KindToken, fmt.Sprintf("%s-%d", prefix, i)),
				At: now, Until: now.Add(revocationLifetime)})
		}
		seq++
		if err := db.Apply(seq, entries); err != nil {
			return fmt.Errorf("fill denylist: %w", err)
		}
	}
	return nil
}

// publishWindow is how many asynchronous publishes may await their
// acknowledgement at once, below the JetStream client's own limit (4000).
const publishWindow = 2048

// publishRevocations publishes n token revocations prefix-0 to
// prefix-(n-1) to the HERALD stream, asynchronously with a sliding window
// of acknowledgements, each encoded as the issuer encodes it and with its
// id as Nats-Msg-Id.
func publishRevocations(ctx context.Context, conn *bus.Conn, n int, prefix string, p *Progress) error {
	return publishRevocationRange(ctx, conn, 0, n, prefix, p)
}

// publishRevocationRange publishes the token revocations prefix-from to
// prefix-(to-1), as publishRevocations does.
func publishRevocationRange(ctx context.Context, conn *bus.Conn, from, to int, prefix string, p *Progress) error {
	n := to - from
	if n <= 0 {
		return nil
	}
	js := conn.JetStream()
	now := time.Now()
	var queue []jetstream.PubAckFuture
	acked := 0
	await := func() error {
		f := queue[0]
		queue = queue[1:]
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("publish revocations: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
		acked++
		p.Step("revocations published", acked, n)
		return nil
	}
	for i := from; i < to; i++ {
		if len(queue) == publishWindow {
			if err := await(); err != nil {
				return err
			}
		}
		e := &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "bench",
			Revocation: &bus.Revocation{Kind: bus.KindToken, Value: fmt.Sprintf("%s-%d", prefix, i), Reason: "bench",
				At: now, Until: now.Add(revocationLifetime)}}
		msg, err := conn.NewMsg(ctx, e)
		if err != nil {
			return err
		}
		f, err := js.PublishMsgAsync(msg, jetstream.WithExpectStream(bus.StreamRevocations))
		if err != nil {
			return fmt.Errorf("publish revocation %d: %w", i, err)
		}
		queue = append(queue, f)
	}
	for len(queue) > 0 {
		if err := await(); err != nil {
			return err
		}
	}
	return nil
}
