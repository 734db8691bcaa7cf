package issuer_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/issuer"
)

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// streamText returns every message of stream, concatenated.
func streamText(t *testing.T, conn *bus.Conn, stream string) string {
	t.Helper()
	ctx := t.Context()
	cons, err := conn.JetStream().OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for n := info.NumPending; n > 0; {
		batch, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			b.Write(m.Data())
			got++
		}
		if got == 0 {
			t.Fatalf("stream %s: %d messages not delivered", stream, n)
		}
		n -= uint64(got)
	}
	return b.String()
}

// TestAttackAudit_NoCredentials: the audit records of a pushed and a
// polled SET keep the raw SETs (on purpose) and who delivered them, but
// neither the push credential's secret nor the poll bearer token appears
// in any stream, bucket entry or log line.
func TestAttackAudit_NoCredentials(t *testing.T) {
	idp := federationtest.NewIdP(t)
	const pollToken = "poll-bearer-token-that-must-stay-secret"
	tr := newPollTransmitter(t, pollToken)
	polled := idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": "polled-user"}, nil)
	jti := tr.add(t, polled)
	s := bustest.RunServer(t)
	logs := &lockedBuffer{}
	trust := []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true, PushCredential: "idp-ssf"}.WithDefaults()}
	conn := bustest.Connect(t, s)
	svc, _ := runIssuerOn(t, conn, issuer.Config{Trust: trust, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		SSFPolls: []issuer.SSFPoll{{URL: tr.URL, Token: pollToken}}})
	secret := credential(t, svc, "idp-ssf", issuer.ScopeSignals)
	pushed := idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": "pushed-user"}, nil)
	if code, body := push(t, svc, secret, "application/secevent+jwt", pushed); code != 202 {
		t.Fatalf("push: %d %s", code, body)
	}
	// A refused push and a wrong credential are logged or audited too.
	push(t, svc, secret, "application/secevent+jwt", "not-a-set")
	push(t, svc, secret+"x", "application/secevent+jwt", pushed)
	bustest.WaitFor(t, 10*time.Second, func() error {
		if n, _ := tr.state(jti); n != 1 {
			return fmt.Errorf("polled SET acknowledged %d times", n)
		}
		return nil
	})

	audit := streamText(t, conn, "HERALD_AUDIT")
	for _, want := range []string{pushed, polled, "idp-ssf", tr.URL} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %.40s...", want)
		}
	}
	var kv strings.Builder
	for _, bucket := range []string{bus.BucketSignals} {
		b, err := conn.JetStream().KeyValue(t.Context(), bucket)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := b.ListKeys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			e, err := b.Get(t.Context(), k)
			if err == nil {
				kv.Write(e.Value())
			}
		}
	}
	for where, text := range map[string]string{
		"HERALD_AUDIT": audit, "HERALD": streamText(t, conn, "HERALD"), bus.BucketSignals: kv.String(), "logs": logs.String(),
	} {
		for name, s := range map[string]string{"push secret": secret, "poll token": pollToken} {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the %s", where, name)
			}
		}
	}
}
