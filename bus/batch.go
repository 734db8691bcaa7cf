package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit. Every message a Conn writes to one of Herald's streams
// goes through that stream's committer: concurrent callers' messages are
// queued, and while one group is being written the next one gathers. A
// group of atomicMin messages or more goes to a stream that allows it as
// one atomic batch (nats-server's batch publish: Nats-Batch-Id,
// Nats-Batch-Sequence, Nats-Batch-Commit on the last), which the server
// writes with one sync instead of one per message; a smaller group, or one
// whose batch was refused, goes as plain publishes, pipelined, each with
// its own answer. A lone message is thus published at once, as before,
// and every caller still gets its own message's stream sequence, or its
// own error, only after the server has synced it.

const (
	// atomicMin is the fewest messages sent as one atomic batch: the
	// server stages a batch of a file-backed single-replica stream in a
	// store of its own, which costs about as much as a dozen synced
	// messages, so smaller groups are cheaper as plain publishes.
	atomicMin = 16
	// maxBatch bounds the messages of one atomic batch (nats-server
	// allows 1,000).
	maxBatch = 256
	// commitTimeout bounds how long a group waits for its answers.
	commitTimeout = 10 * time.Second
)

// Headers of an atomic batch publish (nats-server 2.12 and later).
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// JetStream error codes the committer reads.
const (
	errCodeAtomicDisabled = 10174 // the stream does not allow atomic batches
)

// errConnClosed is returned to callers whose messages the Conn did not
// write before it closed.
var errConnClosed = errors.New("bus: connection closed")

// commitReq is one caller's messages, written in order.
type commitReq struct {
	msgs []*nats.Msg
	seqs []uint64
	errs []error
	done chan struct{}
}

// committer writes the messages of one stream in groups.
type committer struct {
	c      *Conn
	stream string
	// atomic is set once the stream's configuration allows atomic batches
	// (EnsureStreams, EnsureSessions), and cleared when the server refuses one.
	atomic atomic.Bool

	mu    sync.Mutex
	queue []*commitReq
	wake  chan struct{}

	// batches and singles count the atomic batches and the plain
	// publishes written, for tests.
	batches, singles atomic.Uint64
	// beforeWrite, when set by tests, runs before each group is written,
	// with its number of messages.
	beforeWrite func(msgs int)
}

// committer returns the committer of stream, starting it on first use.
func (c *Conn) committer(stream string) *committer {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if cm, ok := c.committers[stream]; ok {
		return cm
	}
	cm := &committer{c: c, stream: stream, wake: make(chan struct{}, 1)}
	if c.committers == nil {
		c.committers = make(map[string]*committer)
	}
	c.committers[stream] = cm
	c.commitWG.Add(1)
	go cm.run()
	return cm
}

// allowAtomic records whether stream allows atomic batches.
func (c *Conn) allowAtomic(stream string, ok bool) {
	c.committer(stream).atomic.Store(ok)
}

// enqueue queues msgs to be written in order.
func (cm *committer) enqueue(msgs []*nats.Msg) *commitReq {
	r := &commitReq{msgs: msgs, seqs: make([]uint64, len(msgs)), errs: make([]error, len(msgs)), done: make(chan struct{})}
	cm.mu.Lock()
	cm.queue = append(cm.queue, r)
	cm.mu.Unlock()
	select {
	case cm.wake <- struct{}{}:
	default:
	}
	return r
}

// wait waits for r to be written. An error here means the answer did not
// come in time: the messages may or may not have been written.
func (cm *committer) wait(ctx context.Context, r *commitReq) error {
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-cm.c.closed:
		select {
		case <-r.done:
			return nil
		default:
			return errConnClosed
		}
	}
}

// run writes the queued messages, a group at a time, until the Conn closes.
func (cm *committer) run() {
	defer cm.c.commitWG.Done()
	for {
		select {
		case <-cm.c.closed:
			return
		case <-cm.wake:
		}
		for {
			cm.mu.Lock()
			q := cm.queue
			cm.queue = nil
			cm.mu.Unlock()
			if len(q) == 0 {
				break
			}
			cm.write(q)
		}
	}
}

// write writes a group of requests and answers each.
func (cm *committer) write(q []*commitReq) {
	defer func(all []*commitReq) {
		for _, r := range all {
			close(r.done)
		}
	}(q)
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	n := 0
	for _, r := range q {
		n += len(r.msgs)
	}
	if cm.beforeWrite != nil {
		cm.beforeWrite(n)
	}

	if n < atomicMin || !cm.atomic.Load() {
		cm.publishEach(ctx, q)
		return
	}
	// Batches of whole requests, each within maxBatch; a request larger
	// than that goes as plain publishes.
	for len(q) > 0 {
		k, size := 0, 0
		for k < len(q) && size+len(q[k].msgs) <= maxBatch {
			size += len(q[k].msgs)
			k++
		}
		if k == 0 {
			cm.publishEach(ctx, q[:1])
			q = q[1:]
			continue
		}
		cm.writeBatch(ctx, q[:k], size)
		q = q[k:]
	}
}

// batchAck is the answer to the commit of an atomic batch.
type batchAck struct {
	Stream string              `json:"stream"`
	Seq    uint64              `json:"seq"`
	Batch  string              `json:"batch"`
	Count  int                 `json:"count"`
	Error  *jetstream.APIError `json:"error"`
}

// writeBatch writes q, size messages in all, as one atomic batch. If the
// server refuses the batch (one message's check failed, which fails them
// all), the messages go again one by one, so that each caller gets its
// own answer.
func (cm *committer) writeBatch(ctx context.Context, q []*commitReq, size int) {
	id := NewID()
	i := 0
	var (
		resp *nats.Msg
		err  error
	)
	for _, r := range q {
		for _, m := range r.msgs {
			i++
			bm := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: make(nats.Header, len(m.Header)+3)}
			for k, v := range m.Header {
				bm.Header[k] = v
			}
			bm.Header.Set(hdrBatchID, id)
			bm.Header.Set(hdrBatchSeq, strconv.Itoa(i))
			if i < size {
				if err = cm.c.nc.PublishMsg(bm); err != nil {
					break
				}
				continue
			}
			bm.Header.Set(hdrBatchCommit, "1")
			resp, err = cm.c.nc.RequestMsgWithContext(ctx, bm)
		}
		if err != nil {
			break
		}
	}
	var ack batchAck
	if err == nil {
		if jerr := json.Unmarshal(resp.Data, &ack); jerr != nil {
			err = fmt.Errorf("atomic batch of %d: bad acknowledgement: %w", size, jerr)
		}
	}
	switch {
	case err == nil && ack.Error != nil:
		if ack.Error.ErrorCode == errCodeAtomicDisabled {
			cm.atomic.Store(false)
		}
		cm.publishEach(ctx, q)
		return
	case err == nil && (ack.Batch != id || ack.Count != size || ack.Seq < uint64(size)):
		err = fmt.Errorf("atomic batch of %d: acknowledged as batch %q of %d at %d", size, ack.Batch, ack.Count, ack.Seq)
	}
	if err != nil {
		// No answer: the batch may or may not have been written, so it is
		// not written again here; each caller learns that it failed.
		err = fmt.Errorf("publish to %s: %w", cm.stream, err)
		for _, r := range q {
			for j := range r.errs {
				r.errs[j] = err
			}
		}
		return
	}
	cm.batches.Add(1)
	seq := ack.Seq - uint64(size) + 1
	for _, r := range q {
		for j := range r.seqs {
			r.seqs[j] = seq
			seq++
		}
	}
}

// publishEach publishes the messages of q one by one, pipelined, and
// waits for every answer.
func (cm *committer) publishEach(ctx context.Context, q []*commitReq) {
	type pending struct {
		r *commitReq
		j int
		f jetstream.PubAckFuture
	}
	var ps []pending
	for _, r := range q {
		for j, m := range r.msgs {
			f, err := cm.c.js.PublishMsgAsync(m)
			if err != nil {
				r.errs[j] = err
				continue
			}
			ps = append(ps, pending{r, j, f})
		}
	}
	cm.singles.Add(uint64(len(ps)))
	for _, p := range ps {
		select {
		case ack := <-p.f.Ok():
			p.r.seqs[p.j] = ack.Sequence
		case err := <-p.f.Err():
			p.r.errs[p.j] = err
		case <-ctx.Done():
			p.r.errs[p.j] = ctx.Err()
		case <-cm.c.closed:
			p.r.errs[p.j] = errConnClosed
		}
	}
}

// KVWrite is one write to a key-value bucket through the group committer.
type KVWrite struct {
	// Key is the entry's key in the bucket.
	Key string
	// Value is the entry's new value.
	Value []byte
	// Revision is the revision the entry must be at: 0 for one that must
	// not exist yet (a create). Ignored by a put.
	Revision uint64
	// Put writes the entry whatever it holds.
	Put bool
}

// WriteKV writes to bucket, through the committer of its stream, so that
// the writes of concurrent callers are synced together. The writes of one
// call go in order and, when the server takes them as one batch, at once.
// It returns each write's revision, or the first failure: a create of an
// existing entry wraps jetstream.ErrKeyExists, an update of an entry at
// another revision jetstream.ErrKeyRevisionMismatch. When a write fails
// the others may still have been written.
func (c *Conn) WriteKV(ctx context.Context, bucket string, writes ...KVWrite) ([]uint64, error) {
	msgs := make([]*nats.Msg, len(writes))
	for i, w := range writes {
		if !validKVKey(w.Key) {
			return nil, fmt.Errorf("write %s: %w: %q", bucket, jetstream.ErrInvalidKey, w.Key)
		}
		m := &nats.Msg{Subject: "$KV." + bucket + "." + w.Key, Data: w.Value, Header: nats.Header{}}
		if !w.Put {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.Revision, 10))
		}
		msgs[i] = m
	}
	cm := c.committer("KV_" + bucket)
	r := cm.enqueue(msgs)
	if err := cm.wait(ctx, r); err != nil {
		return nil, fmt.Errorf("write %s: %w", bucket, err)
	}
	for i, err := range r.errs {
		if err == nil {
			continue
		}
		w := writes[i]
		var apiErr *jetstream.APIError
		if !w.Put && errors.As(err, &apiErr) &&
			(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			if w.Revision == 0 {
				err = fmt.Errorf("%w: %w", jetstream.ErrKeyExists, err)
			} else {
				err = fmt.Errorf("%w: %w", jetstream.ErrKeyRevisionMismatch, err)
			}
		}
		return nil, fmt.Errorf("write %s %s: %w", bucket, w.Key, err)
	}
	return r.seqs, nil
}

// validKVKey reports whether key is a valid key-value key, as nats.go's
// buckets check it.
func validKVKey(key string) bool {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return false
	}
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-' || r == '/' || r == '_' || r == '=' || r == '.':
		default:
			return false
		}
	}
	return true
}
