package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Defaults of HTTP load runs.
const (
	DefaultClients      = 16
	DefaultLoadDuration = 5 * time.Second
	// loadWarmup runs before the first measured window: connections are
	// open and caches warm when it starts.
	loadWarmup = 500 * time.Millisecond
)

// newLoadClient returns an HTTP client that keeps one connection per
// concurrent client alive.
func newLoadClient(clients int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns: clients * 2, MaxIdleConnsPerHost: clients * 2, IdleConnTimeout: time.Minute,
			DisableCompression: true,
		},
	}
}

// httpSpec is an HTTP load of clients concurrent keep-alive clients, each
// sending the request newReq makes for its worker number and call count
// as soon as the previous answer is read. check judges every answer; an
// error from it, or from the transport, stops the run.
func httpSpec(client *http.Client, clients int, what string,
	newReq func(ctx context.Context, worker, i int) (*http.Request, error), check func(status int, body []byte) error) rateSpec {
	return rateSpec{what: what, workers: clients, fn: func(ctx context.Context, worker, i int) error {
		req, err := newReq(ctx, worker, i)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read answer: %w", err)
		}
		return check(resp.StatusCode, body)
	}}
}

// wantStatus returns a check that accepts answers with status want.
func wantStatus(want int) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != want {
			return fmt.Errorf("status %d, want %d: %s", status, want, bytes.TrimSpace(body))
		}
		return nil
	}
}
