package issuer_test

import (
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// TestTrace_OneRevocationOneTrace: the trace context of the admin call
// travels in the NATS headers, so every verifier's apply span belongs to
// the trace of the call that revoked.
func TestTrace_OneRevocationOneTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })

	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	var scs []*sidecar.Sidecar
	for range 2 {
		sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
		scs = append(scs, sc)
	}
	waitReady(t, scs...)

	ctx, call := tp.Tracer("test").Start(t.Context(), "admin call")
	res, err := svc.Revoke(ctx, issuer.RevocationRequest{Kind: "session", Value: "traced"}, "test", "test")
	call.End()
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scs {
		if err := sc.WaitApplied(t.Context(), res.Seq); err != nil {
			t.Fatal(err)
		}
	}
	want := call.SpanContext().TraceID()
	bustest.WaitFor(t, 5*time.Second, func() error {
		applies, revokes := 0, 0
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID() != want {
				continue
			}
			switch sp.Name() {
			case "herald.verifier.apply":
				applies++
			case "herald.issuer.Revoke":
				revokes++
			}
		}
		if revokes != 1 || applies < len(scs) {
			return fmt.Errorf("trace %s has %d issuer spans and %d verifier apply spans, want 1 and %d", want, revokes, applies, len(scs))
		}
		return nil
	})
}
