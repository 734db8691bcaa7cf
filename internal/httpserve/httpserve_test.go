package httpserve

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServe_Timeouts checks the bounds every Herald HTTP server (the
// sidecar's and the issuer's, which both run Serve) puts on slow clients.
func TestServe_Timeouts(t *testing.T) {
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": readHeaderTimeout, "ReadTimeout": readTimeout,
		"WriteTimeout": writeTimeout, "IdleTimeout": idleTimeout,
	} {
		if d <= 0 || d > 2*time.Minute {
			t.Errorf("%s = %v, want a bound of at most 2m", name, d)
		}
	}
	if readHeaderTimeout > readTimeout {
		t.Errorf("ReadHeaderTimeout %v exceeds ReadTimeout %v", readHeaderTimeout, readTimeout)
	}
	if MaxHeaderBytes <= 0 || MaxHeaderBytes > 64<<10 {
		t.Errorf("MaxHeaderBytes = %d, want at most 64 KiB", MaxHeaderBytes)
	}
}

// TestServe_SlowlorisCutOff trickles a request header one byte at a time,
// as slowloris does, and checks Serve closes the connection once
// readHeaderTimeout has passed instead of waiting for the header's end.
// It takes readHeaderTimeout, so it runs in parallel with the rest.
func TestServe_SlowlorisCutOff(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		}))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, "GET /v1/verify HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		_, _ = io.Copy(io.Discard, conn) // returns when the server closes
	}()
	trickle := time.NewTicker(100 * time.Millisecond)
	defer trickle.Stop()
	limit := time.After(readHeaderTimeout + 5*time.Second)
	for {
		select {
		case <-closed:
			took := time.Since(start)
			t.Logf("cut off after %v (ReadHeaderTimeout %v)", took, readHeaderTimeout)
			if took < readHeaderTimeout/2 {
				t.Errorf("cut off after %v, before ReadHeaderTimeout %v: something else closed it", took, readHeaderTimeout)
			}
			return
		case <-trickle.C:
			if _, err := io.WriteString(conn, "a"); err != nil {
				<-closed
				return
			}
		case <-limit:
			t.Fatalf("still reading a trickled header after %v (ReadHeaderTimeout %v)", time.Since(start), readHeaderTimeout)
		}
	}
}
