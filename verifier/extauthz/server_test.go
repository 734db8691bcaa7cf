package extauthz_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heraldsec/herald/verifier/extauthz"
	"github.com/heraldsec/herald/verifier/sidecar"
)

func TestNew_Validate(t *testing.T) {
	_, err := extauthz.New(extauthz.Config{MaxRequestSize: 10})
	if err == nil || !strings.Contains(err.Error(), "verifier is required") || !strings.Contains(err.Error(), "below 1 KiB") {
		t.Fatalf("New with no verifier and a 10-byte bound = %v, want both problems named", err)
	}
}

// TestServe_RequestSizeBound: a CheckRequest over the bound is refused
// with RESOURCE_EXHAUSTED, and the server goes on answering.
func TestServe_RequestSizeBound(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	tok, _ := f.token(t, nil)
	big := request{method: "GET", scheme: "https", host: "app.example", path: "/",
		headers: map[string]string{"authorization": "Bearer " + tok, "x-padding": strings.Repeat("a", extauthz.DefaultMaxRequestSize)}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := f.client.Check(ctx, big.checkRequest()); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Check of a request over %d bytes = %v, want RESOURCE_EXHAUSTED", extauthz.DefaultMaxRequestSize, err)
	}
	okAnswer(t, f.check(t, request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}))
}

// TestServe_ConnectionBound: the server serves at most MaxConnections
// connections at once; another waits, unanswered, until one of them
// closes, and is then served.
func TestServe_ConnectionBound(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	addr := serveGRPCWith(t, extauthz.Config{Verifier: f.sc.Verifier(), MaxConnections: 1})
	tok, _ := f.token(t, nil)
	req := request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}.checkRequest()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	okAnswer(t, check(t, authv3.NewAuthorizationClient(cc), req))

	second := dial(t, addr)
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	_, err = second.Check(ctx, req)
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Check on a connection over the bound = %v, want no answer (DEADLINE_EXCEEDED)", err)
	}
	cc.Close()
	okAnswer(t, check(t, second, req))
}

// TestServe_StopsWithContext: Serve returns nil once its context ends,
// after the calls in flight, and the port no longer answers.
func TestServe_StopsWithContext(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	srv, err := extauthz.New(extauthz.Config{Verifier: f.sc.Verifier(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	client := dial(t, ln.Addr().String())
	tok, _ := f.token(t, nil)
	okAnswer(t, check(t, client, request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}.checkRequest()))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after its context ended = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	cctx, ccancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer ccancel()
	_, err = client.Check(cctx, request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}.checkRequest())
	if code := status.Code(err); code != codes.Unavailable && !errors.Is(err, context.DeadlineExceeded) && code != codes.DeadlineExceeded {
		t.Fatalf("Check after the server stopped = %v, want UNAVAILABLE", err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after Serve returned")
	}
}
