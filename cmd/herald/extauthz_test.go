package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heraldsec/herald/bus/bustest"
)

var extAuthzListening = regexp.MustCompile(`msg="ext_authz grpc listening" grpc=(\S+)`)

// TestRun_VerifierExtAuthzGRPC runs the built binary: 'herald dev', and a
// 'herald verifier --grpc' on its bus, asked over gRPC as Envoy asks. A
// token the issuer minted is admitted with its identity headers; once its
// subject is revoked it is refused with the challenge /v1/verify gives;
// SIGTERM stops the verifier cleanly.
func TestRun_VerifierExtAuthzGRPC(t *testing.T) {
	d := startHeraldDev(t, "dev")
	nats := regexp.MustCompile(`msg="herald dev ready".* nats=(\S+)`).FindStringSubmatch(d.proc.logs.String())
	if nats == nil {
		t.Fatalf("no NATS URL in herald dev's ready line:\n%s", d.proc.logs)
	}
	auth := filepath.Join(d.dir, "nats-auth")
	v := startProc(t, "verifier", nil, d.bin, "verifier", "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--data", filepath.Join(t.TempDir(), "verifier"), "--id", "grpc-1", "--issuer", d.issuer, "--nats", nats[1],
		"--nats-nkey", filepath.Join(auth, "verifier.nk"), "--nats-ca", filepath.Join(auth, "ca.pem"))
	addr := v.waitLog(extAuthzListening, 30*time.Second)[1]
	v.waitLog(verifierReady, 30*time.Second)

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := authv3.NewAuthorizationClient(cc)
	tok := strings.TrimSpace(d.herald("token", "--tenant", "acme", "alice"))
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Scheme: "https", Host: "app.example", Path: "/orders",
			Headers: map[string]string{":method": "GET", ":path": "/orders", ":authority": "app.example", ":scheme": "https",
				"authorization": "Bearer " + tok, "x-herald-subject": "mallory"}},
	}}}
	checkOnce := func() (*authv3.CheckResponse, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return client.Check(ctx, req)
	}
	resp, err := checkOnce()
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check of a fresh token = %v, %v; want OK", resp, err)
	}
	set := map[string]string{}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if set["x-herald-subject"] != "alice" || set["x-herald-tenant"] != "acme" || set["x-herald-issuer"] != d.issuer {
		t.Fatalf("headers to set %v, want subject alice, tenant acme, issuer %s", set, d.issuer)
	}

	d.herald("revoke", "subject", "alice")
	bustest.WaitFor(t, 10*time.Second, func() error {
		resp, err := checkOnce()
		if err != nil {
			return err
		}
		wa := ""
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "www-authenticate" {
				wa = h.GetHeader().GetValue()
			}
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated || !strings.Contains(wa, `error_description="revoked"`) {
			return fmt.Errorf("after revoke subject alice: status %v, www-authenticate %q", resp.GetStatus(), wa)
		}
		return nil
	})

	v.signal(syscall.SIGTERM)
	if err := v.wait(20 * time.Second); err != nil {
		t.Fatalf("verifier after SIGTERM: %v\n%s", err, lastLines(v.logs.String(), 20))
	}
	if !strings.Contains(v.logs.String(), `msg="herald stopped"`) {
		t.Errorf("no clean stop in the logs:\n%s", lastLines(v.logs.String(), 20))
	}
}

// TestRun_VerifierGRPCFlagRejected: a --grpc that is no host:port is
// refused by name before anything is connected or written.
func TestRun_VerifierGRPCFlagRejected(t *testing.T) {
	data := filepath.Join(t.TempDir(), "verifier")
	var out, errOut strings.Builder
	err := run(t.Context(), []string{"verifier", "--grpc", "9001", "--data", data, "--nats", "nats://127.0.0.1:1"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--grpc") {
		t.Fatalf("herald verifier --grpc 9001 = %v, want an error naming --grpc", err)
	}
	if _, statErr := os.Stat(data); !os.IsNotExist(statErr) {
		t.Errorf("data dir %s exists after a refused flag (%v): nothing may be written", data, statErr)
	}
}
