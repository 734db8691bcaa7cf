package extauthz_test

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// sameVerdict fails the test unless the gRPC answer resp and the HTTP
// answer of /v1/verify about the same request agree: status (OK is 200),
// WWW-Authenticate, Retry-After, Cache-Control, the body of a refusal,
// and the identity headers of an admission (an empty one on /v1/verify is
// one removed over gRPC).
func sameVerdict(t *testing.T, grpcResp answer, h *http.Response, hbody string) {
	t.Helper()
	if grpcResp.ok != nil {
		if h.StatusCode != http.StatusOK {
			t.Fatalf("gRPC admits, /v1/verify answers %d %s", h.StatusCode, hbody)
		}
		for _, name := range append(identityHeaders, verifier.HeaderStale) {
			want := h.Header.Get(name)
			got, set := grpcResp.ok.set[strings.ToLower(name)]
			removed := false
			for _, r := range grpcResp.ok.remove {
				removed = removed || r == strings.ToLower(name)
			}
			switch {
			case want != "" && (!set || got != want):
				t.Errorf("%s: gRPC sets %q, /v1/verify %q", name, got, want)
			case want == "" && (set || !removed):
				t.Errorf("%s: /v1/verify has none, gRPC sets %q (removed: %v)", name, got, removed)
			}
		}
		return
	}
	d := grpcResp.denied
	if d.status != h.StatusCode {
		t.Fatalf("gRPC denies with %d (%s), /v1/verify answers %d %s", d.status, d.code, h.StatusCode, hbody)
	}
	wantCode := codes.Unauthenticated
	if h.StatusCode == http.StatusServiceUnavailable {
		wantCode = codes.Unavailable
	}
	if d.code != wantCode {
		t.Errorf("gRPC status %s for a %d, want %s", d.code, d.status, wantCode)
	}
	for _, name := range []string{"WWW-Authenticate", "Retry-After", "Cache-Control", "Content-Type"} {
		if got, want := d.headers.Get(name), h.Header.Get(name); got != want {
			t.Errorf("%s: gRPC %q, /v1/verify %q", name, got, want)
		}
	}
	if d.body != hbody {
		t.Errorf("body: gRPC %q, /v1/verify %q", d.body, hbody)
	}
}

var identityHeaders = []string{verifier.HeaderIssuer, verifier.HeaderSubject, verifier.HeaderSession,
	verifier.HeaderClient, verifier.HeaderScope, verifier.HeaderTenant}

// answer is a gRPC answer, one of the two.
type answer struct {
	ok     *upstream
	denied *refusal
}

// ask sends the request r to both front ends of f and compares their
// verdicts.
func (f *fixture) ask(t *testing.T, r func(t *testing.T) request) {
	t.Helper()
	resp := f.check(t, r(t))
	var a answer
	if resp.GetOkResponse() != nil {
		u := okAnswer(t, resp)
		a.ok = &u
	} else {
		d := deniedAnswer(t, resp)
		a.denied = &d
	}
	h, body := f.verifyHTTP(t, r(t))
	sameVerdict(t, a, h, body)
}

// TestCheck_SameVerdictsAsHTTP asks the gRPC Check and /v1/verify about the
// same requests and compares their answers: every verdict, identity
// header and refusal matches.
func TestCheck_SameVerdictsAsHTTP(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	k := verifiertest.NewDPoPKey(t)
	now := time.Now().Add(-time.Second)
	claims := func(edit func(c map[string]any)) map[string]any {
		c := verifiertest.BaseClaims(now)
		if edit != nil {
			edit(c)
		}
		return c
	}
	revoked := claims(nil)
	f.revoke(t, bus.KindToken, revoked["jti"].(string))
	bound := f.EdToken(t, claims(func(c map[string]any) { c["cnf"] = map[string]string{"jkt": k.JKT} }))
	get := func(headers map[string]string) func(*testing.T) request {
		return func(*testing.T) request {
			return request{method: "GET", scheme: "https", host: "app.example", path: "/orders/7?x=1", headers: headers}
		}
	}
	dpop := func(method, url string) func(*testing.T) request {
		return func(t *testing.T) request {
			return request{method: "PUT", scheme: "https", host: "app.example", path: "/orders/7?x=1",
				headers: map[string]string{"authorization": "DPoP " + bound, "dpop": k.Proof(t, method, url, bound, nil)}}
		}
	}
	for name, r := range map[string]func(*testing.T) request{
		"valid EdDSA":          get(bearer(f.EdToken(t, claims(nil)))),
		"valid ES256":          get(bearer(f.EsToken(t, claims(nil)))),
		"no tenant nor scope":  get(bearer(f.EdToken(t, claims(func(c map[string]any) { delete(c, "tenant"); delete(c, "scope") })))),
		"lower-case scheme":    get(map[string]string{"authorization": "bearer " + f.EdToken(t, claims(nil))}),
		"revoked":              get(bearer(f.EdToken(t, revoked))),
		"expired":              get(bearer(f.EdToken(t, claims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })))),
		"wrong audience":       get(bearer(f.EdToken(t, claims(func(c map[string]any) { c["aud"] = "someone-else" })))),
		"wrong issuer":         get(bearer(f.EdToken(t, claims(func(c map[string]any) { c["iss"] = "https://evil.example" })))),
		"unknown key":          get(bearer(verifiertest.NewKeys(t).EdToken(t, claims(nil)))),
		"malformed":            get(bearer("a.b.c")),
		"no token":             get(nil),
		"basic credentials":    get(map[string]string{"authorization": "Basic YTpi"}),
		"bound, bearer scheme": get(bearer(bound)),
		"bound, good proof":    dpop("PUT", "https://app.example/orders/7"),
		"bound, wrong method":  dpop("GET", "https://app.example/orders/7"),
		"bound, wrong URL":     dpop("PUT", "https://app.example/orders/8"),
		"bound, no proof":      get(map[string]string{"authorization": "DPoP " + bound}),
		"spoofed identity":     get(map[string]string{"authorization": "Bearer " + f.EdToken(t, claims(nil)), "x-herald-subject": "mallory"}),
	} {
		t.Run(name, func(t *testing.T) { f.ask(t, r) })
	}
}

// restartable is a real NATS server a test stops and starts again on the
// same port and store.
type restartable struct{ dir, addr string }

func newRestartable(t *testing.T) *restartable {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &restartable{dir: filepath.Join(t.TempDir(), "nats"), addr: addr}
}

// TestCheck_StalePolicy cuts the sidecar off from the bus by stopping the
// real NATS server: with on-stale deny Check gives no verdict (UNAVAILABLE,
// 503 with Retry-After), with on-stale allow it admits from the last state,
// marked stale in a header and the metadata; /v1/verify answers the same.
func TestCheck_StalePolicy(t *testing.T) {
	for _, policy := range []string{sidecar.StaleDeny, sidecar.StaleAllow} {
		t.Run(policy, func(t *testing.T) {
			ns := newRestartable(t)
			srv := bustest.RunServerIn(t, ns.dir, ns.addr)
			f := newFixtureOn(t, srv, sidecar.Config{MaxStaleness: 500 * time.Millisecond, OnStale: policy})
			tok, _ := f.token(t, nil)
			r := func(*testing.T) request {
				return request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}
			}
			if resp := f.check(t, r(t)); resp.GetDynamicMetadata().GetFields()["stale"].GetBoolValue() {
				t.Fatal("stale before the bus is gone")
			}

			srv.Shutdown()
			bustest.WaitFor(t, 10*time.Second, func() error {
				if st := f.sc.Status(); !st.Stale || st.Verdicts != (policy == sidecar.StaleAllow) {
					return fmt.Errorf("not stale yet: %+v", st)
				}
				return nil
			})
			resp := f.check(t, r(t))
			switch policy {
			case sidecar.StaleDeny:
				d := deniedAnswer(t, resp)
				if d.code != codes.Unavailable || d.status != http.StatusServiceUnavailable || d.headers.Get("retry-after") == "" {
					t.Fatalf("stale, deny: %s %d retry-after %q, want UNAVAILABLE 503 with Retry-After", d.code, d.status, d.headers.Get("retry-after"))
				}
			case sidecar.StaleAllow:
				u := okAnswer(t, resp)
				if u.set["x-herald-stale"] != "true" || !resp.GetDynamicMetadata().GetFields()["stale"].GetBoolValue() {
					t.Fatalf("stale, allow: headers %v, metadata %v; want x-herald-stale true and stale metadata", u.set, resp.GetDynamicMetadata())
				}
			}
			f.ask(t, r)

			// The bus comes back: fresh verdicts again.
			bustest.RunServerIn(t, ns.dir, ns.addr)
			waitReady(t, f.sc)
			if u := okAnswer(t, f.check(t, r(t))); u.set["x-herald-stale"] != "" {
				t.Fatalf("after recovery still marked stale: %v", u.set)
			}
		})
	}
}
