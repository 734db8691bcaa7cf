package issuer

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
)

// openEvents opens GET /v1/events with token and returns the response
// once the stream's first line is read.
func openEvents(t *testing.T, ctx context.Context, svc *Service, token string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", svc.URL()+"/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, ": herald events") {
		t.Fatalf("first line %q, %v", line, err)
	}
	return br
}

// waitEnd reads the stream until the server ends it, and fails t if it
// has not within limit.
func waitEnd(t *testing.T, ctx context.Context, br *bufio.Reader, limit time.Duration) {
	t.Helper()
	start := time.Now()
	_, err := io.Copy(io.Discard, br)
	switch {
	case ctx.Err() != nil:
		t.Fatalf("the stream still runs %v later", time.Since(start))
	case err != nil && !errors.Is(err, io.EOF):
		t.Fatalf("stream: %v", err)
	case time.Since(start) > limit:
		t.Fatalf("the stream ended after %v, want within %v", time.Since(start), limit)
	}
}

// TestEvents_StreamEndsWithItsCredential opens the event stream with a
// read credential, then deletes it, rotates it, or starts a stream with
// one and lets it reach the maximum stream lifetime: each stream ends
// promptly.
func TestEvents_StreamEndsWithItsCredential(t *testing.T) {
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), nil)
	for _, end := range []string{"delete", "rotate"} {
		t.Run(end, func(t *testing.T) {
			cred, err := svc.CreateCredential(t.Context(), CredentialRequest{Name: "reader-" + end, Scopes: []string{ScopeRead}}, "test", "test")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			br := openEvents(t, ctx, svc, cred.Token)
			if end == "delete" {
				err = svc.DeleteCredential(t.Context(), cred.Name, "test", "test")
			} else {
				_, err = svc.RotateCredential(t.Context(), cred.Name, "test", "test")
			}
			if err != nil {
				t.Fatal(err)
			}
			waitEnd(t, ctx, br, 5*time.Second)
		})
	}
	t.Run("max age", func(t *testing.T) {
		short, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), func(s *Service) {
			s.cfg.EventStreamMaxAge = 200 * time.Millisecond
		})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		waitEnd(t, ctx, openEvents(t, ctx, short, fuzzAdminToken), 5*time.Second)
	})
}
