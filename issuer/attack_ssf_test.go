package issuer_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestSSFAttack_DPoPBoundReceiverToken: a receiver's client credentials
// token bound to a DPoP key is refused by the SSF API without a proof by
// that key for this very request, as a bearer token or with a proof of
// another key, URL or method.
func TestSSFAttack_DPoPBoundReceiverToken(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	_, plain := ssfClient(t, svc, "receiver-plain", "ssf.manage")
	waitTransmitter(t, svc.URL(), plain)
	code, raw := call(t, "POST", svc.URL()+"/v1/clients", adminToken, issuer.ClientRequest{Name: "receiver-dpop", Scope: "ssf.manage"})
	var cl issuer.Client
	if code != http.StatusCreated || json.Unmarshal(raw, &cl) != nil {
		t.Fatalf("register: %d %s", code, raw)
	}
	key, thief := newDPoPClient(t), newDPoPClient(t)
	req, _ := http.NewRequestWithContext(t.Context(), "POST", svc.URL()+"/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(cl.ID, cl.Secret)
	req.Header.Set("DPoP", key.proof(t, "POST", svc.IssuerURL()+"/oauth2/token", ""))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tr issuer.TokenResponse
	_ = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || tr.TokenType != "DPoP" {
		t.Fatalf("bound token: %d %+v", resp.StatusCode, tr)
	}
	stream := svc.URL() + "/ssf/stream"
	try := func(scheme, proof string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", stream, nil)
		req.Header.Set("Authorization", scheme+" "+tr.AccessToken)
		if proof != "" {
			req.Header.Set("DPoP", proof)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, c := range map[string]struct{ scheme, proof string }{
		"as a bearer token":   {"Bearer", ""},
		"without a proof":     {"DPoP", ""},
		"another key's proof": {"DPoP", thief.proof(t, "GET", stream, tr.AccessToken)},
		"a proof for POST":    {"DPoP", key.proof(t, "POST", stream, tr.AccessToken)},
		"a proof for verify":  {"DPoP", key.proof(t, "GET", svc.URL()+"/ssf/verify", tr.AccessToken)},
		"a proof of no token": {"DPoP", key.proof(t, "GET", stream, "")},
		"a bearer with proof": {"Bearer", key.proof(t, "GET", stream, tr.AccessToken)},
	} {
		if code := try(c.scheme, c.proof); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	proof := key.proof(t, "GET", stream, tr.AccessToken)
	if code := try("DPoP", proof); code != http.StatusOK {
		t.Errorf("with its proof: %d, want 200", code)
	}
	if code := try("DPoP", proof); code != http.StatusUnauthorized {
		t.Errorf("the proof replayed: %d, want 401", code)
	}
}

// TestSSFAttack_SecretsNeverShownOrLogged: a push stream's
// authorization_header is never shown back (to the receiver, in the
// operator's list) and, like the receiver's access token, never logged,
// through a refusing receiver, retries and a pause.
func TestSSFAttack_SecretsNeverShownOrLogged(t *testing.T) {
	const pushSecret = "Bearer push-secret-0123456789"
	var answered atomic.Int32
	rx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != pushSecret {
			t.Errorf("push Authorization %q", r.Header.Get("Authorization"))
		}
		if answered.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError) // retried
			return
		}
		w.WriteHeader(http.StatusUnauthorized) // pauses the stream
	}))
	defer rx.Close()
	logs := &lockedBuffer{}
	s := bustest.RunServer(t)
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{SSFLoopbackPush: true,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_, tok := ssfClient(t, svc, "receiver-x", "ssf.manage ssf.read")
	waitTransmitter(t, svc.URL(), tok)
	body := fmt.Sprintf(`{"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":%q,"authorization_header":%q}}`, rx.URL+"/events", pushSecret)
	code, _, created := ssfCall(t, "POST", svc.URL()+"/ssf/stream", tok, body)
	var st struct {
		ID string `json:"stream_id"`
	}
	if code != http.StatusCreated || json.Unmarshal(created, &st) != nil {
		t.Fatalf("create: %d %s", code, created)
	}
	// A token in the query string is refused, and not logged either.
	ssfCall(t, "GET", svc.URL()+"/ssf/stream?access_token="+url.QueryEscape(tok), "", "")
	if code, body := call(t, "POST", svc.URL()+"/v1/revocations", adminToken,
		map[string]any{"kind": "session", "value": "sid-1", "reason": "test"}); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("revoke: %d %s", code, body)
	}
	bustest.WaitFor(t, 30*time.Second, func() error {
		if code, _, body := ssfCall(t, "GET", svc.URL()+"/ssf/status?stream_id="+st.ID, tok, ""); !strings.Contains(string(body), `"paused"`) {
			return fmt.Errorf("status %d %s", code, body)
		}
		return nil
	})
	if n := answered.Load(); n < 2 {
		t.Errorf("the receiver was pushed to %d times, want a retry then the refusal", n)
	}
	_, _, read := ssfCall(t, "GET", svc.URL()+"/ssf/stream?stream_id="+st.ID, tok, "")
	_, list := call(t, "GET", svc.URL()+"/v1/ssf/streams", adminToken, nil)
	_, replaced := replaceKeepsSecret(t, svc.URL(), tok, st.ID, rx.URL+"/events")
	for what, b := range map[string]string{"create": string(created), "read": string(read), "operator list": string(list),
		"replace": replaced, "logs": logs.String()} {
		if strings.Contains(b, "push-secret") {
			t.Errorf("%s shows the push authorization: %s", what, b)
		}
		if strings.Contains(b, tok) || strings.Contains(b, url.QueryEscape(tok)) {
			t.Errorf("%s shows the receiver's access token", what)
		}
	}
	if !strings.Contains(string(list), `"paused"`) || !strings.Contains(string(list), "401") {
		t.Errorf("operator list %s: want the stream paused with the receiver's answer", list)
	}
}

// replaceKeepsSecret replaces the stream (PUT) with a push delivery
// without an authorization_header and returns the answer.
func replaceKeepsSecret(t *testing.T, base, tok, id, endpoint string) (int, string) {
	t.Helper()
	code, _, b := ssfCall(t, "PUT", base+"/ssf/stream", tok,
		fmt.Sprintf(`{"stream_id":%q,"delivery":{"method":"urn:ietf:rfc:8935","endpoint_url":%q}}`, id, endpoint))
	return code, string(b)
}

// TestSSFAttack_CallsLimitedPerReceiver: a receiver flooding the SSF API
// (each call reads, and most write, its stream records on the bus, which
// every replica then reads) is answered 429 slow_down past its client's
// rate, like the token endpoint; another receiver is not slowed.
func TestSSFAttack_CallsLimitedPerReceiver(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{ClientRateLimit: 1})
	_, flood := ssfClient(t, svc, "receiver-flood", "ssf.manage")
	_, calm := ssfClient(t, svc, "receiver-calm", "ssf.manage")
	_, other := ssfClient(t, svc, "receiver-other", "ssf.manage")
	// The transmitter answers (calm's calls, not flood's, are spent).
	bustest.WaitFor(t, 30*time.Second, func() error {
		if code, _, body := ssfCall(t, "GET", svc.URL()+"/ssf/stream", calm, ""); code != http.StatusOK {
			return fmt.Errorf("list streams: %d %s", code, body)
		}
		return nil
	})
	var last int
	var h http.Header
	var body []byte
	for range 5 {
		if last, h, body = ssfCall(t, "GET", svc.URL()+"/ssf/stream", flood, ""); last == http.StatusTooManyRequests {
			break
		}
	}
	wantSSFError(t, "a flooding receiver", last, h, body, http.StatusTooManyRequests, "slow_down")
	if ra := h.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("429 with Retry-After %q", ra)
	}
	if code, _, body := ssfCall(t, "GET", svc.URL()+"/ssf/stream", other, ""); code != http.StatusOK {
		t.Errorf("another receiver: %d %s", code, body)
	}
}
