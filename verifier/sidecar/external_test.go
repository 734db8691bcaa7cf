package sidecar

import (
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// TestSidecar_ExternalIssuer: a trusted external issuer's token, learned
// from HERALD_KEYS only, verifies on /v1/verify and through the proxy
// with X-Herald-Issuer naming its issuer; a client's own X-Herald-Issuer
// never gets through; a kid the sidecar does not hold makes it ask the
// issuers on bus.SubjectKeyRequest.
func TestSidecar_ExternalIssuer(t *testing.T) {
	f, _ := newProxyFixture(t)
	const iss = "https://idp.test/realms/main"
	idp := verifiertest.NewIdP(t, iss)
	signer := bustest.Signer(t)
	name, value := verifiertest.TrustEntry(t, signer, idp.Trust())
	verifiertest.PublishEntry(t, f.conn, name, value)
	name, value = idp.KeyEntry(t, signer, bus.AlgRS256, time.Hour)
	verifiertest.PublishEntry(t, f.conn, name, value)
	bustest.WaitFor(t, 5*time.Second, func() error {
		if st := f.sc.Status(); st.TrustedIssuers != 1 || st.ExternalKeys != 1 {
			return errors.New("provider not trusted yet")
		}
		return nil
	})
	claims := idp.Claims(time.Now())
	tok := idp.Token(t, bus.AlgRS256, claims, nil)
	send := func(url, tok string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("X-Herald-Issuer", testIssuer) // spoofed: claims to be Herald's own
		req.Header.Set("X-Herald-Subject", "mallory")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	t.Run("verify", func(t *testing.T) {
		resp := send(f.sc.AdminURL()+"/v1/verify", tok)
		var c verifier.Claims
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("/v1/verify = %d, %v", resp.StatusCode, err)
		}
		for h, want := range map[string]any{verifier.HeaderIssuer: iss, verifier.HeaderSubject: claims["sub"], verifier.HeaderClient: "spa"} {
			if got := resp.Header.Values(h); len(got) != 1 || got[0] != want {
				t.Errorf("%s = %q, want [%q]", h, got, want)
			}
		}
		if c.Issuer != iss || c.Subject != claims["sub"] || c.SessionID != claims["sid"] {
			t.Errorf("claims = %+v", c)
		}
	})

	t.Run("proxy", func(t *testing.T) {
		resp := send(f.sc.URL()+"/echo", tok)
		var got struct{ Headers http.Header }
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("proxied GET = %d, %v", resp.StatusCode, err)
		}
		for h, want := range map[string]any{verifier.HeaderIssuer: iss, verifier.HeaderSubject: claims["sub"]} {
			if v := got.Headers.Values(h); len(v) != 1 || v[0] != want {
				t.Errorf("upstream %s = %q, want [%q]", h, v, want)
			}
		}
	})

	t.Run("refused keeps the spoofed header out", func(t *testing.T) {
		c := idp.Claims(time.Now())
		c["aud"] = "other"
		resp := send(f.sc.AdminURL()+"/v1/verify", idp.Token(t, bus.AlgRS256, c, nil))
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get(verifier.HeaderIssuer) != "" {
			t.Fatalf("/v1/verify = %d with %s %q, want 401 without it", resp.StatusCode, verifier.HeaderIssuer, resp.Header.Get(verifier.HeaderIssuer))
		}
	})

	t.Run("unknown kid asks the issuers", func(t *testing.T) {
		requests := make(chan *nats.Msg, 16)
		sub, err := f.conn.NATS().ChanSubscribe(bus.SubjectKeyRequest, requests)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := f.conn.NATS().Flush(); err != nil {
			t.Fatal(err)
		}
		const kid = "rotated-key"
		resp := send(f.sc.AdminURL()+"/v1/verify", idp.Token(t, bus.AlgRS256, idp.Claims(time.Now()), func(h map[string]any) { h["kid"] = kid }))
		if resp.StatusCode != http.StatusUnauthorized || verifierReason(resp) != "unknown_key" {
			t.Fatalf("/v1/verify = %d (%s), want 401 unknown_key", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		select {
		case m := <-requests:
			var r bus.KeyRequest
			if err := json.Unmarshal(m.Data, &r); err != nil || r.Issuer != iss || r.Kid != kid {
				t.Fatalf("key request %s: %+v, %v", m.Data, r, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no key request published")
		}
	})
}

// verifierReason returns the error_description of a 401's challenge.
func verifierReason(resp *http.Response) string {
	var body struct {
		Description string `json:"error_description"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return body.Description
}
