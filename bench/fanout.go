package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// Raw fan-out: the floor Herald's propagation is compared with. The same
// JetStream server (every write synced, as Herald runs it) carries a plain
// stream read by as many plain ordered consumers as there are verifiers,
// in the same kind of process as the verifiers. In procs mode a consumer
// is a child process that writes a line per message; the bench takes the
// time the line arrives.
const (
	fanoutStream  = "BENCH_FANOUT"
	fanoutSubject = "bench.fanout"
)

// FanoutConsumer is the name of the hidden `herald bench` subcommand that
// runs RunFanoutConsumer in a child process.
const FanoutConsumer = "fanout-consumer"

// fanoutReady matches the line a fan-out consumer writes once it consumes.
var fanoutReady = regexp.MustCompile(`^ready$`)

// RunFanoutConsumer is the child process of the raw fan-out floor in procs
// mode: it reads a stream with a plain ordered consumer and writes, for
// every message, its stream sequence and the wall-clock time it arrived
// (Unix nanoseconds) as one line on stdout, after a first line "ready". It
// runs until ctx ends. args are --nats URL and --stream NAME.
func RunFanoutConsumer(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(FanoutConsumer, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	natsURL := fs.String("nats", "", "NATS URL")
	stream := fs.String("stream", fanoutStream, "stream to read")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s: %w", FanoutConsumer, err)
	}
	conn, err := bus.Connect(ctx, bus.Config{URL: *natsURL, Name: "bench-fanout-consumer", Logger: quietLogger()})
	if err != nil {
		return err
	}
	defer conn.Close()
	var werr error
	stop, err := conn.Follow(ctx, *stream, 0, func(d bus.Delivery) {
		now := time.Now().UnixNano()
		if werr == nil {
			_, werr = fmt.Fprintf(stdout, "%d %d\n", d.Seq, now)
		}
	})
	if err != nil {
		return err
	}
	defer stop()
	if _, err := fmt.Fprintln(stdout, "ready"); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// fanout is the raw floor's publisher and its consumers, in this process or
// in child processes. Each message is published once the previous one has
// reached every consumer, as the revocations Herald is measured with are,
// and in turn with them.
type fanout struct {
	conn    *bus.Conn
	payload []byte
	n       int // consumers

	mu            sync.Mutex
	called, acked []time.Time   // per message, when its publish was called and acknowledged
	received      [][]time.Time // [consumer][seq-1]
	arrived       chan struct{} // one value per message and consumer

	stops    []func()
	children []*child

	closeOnce sync.Once
	closeErr  error
}

// startFanout creates the raw stream on c's server and starts n consumers
// of it, in child processes when cmd is not nil, and waits until they
// consume. Close stops them.
func startFanout(ctx context.Context, c *core, n, messages int, cmd *Command, p *Progress) (_ *fanout, err error) {
	f := &fanout{n: n, received: make([][]time.Time, n), arrived: make(chan struct{}, n*messages)}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if f.conn, err = c.connect(ctx, "bench-fanout"); err != nil {
		return nil, err
	}
	_, err = f.conn.JetStream().CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: fanoutStream, Subjects: []string{fanoutSubject}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("create raw fan-out stream: %w", err)
	}
	// The payload is a real revocation event, as large as Herald's.
	now := time.Now()
	f.payload, err = bus.Encode(&bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "bench",
		Revocation: &bus.Revocation{Kind: bus.KindSession, Value: strings.Repeat("0", 32), Reason: "bench", At: now, Until: now.Add(time.Hour)}})
	if err != nil {
		return nil, err
	}
	for v := range f.received {
		f.received[v] = make([]time.Time, messages)
	}
	record := func(v int, seq uint64, at time.Time) {
		if seq == 0 || seq > uint64(messages) {
			return
		}
		f.mu.Lock()
		f.received[v][seq-1] = at
		f.mu.Unlock()
		f.arrived <- struct{}{}
	}
	if cmd == nil {
		for v := range n {
			cc, err := c.connect(ctx, fmt.Sprintf("bench-fanout-%d", v))
			if err != nil {
				return nil, err
			}
			stop, err := cc.Follow(ctx, fanoutStream, 0, func(d bus.Delivery) { record(v, d.Seq, time.Now()) })
			if err != nil {
				cc.Close()
				return nil, err
			}
			f.stops = append(f.stops, func() { stop(); cc.Close() })
		}
		return f, nil
	}
	f.children = make([]*child, n)
	err = startChildren(ctx, n, p, "raw consumers", func(v int) (*child, error) {
		ch, err := cmd.start(childSpec{
			name:  fmt.Sprintf("fanout-consumer-%d", v),
			args:  []string{"bench", FanoutConsumer, "--nats", c.natsURL(), "--stream", fanoutStream},
			ready: fanoutReady,
			// The bench takes the time when the consumer's line arrives,
			// as it does when a verifier process cuts its held request:
			// both include the hop from the child to the bench.
			stdout: func(line string) {
				if seq, _, ok := parseArrival(line); ok {
					record(v, seq, time.Now())
				}
			},
		})
		if err != nil {
			return nil, err
		}
		f.children[v] = ch
		_, err = ch.waitReady(ctx, time.Minute)
		return ch, err
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// parseArrival parses a fan-out consumer's line "seq unixnano".
func parseArrival(line string) (seq uint64, at time.Time, ok bool) {
	s, ns, found := strings.Cut(line, " ")
	if !found {
		return 0, time.Time{}, false
	}
	seq, err1 := strconv.ParseUint(s, 10, 64)
	n, err2 := strconv.ParseInt(ns, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, time.Time{}, false
	}
	return seq, time.Unix(0, n), true
}

// publish publishes message i (0-based; the i-th publish) and returns once
// every consumer has received it.
func (f *fanout) publish(ctx context.Context, i int, timeout time.Duration) error {
	called := time.Now()
	if _, err := f.conn.JetStream().Publish(ctx, fanoutSubject, f.payload); err != nil {
		return fmt.Errorf("raw fan-out publish %d: %w", i, err)
	}
	acked := time.Now()
	f.mu.Lock()
	f.called, f.acked = append(f.called, called), append(f.acked, acked)
	f.mu.Unlock()
	if err := awaitN(ctx, f.arrived, f.n, timeout); err != nil {
		return fmt.Errorf("raw fan-out message %d: %w", i, err)
	}
	return nil
}

// results returns the latencies from each publish call and from each
// acknowledgement to each consumer's receipt, and the durations of the
// publish calls.
func (f *fanout) results() (fromCall, fromAck, calls []time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	calls = make([]time.Duration, len(f.called))
	for i := range calls {
		calls[i] = f.acked[i].Sub(f.called[i])
	}
	got := make([][]time.Time, len(f.received))
	for v, r := range f.received {
		got[v] = r[:len(f.called)]
	}
	return latencies(f.called, got), latencies(f.acked, got), calls
}

// Close stops the consumers and closes the publisher's connection. It is
// safe to call more than once.
func (f *fanout) Close() error {
	f.closeOnce.Do(func() {
		for _, stop := range f.stops {
			stop()
		}
		f.closeErr = stopAll(f.children)
		if f.conn != nil {
			f.conn.Close()
		}
	})
	return f.closeErr
}

// awaitN receives n values from ch, or fails when ctx ends or timeout passes.
func awaitN(ctx context.Context, ch <-chan struct{}, n int, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for got := 0; got < n; got++ {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return fmt.Errorf("%d of %d receivers within %s", got, n, timeout)
		}
	}
	return nil
}

// startChildren runs start for 0..n-1 with a few at a time, so that a
// fleet of processes starting on a small machine does not time itself out.
func startChildren(ctx context.Context, n int, p *Progress, what string, start func(i int) (*child, error)) error {
	const parallel = 4
	sem := make(chan struct{}, parallel)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		done int
	)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := start(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			done++
			p.Step(what+" started", done, n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// latencies returns, for every event i and receiver v, how long after
// from[i] receiver v got it; a receiver that got it earlier counts as zero.
func latencies(from []time.Time, got [][]time.Time) []time.Duration {
	out := make([]time.Duration, 0, len(from)*len(got))
	for _, g := range got {
		for i, t := range g {
			out = append(out, max(0, t.Sub(from[i])))
		}
	}
	return out
}
