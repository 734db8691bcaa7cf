package sidecar

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/verifier"
)

// reparsingUpstream accepts any upgrade and then keeps reading HTTP
// requests on the upgraded connection, as an h2c-capable or careless
// backend does, answering each with the subject header it carried.
type reparsingUpstream struct {
	mu       sync.Mutex
	subjects []string // X-Herald-Subject of every request it read
}

func (u *reparsingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.record(r)
	if r.Header.Get("Upgrade") == "" {
		httpserve.WriteJSON(w, http.StatusOK, map[string]string{"subject": r.Header.Get(verifier.HeaderSubject)})
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", r.Header.Get("Upgrade"))
	brw.Flush()
	for {
		req, err := http.ReadRequest(brw.Reader)
		if err != nil {
			return
		}
		u.record(req)
		body := fmt.Sprintf("subject=%s\n", req.Header.Get(verifier.HeaderSubject))
		fmt.Fprintf(brw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		brw.Flush()
	}
}

func (u *reparsingUpstream) record(r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.subjects = append(u.subjects, r.Header.Get(verifier.HeaderSubject))
}

func (u *reparsingUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.subjects...)
}

// TestProxy_OnlyWebSocketUpgrades: proxy mode tunnels WebSocket upgrades
// only. An upgrade to any other protocol is refused with 400 before it
// reaches the upstream, so a backend that keeps parsing HTTP on an
// upgraded connection never reads requests the verifier did not check.
func TestProxy_OnlyWebSocketUpgrades(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	k := newTestKeys(t)
	publishKey(t, conn, k.EdKid, k.EdJWK)
	up := &reparsingUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	sc, _ := startSidecarWith(t, conn, Config{DataDir: t.TempDir(), Upstream: srv.URL})
	waitReady(t, sc)
	tok := k.EdToken(t, baseClaims(time.Now()))

	for _, proto := range []string{"h2c", "herald-test", "websocket, h2c", "TLS/1.0"} {
		t.Run(proto, func(t *testing.T) {
			before := len(up.seen())
			c, err := net.Dial("tcp", sc.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET /up HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", tok, proto)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// What the tunnel lets through: a request nobody checked.
				fmt.Fprintf(c, "GET /admin HTTP/1.1\r\nHost: app\r\nX-Herald-Subject: admin\r\n\r\n")
				inner, err := http.ReadResponse(br, nil)
				if err == nil {
					inner.Body.Close()
				}
				t.Fatalf("upgrade to %q tunnelled (101); the upstream then read requests with subjects %q", proto, up.seen()[before:])
			}
			if resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("upgrade to %q = %d, want 400", proto, resp.StatusCode)
			}
			if got := up.seen()[before:]; len(got) != 0 {
				t.Fatalf("a refused upgrade reached the upstream: %q", got)
			}
		})
	}

	t.Run("websocket", func(t *testing.T) {
		c, err := net.Dial("tcp", sc.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer %s\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\r\n", tok)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
			t.Fatalf("websocket upgrade = %d %q, want 101", resp.StatusCode, resp.Header.Get("Upgrade"))
		}
	})
}
