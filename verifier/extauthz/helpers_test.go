package extauthz_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/extauthz"
	"github.com/heraldsec/herald/verifier/sidecar"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// fixture is a real embedded NATS with Herald's streams and the test keys
// published, a running sidecar that is ready, and its ext_authz gRPC
// server on loopback with a client connected to it.
type fixture struct {
	*verifiertest.Keys
	conn   *bus.Conn
	sc     *sidecar.Sidecar
	client authv3.AuthorizationClient
	addr   string
}

// newFixture starts a fixture with a fresh NATS server; cfg gives the
// sidecar's config (data dir, issuer, audience, listen address and logger
// are filled in when left zero).
func newFixture(t *testing.T, cfg sidecar.Config) *fixture {
	t.Helper()
	return newFixtureOn(t, bustest.RunServer(t), cfg)
}

// newFixtureOn is newFixture on the NATS server s.
func newFixtureOn(t *testing.T, s *natsserver.Server, cfg sidecar.Config) *fixture {
	t.Helper()
	conn := bustest.Setup(t, s, 20*time.Minute)
	f := &fixture{Keys: verifiertest.NewKeys(t), conn: conn}
	verifiertest.PublishKey(t, conn, f.EdKid, f.EdJWK)
	verifiertest.PublishKey(t, conn, f.EsKid, f.EsJWK)
	f.sc = startSidecar(t, conn, cfg)
	f.addr = serveGRPC(t, f.sc.Verifier())
	f.client = dial(t, f.addr)
	waitReady(t, f.sc)
	return f
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startSidecar opens and runs a sidecar until the test ends.
func startSidecar(t *testing.T, conn *bus.Conn, cfg sidecar.Config) *sidecar.Sidecar {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "verifier")
	}
	if cfg.Verifier.Issuer == "" {
		cfg.Verifier.Issuer, cfg.Verifier.Audience = verifiertest.Issuer, verifiertest.Audience
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	sc, err := sidecar.Open(cfg, conn)
	if err != nil {
		t.Fatalf("open sidecar: %v", err)
	}
	bustest.RunUntilStopped(t, sc.Run, func() {
		if err := sc.Close(); err != nil {
			t.Errorf("close sidecar: %v", err)
		}
	})
	return sc
}

// serveGRPC serves v's verdicts over gRPC on a loopback port until the
// test ends and returns the address.
func serveGRPC(t *testing.T, v *verifier.Verifier) string {
	t.Helper()
	return serveGRPCWith(t, extauthz.Config{Verifier: v})
}

// serveGRPCWith serves over gRPC with cfg, as serveGRPC does.
func serveGRPCWith(t *testing.T, cfg extauthz.Config) string {
	t.Helper()
	cfg.Logger = testLogger(t)
	srv, err := extauthz.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, func(ctx context.Context) error { return srv.Serve(ctx, ln) }, func() {})
	return ln.Addr().String()
}

// dial returns a client of the Authorization service at addr, closed
// when the test ends.
func dial(t *testing.T, addr string) authv3.AuthorizationClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return authv3.NewAuthorizationClient(cc)
}

func waitReady(t *testing.T, sc *sidecar.Sidecar) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := sc.Status(); !st.Ready {
			return fmt.Errorf("sidecar not ready: %+v", st)
		}
		return nil
	})
}

// revoke publishes a revocation and waits until sc has applied it.
func (f *fixture) revoke(t *testing.T, kind bus.Kind, value string) {
	t.Helper()
	seq := verifiertest.PublishRevocation(t, f.conn, kind, value, time.Now())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.sc.WaitApplied(ctx, seq); err != nil {
		t.Fatalf("wait for revocation %d: %v", seq, err)
	}
}

// token returns a valid token of alice (verifiertest.BaseClaims) with
// edit applied to its claims, and the claims.
func (f *fixture) token(t *testing.T, edit func(c map[string]any)) (string, map[string]any) {
	t.Helper()
	c := verifiertest.BaseClaims(time.Now().Add(-time.Second))
	if edit != nil {
		edit(c)
	}
	return f.EdToken(t, c), c
}

// request is a request as a client sends it to Envoy.
type request struct {
	method, scheme, host, path string
	headers                    map[string]string // name: value, any case
}

// checkRequest returns the CheckRequest Envoy's ext_authz filter sends
// about r: the request's attributes, its headers lower-cased with the
// pseudo-headers among them, the peers' addresses and the time.
func (r request) checkRequest() *authv3.CheckRequest {
	headers := map[string]string{
		":authority": r.host, ":method": r.method, ":path": r.path, ":scheme": r.scheme,
		"user-agent": "curl/8.5.0", "accept": "*/*",
		"x-forwarded-proto": r.scheme, "x-request-id": "2f1c7e4a-5b8d-4c1e-9f0a-1b2c3d4e5f60",
	}
	for k, v := range r.headers {
		headers[strings.ToLower(k)] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress("10.0.0.7", 51234)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress("10.0.0.9", 8000)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "14471581237227339466", Method: r.method, Headers: headers,
				Path: r.path, Host: r.host, Scheme: r.scheme, Protocol: "HTTP/1.1", Size: 0,
			},
		},
	}}
}

// check sends the CheckRequest of r to the fixture's server.
func (f *fixture) check(t *testing.T, r request) *authv3.CheckResponse {
	t.Helper()
	return check(t, f.client, r.checkRequest())
}

func check(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// verifyHTTP asks the sidecar's /v1/verify about r as a forward-auth proxy
// on loopback does (the Envoy HTTP ext_authz example's headers) and
// returns the answer and its body.
func (f *fixture) verifyHTTP(t *testing.T, r request) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), r.method, f.sc.URL()+"/v1/verify"+r.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Forwarded-Method", r.method)
	req.Header.Set("X-Forwarded-Uri", r.path)
	req.Header.Set("X-Forwarded-Host", r.host)
	req.Header.Set("X-Forwarded-Proto", r.scheme)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// upstream is what an OK answer does to the request Envoy forwards.
type upstream struct {
	set    map[string]string // headers set, replacing the client's
	remove []string          // headers removed
}

// okAnswer checks that resp admits the request and returns what it does
// to the upstream request.
func okAnswer(t *testing.T, resp *authv3.CheckResponse) upstream {
	t.Helper()
	if got := codes.Code(resp.GetStatus().GetCode()); got != codes.OK {
		t.Fatalf("status %s (%s), want OK", got, resp.GetStatus().GetMessage())
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("no ok_response in %v", resp)
	}
	u := upstream{set: map[string]string{}, remove: ok.GetHeadersToRemove()}
	for _, h := range ok.GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend() != nil {
			t.Errorf("header %s: append_action %s, append %v; want OVERWRITE_IF_EXISTS_OR_ADD and no append", h.GetHeader().GetKey(), h.GetAppendAction(), h.GetAppend())
		}
		k := h.GetHeader().GetKey()
		if _, dup := u.set[k]; dup || k != strings.ToLower(k) {
			t.Errorf("header %q set twice or not lower-case", k)
		}
		u.set[k] = h.GetHeader().GetValue()
	}
	for _, name := range u.remove {
		if _, both := u.set[name]; both {
			t.Errorf("header %s both set and removed: Envoy would drop the verifier's value", name)
		}
	}
	return u
}

// refusal is a denied answer as the client sees it.
type refusal struct {
	code    codes.Code
	status  int
	headers http.Header
	body    string
}

// deniedAnswer checks that resp refuses the request and returns the
// response the client gets.
func deniedAnswer(t *testing.T, resp *authv3.CheckResponse) refusal {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("no denied_response in %v", resp)
	}
	r := refusal{code: codes.Code(resp.GetStatus().GetCode()), status: int(d.GetStatus().GetCode()), headers: http.Header{}, body: d.GetBody()}
	for _, h := range d.GetHeaders() {
		r.headers.Add(h.GetHeader().GetKey(), h.GetHeader().GetValue())
	}
	return r
}
