package issuer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEvents_RefusedEventsCountedAndLogged publishes forged events (signed
// by a key nobody trusts) and reads the event feed: the feed leaves them
// out, and counts (herald.events.refused) and logs them.
func TestEvents_RefusedEventsCountedAndLogged(t *testing.T) {
	s := bustest.RunServer(t)
	reader := sdkmetric.NewManualReader()
	var logs syncBuffer
	svc, err := Open(t.Context(), Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: fuzzAdminToken,
		EventKeyFile: bustest.EventKeyFile(t), ClientSecretCost: 4,
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		Logger:        slog.New(slog.NewTextHandler(&logs, nil))}, bustest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; svc.Close() })

	now := time.Now()
	forged := func(v string) *bus.Event {
		return &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "admin",
			Revocation: &bus.Revocation{Kind: bus.KindToken, Value: v, At: now, Until: now.Add(time.Minute)}}
	}
	if _, err := bustest.ForeignConn(t, s).PublishAll(t.Context(), forged("forged-1"), forged("forged-2")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Revoke(t.Context(), RevocationRequest{Kind: "token", Value: "honest-jti"}, "test", "test"); err != nil {
		t.Fatal(err)
	}
	code, _, body := do(t, http.DefaultClient, "GET", svc.URL()+"/v1/events?from=start&follow=false&type=revocation", fuzzAdminToken, "", nil)
	if code != 200 || strings.Contains(string(body), "forged") || !strings.Contains(string(body), "honest-jti") {
		t.Fatalf("events: %d %s; want the honest revocation only", code, body)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	var refused int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "herald.events.refused" {
				for _, dp := range sum.DataPoints {
					refused += dp.Value
				}
			}
		}
	}
	if refused != 2 {
		t.Errorf("herald.events.refused = %d, want 2", refused)
	}
	if got := logs.String(); !strings.Contains(got, "event feed: event refused") {
		t.Errorf("no log line of the refused events in:\n%s", got)
	}
}

// TestOAuth_RevokeForeignTokenLogged: RFC 7009 revocation of a token this
// issuer did not sign is 200, revokes nothing, and is logged without the
// token.
func TestOAuth_RevokeForeignTokenLogged(t *testing.T) {
	var logs syncBuffer
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), func(s *Service) {
		s.log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	const foreign = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImZvcmVpZ24ifQ.eyJzdWIiOiJ4In0.c2ln"
	bustest.WaitFor(t, 5*time.Second, func() error { // 503 until the issuer has caught up with the stream
		code, _, body := do(t, http.DefaultClient, "POST", svc.URL()+"/oauth2/revoke", "", "application/x-www-form-urlencoded",
			strings.NewReader("token="+foreign))
		if code != http.StatusOK {
			return fmt.Errorf("revoke a foreign token: %d %s, want 200", code, body)
		}
		return nil
	})
	got := logs.String()
	if !strings.Contains(got, "token revocation: nothing revoked") || strings.Contains(got, foreign) {
		t.Fatalf("want a log line of the revocation that did nothing, without the token, in:\n%s", got)
	}
	if res, err := svc.ListRevocations(t.Context(), listFilter{limit: 10}); err != nil || len(res) > 0 {
		t.Fatalf("revocations after a foreign token's: %v %v, want none", res, err)
	}
}
