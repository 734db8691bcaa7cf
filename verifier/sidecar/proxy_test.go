package sidecar

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/verifier"
)

// echoUpstream answers /echo with the headers it received as JSON, streams
// Server-Sent Events on /events until the request ends, and switches
// /ws to an echoing upgraded connection, as a WebSocket server would.
type echoUpstream struct {
	calls atomic.Int64
}

func (u *echoUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.calls.Add(1)
	switch r.URL.Path {
	case "/events":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := 0; ; i++ {
			fmt.Fprintf(w, "data: tick %d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond): // a live feed, not test synchronisation
			}
		}
	case "/ws":
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw) // echo until the proxy closes
	default:
		httpserve.WriteJSON(w, http.StatusOK, map[string]any{"path": r.URL.Path, "host": r.Host, "headers": r.Header})
	}
}

// newProxyFixture is a fixture whose sidecar proxies to an echoUpstream.
func newProxyFixture(t *testing.T) (*fixture, *echoUpstream) {
	t.Helper()
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	f := &fixture{testKeys: newTestKeys(t), srv: s, conn: conn, dir: t.TempDir()}
	publishKey(t, conn, f.EdKid, f.EdJWK)
	publishKey(t, conn, f.EsKid, f.EsJWK)
	up := &echoUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	f.sc, f.stop = startSidecarWith(t, conn, Config{DataDir: f.dir, Upstream: srv.URL})
	waitReady(t, f.sc)
	return f, up
}

func TestProxy_Forward(t *testing.T) {
	f, up := newProxyFixture(t)
	c := baseClaims(time.Now())
	tok := f.EdToken(t, c)

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, f.sc.URL()+"/echo?x=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Herald-Subject", "mallory")
	req.Header.Set("X-Herald-Issuer", "https://evil.test")
	req.Header.Set("x-herald-tenant", "evil")
	req.Header["X_Herald_Scope"] = []string{"admin"}
	req.Header.Set("X-Herald-Extra", "forged")
	req.Header.Set("X-Other", "kept")
	req.Host = "app.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Path    string
		Host    string
		Headers http.Header
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
		t.Fatalf("proxied GET = %d, %v", resp.StatusCode, err)
	}
	want := map[string]string{
		verifier.HeaderIssuer: testIssuer, verifier.HeaderSubject: "alice", verifier.HeaderTenant: "acme", verifier.HeaderScope: "read write",
		verifier.HeaderSession: c["sid"].(string), verifier.HeaderClient: "web", "X-Other": "kept",
		"Authorization": "Bearer " + tok, "X-Forwarded-Host": "app.example",
	}
	for k, w := range want {
		if v := got.Headers.Values(k); len(v) != 1 || v[0] != w {
			t.Errorf("upstream %s = %q, want [%q]", k, v, w)
		}
	}
	for k := range got.Headers {
		if strings.HasPrefix(strings.ReplaceAll(strings.ToLower(k), "_", "-"), "x-herald-") && got.Headers.Get(k) != want[k] {
			t.Errorf("client header %s = %q reached the upstream", k, got.Headers.Get(k))
		}
	}
	if got.Host != "app.example" || got.Path != "/echo" {
		t.Errorf("upstream saw host %q path %q", got.Host, got.Path)
	}

	t.Run("refused", func(t *testing.T) {
		before := up.calls.Load()
		for _, tok := range []string{"", "a.b.c", f.EdToken(t, func() map[string]any {
			c := baseClaims(time.Now())
			c["aud"] = "other"
			return c
		}())} {
			resp, body := get(t, f.sc.URL()+"/echo", tok)
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("token %q: status %d %s, want 401 with a challenge", truncate(tok, 10), resp.StatusCode, body)
			}
		}
		if up.calls.Load() != before {
			t.Fatal("a refused request reached the upstream")
		}
	})

	// The sidecar's own endpoints: TestProxy_OwnEndpointsOffTheAppListener.
}

func TestProxy_UpstreamDown(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), Upstream: dead})
	waitReady(t, sc)
	if resp, body := get(t, sc.URL()+"/x", k.EdToken(t, baseClaims(time.Now()))); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status = %d %s, want 502", resp.StatusCode, body)
	}
}

// TestProxy_LongLivedRevoked opens streams through the proxy and revokes
// their tokens: each stream must end, while a stream whose token the
// revocation does not match goes on.
func TestProxy_LongLivedRevoked(t *testing.T) {
	f, _ := newProxyFixture(t)
	now := time.Now().Add(-time.Second)

	t.Run("SSE by session", func(t *testing.T) {
		c := baseClaims(now)
		other := baseClaims(now)
		events := openSSE(t, f.sc.URL()+"/events", f.EdToken(t, c))
		otherEvents := openSSE(t, f.sc.URL()+"/events", f.EdToken(t, other))
		waitLive(t, f.sc, 2)
		revoke(t, f.conn, f.sc, bus.KindSession, c["sid"].(string), time.Now())
		waitClosed(t, events)
		// The other session's stream is still delivering.
		if _, err := otherEvents.ReadString('\n'); err != nil {
			t.Fatalf("unrevoked stream ended: %v", err)
		}
	})

	t.Run("upgrade by subject", func(t *testing.T) {
		c := baseClaims(now)
		c["sub"] = "ws-user"
		conn, br := openUpgrade(t, f.sc.Addr().String(), f.EdToken(t, c))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("echo = %q, %v", line, err)
		}
		revoke(t, f.conn, f.sc, bus.KindSubject, "ws-user", time.Now())
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadString('\n'); !errors.Is(err, io.EOF) {
			t.Fatalf("read after revocation: %v, want EOF (connection closed)", err)
		}
	})

	t.Run("SSE by key", func(t *testing.T) {
		c := baseClaims(now)
		events := openSSE(t, f.sc.URL()+"/events", f.EsToken(t, c))
		revoke(t, f.conn, f.sc, bus.KindKey, f.EsKid, time.Now())
		waitClosed(t, events)
	})

	if got := f.sc.live.Ended(); got != 3 {
		t.Errorf("requests ended by revocation = %d, want 3", got)
	}
}

func waitLive(t *testing.T, sc *Sidecar, n int) {
	t.Helper()
	bustest.WaitFor(t, 5*time.Second, func() error {
		if got := sc.live.Len(); got < n {
			return fmt.Errorf("%d requests tracked, want %d", got, n)
		}
		return nil
	})
}

// openSSE opens an event stream with token and returns it once the first
// event has arrived. The stream is closed when the test ends.
func openSSE(t *testing.T, url, token string) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: tick") {
		t.Fatalf("first event = %q, %v", line, err)
	}
	return br
}

// waitClosed reads the stream until it ends, and fails if it does not end
// within five seconds.
func waitClosed(t *testing.T, br *bufio.Reader) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		done <- err
	}()
	select {
	case <-done: // EOF or an aborted chunked body: either way the stream ended
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open 5s after the revocation was applied")
	}
}

// openUpgrade opens an upgraded (WebSocket-like) connection through the
// proxy at addr.
func openUpgrade(t *testing.T, addr, token string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", token)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade = %d, want 101", resp.StatusCode)
	}
	return conn, br
}

// TestProxy_ShutdownEndsStreams: stopping the sidecar ends the streams and
// upgraded connections it proxies, so it stops at once.
func TestProxy_ShutdownEndsStreams(t *testing.T) {
	f, _ := newProxyFixture(t)
	events := openSSE(t, f.sc.URL()+"/events", f.EdToken(t, baseClaims(time.Now())))
	conn, br := openUpgrade(t, f.sc.Addr().String(), f.EdToken(t, baseClaims(time.Now())))
	waitLive(t, f.sc, 2)
	stopped := make(chan struct{})
	go func() { f.stop(); close(stopped) }()
	waitClosed(t, events)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("upgraded connection after shutdown: %v, want EOF", err)
	}
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("sidecar still stopping after 5s with streams open")
	}
}
