package sidecar

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name    string
		headers []string
		want    string
		wantErr *verifier.Error
	}{
		{name: "no header", wantErr: verifier.ErrMissing},
		{name: "basic", headers: []string{"Basic x"}, wantErr: verifier.ErrMissing},
		{name: "scheme only", headers: []string{"Bearer"}, wantErr: verifier.ErrMissing},
		{name: "bearer", headers: []string{"Bearer tok"}, want: "tok"},
		{name: "lowercase scheme", headers: []string{"bearer tok"}, want: "tok"},
		{name: "uppercase scheme", headers: []string{"BEARER tok"}, want: "tok"},
		{name: "extra spaces before token", headers: []string{"Bearer   tok"}, want: "tok"},
		{name: "two headers", headers: []string{"Bearer a", "Bearer b"}, wantErr: verifier.ErrMalformed},
		{name: "two tokens", headers: []string{"Bearer a b"}, wantErr: verifier.ErrMalformed},
		{name: "tab in token", headers: []string{"Bearer a\tb"}, wantErr: verifier.ErrMalformed},
		{name: "empty token", headers: []string{"Bearer "}, wantErr: verifier.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/verify", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := verifier.BearerToken(r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("BearerToken = %q, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("BearerToken = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// get sends a GET to url with an optional bearer token and returns the
// response with its body read.
func get(t *testing.T, url, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, body
}

func TestHandler(t *testing.T) {
	f := newFixture(t)
	now := time.Now()

	t.Run("verify ok", func(t *testing.T) {
		c := baseClaims(now)
		resp, body := get(t, f.sc.URL()+"/v1/verify", f.EdToken(t, c))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
		}
		for h, want := range map[string]any{
			verifier.HeaderSubject: c["sub"], verifier.HeaderSession: c["sid"], verifier.HeaderClient: c["client_id"],
			verifier.HeaderScope: c["scope"], verifier.HeaderTenant: c["tenant"],
		} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", got)
		}
		if got := resp.Header.Get("Content-Type"); got != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", got)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		for _, k := range []string{"iss", "sub", "jti", "client_id", "sid", "scope", "tenant"} {
			if got[k] != c[k] {
				t.Errorf("body %s = %v, want %v", k, got[k], c[k])
			}
		}
		if aud, _ := got["aud"].([]any); len(aud) != 1 || aud[0] != testAudience {
			t.Errorf("body aud = %v, want [%s]", got["aud"], testAudience)
		}
		// iat keeps its milliseconds on the way out.
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatal(err)
		}
		if got, want := string(raw["iat"]), string(mustJSON(t, c["iat"])); got != want {
			t.Errorf("body iat = %s, want %s", got, want)
		}
	})

	t.Run("any method", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.sc.URL()+"/v1/verify", strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer "+f.EdToken(t, baseClaims(now)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST status = %d, want 200", resp.StatusCode)
		}
	})

	t.Run("envoy path prefix", func(t *testing.T) {
		// ext_authz appends the original path to path_prefix /v1/verify.
		resp, body := get(t, f.sc.URL()+"/v1/verify/api/orders?id=1", f.EdToken(t, baseClaims(now)))
		if resp.StatusCode != http.StatusOK || resp.Header.Get(verifier.HeaderSubject) != "alice" {
			t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
		}
	})

	t.Run("expired", func(t *testing.T) {
		c := baseClaims(now.Add(-2 * time.Hour))
		c["exp"] = now.Add(-time.Hour).Unix()
		resp, body := get(t, f.sc.URL()+"/v1/verify", f.EdToken(t, c))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status = %d, want 401; body %s", resp.StatusCode, body)
		}
		wa := resp.Header.Get("WWW-Authenticate")
		for _, want := range []string{"Bearer ", `error="invalid_token"`, `error_description="expired"`} {
			if !strings.Contains(wa, want) {
				t.Errorf("WWW-Authenticate = %q, want it to contain %s", wa, want)
			}
		}
		if resp.Header.Get(verifier.HeaderSubject) != "" {
			t.Errorf("refused request carries %s", verifier.HeaderSubject)
		}
		var e map[string]string
		if err := json.Unmarshal(body, &e); err != nil || e["error"] != "invalid_token" || e["error_description"] != "expired" {
			t.Errorf("body = %s (%v), want invalid_token/expired", body, err)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		resp, body := get(t, f.sc.URL()+"/v1/verify", "a.b")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status = %d, want 401; body %s", resp.StatusCode, body)
		}
		if wa := resp.Header.Get("WWW-Authenticate"); !strings.Contains(wa, `error_description="malformed"`) {
			t.Errorf("WWW-Authenticate = %q, want malformed", wa)
		}
	})

	t.Run("no token", func(t *testing.T) {
		resp, body := get(t, f.sc.URL()+"/v1/verify", "")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status = %d, want 401; body %s", resp.StatusCode, body)
		}
		wa := resp.Header.Get("WWW-Authenticate")
		if !strings.HasPrefix(wa, "Bearer") {
			t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", wa)
		}
		// RFC 6750 section 3.1: no error code when no credential was sent.
		if strings.Contains(wa, "error=") {
			t.Errorf("WWW-Authenticate = %q, want no error code", wa)
		}
	})

	t.Run("healthz", func(t *testing.T) {
		if resp, body := get(t, f.sc.URL()+"/healthz", ""); resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
		}
	})

	t.Run("readyz", func(t *testing.T) {
		resp, body := get(t, f.sc.URL()+"/readyz", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
		}
		var r map[string]any
		if err := json.Unmarshal(body, &r); err != nil || r["ready"] != true {
			t.Fatalf("body = %s (%v), want ready true", body, err)
		}
	})

	t.Run("status", func(t *testing.T) {
		seq := revoke(t, f.conn, f.sc, bus.KindToken, "some-jti", time.Now())
		resp, body := get(t, f.sc.URL()+"/v1/status", "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, body)
		}
		var st map[string]any
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		for _, k := range []string{"applied_seq", "stream_head", "lag", "denylist_size", "connected", "stale", "ready"} {
			if _, ok := st[k]; !ok {
				t.Errorf("status has no %q: %s", k, body)
			}
		}
		want := map[string]any{
			"applied_seq": float64(seq), "stream_head": float64(seq), "lag": float64(0),
			"denylist_size": float64(1), "connected": true, "stale": false, "ready": true,
		}
		for k, w := range want {
			if st[k] != w {
				t.Errorf("status %s = %v, want %v", k, st[k], w)
			}
		}
	})

	t.Run("unknown path", func(t *testing.T) {
		if resp, _ := get(t, f.sc.URL()+"/nope", ""); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status = %d, want 404", resp.StatusCode)
		}
	})
}

// TestHandler_NotReady starts a sidecar on a NATS server without Herald's
// stream and bucket: it gives no verdicts until they exist.
func TestHandler_NotReady(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Connect(t, s)
	k := newTestKeys(t)
	sc, _ := startSidecar(t, conn, t.TempDir())
	tok := k.EdToken(t, baseClaims(time.Now()))

	// Wait until the follower has tried and failed to find the stream.
	bustest.WaitFor(t, 5*time.Second, func() error {
		if sc.Status().LastError == "" {
			return errors.New("follower has not tried yet")
		}
		return nil
	})
	if st := sc.Status(); st.Ready || st.CaughtUp || st.KeysLoaded {
		t.Fatalf("status = %+v, want not ready", st)
	}
	resp, body := get(t, sc.URL()+"/v1/verify", tok)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("verify status = %d, want 503; body %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Retry-After"); got == "" {
		t.Error("503 without Retry-After")
	}
	if resp, body := get(t, sc.URL()+"/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz status = %d, want 503; body %s", resp.StatusCode, body)
	}
	if resp, body := get(t, sc.URL()+"/healthz", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz status = %d, want 200; body %s", resp.StatusCode, body)
	}
	if _, err := sc.Verifier().Verify(t.Context(), tok); !errors.Is(err, verifier.ErrNotReady) {
		t.Fatalf("Verify = %v, want verifier.ErrNotReady", err)
	}

	admin := bustest.Setup(t, s, 20*time.Minute)
	publishKey(t, admin, k.EdKid, k.EdJWK)
	waitReady(t, sc)
	bustest.WaitFor(t, 5*time.Second, func() error {
		if _, ok := sc.keys.Get(k.EdKid); !ok {
			return errors.New("key not loaded yet")
		}
		return nil
	})
	resp, body = get(t, sc.URL()+"/v1/verify", tok)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("verify status after setup = %d, want 200; body %s", resp.StatusCode, body)
	}
	if resp, body := get(t, sc.URL()+"/readyz", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz status after setup = %d, want 200; body %s", resp.StatusCode, body)
	}
}
