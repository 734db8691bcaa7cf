package issuer_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"log/slog"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// A Herald polling another Herald's SSF transmitter with OAuth client
// credentials: the transmitter (A) and the receiver (B) are two
// deployments, each an issuer on its own NATS server.

// runTransmitter runs deployment A, whose access tokens live ttl, with a
// client herald-b (scope ssf.manage) and a poll stream of it; it returns
// A, the client and the stream's poll endpoint.
func runTransmitter(t *testing.T, ttl time.Duration) (*issuer.Service, issuer.Client, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a, _ := runIssuerOn(t, bustest.Connect(t, bustest.RunServer(t)), issuer.Config{HTTPAddr: addr,
		IssuerURL: "http://" + addr, AccessTTL: ttl})
	cl, tok := ssfClient(t, a, "herald-b", "ssf.manage")
	waitTransmitter(t, a.URL(), tok)
	code, _, body := ssfCall(t, "POST", a.URL()+"/ssf/stream", tok, `{"delivery":{"method":"urn:ietf:rfc:8936"}}`)
	var st struct {
		Delivery struct {
			EndpointURL string `json:"endpoint_url"`
		} `json:"delivery"`
	}
	if code != http.StatusCreated || json.Unmarshal(body, &st) != nil || st.Delivery.EndpointURL == "" {
		t.Fatalf("create a poll stream at A: %d %s", code, body)
	}
	return a, cl, st.Delivery.EndpointURL
}

// runPoller runs deployment B, trusting A's tokens and SETs, polling with
// p, on clock now (nil: the real one), logging at debug level into logs;
// it returns B and B's verifier.
func runPoller(t *testing.T, a *issuer.Service, cl issuer.Client, p issuer.SSFPoll, now func() time.Time, logs *lockedBuffer) (*issuer.Service, *sidecar.Sidecar) {
	t.Helper()
	s := bustest.RunServer(t)
	trust := []federation.Issuer{federation.Issuer{URL: a.IssuerURL(), Tokens: true, SSF: true, ClientID: cl.ID}.WithDefaults()}
	b, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust, SSFPolls: []issuer.SSFPoll{p}, Now: now,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	return b, runFleet(t, s, b, 1)[0]
}

// logCount counts the lines of logs with msg.
func logCount(logs *lockedBuffer, msg string) int {
	return strings.Count(logs.String(), `msg="`+msg+`"`)
}

// TestSSFPoll_ClientCredentials_HeraldToHerald: B polls A's poll
// endpoint with client credentials at the token endpoint it discovered
// from A's OpenID configuration; a session A revokes is refused on B's
// verifier, another session stays accepted; B keeps its token for the
// following polls, and the client secret and tokens are never logged.
func TestSSFPoll_ClientCredentials_HeraldToHerald(t *testing.T) {
	a, cl, pollURL := runTransmitter(t, 5*time.Minute)
	logs := &lockedBuffer{}
	_, sc := runPoller(t, a, cl, issuer.SSFPoll{URL: pollURL, ClientID: cl.ID, ClientSecret: cl.Secret}, nil, logs)

	laptop := createSession(t, a, issuer.SessionRequest{Subject: "alice"})
	phone := createSession(t, a, issuer.SessionRequest{Subject: "alice"})
	bustest.WaitFor(t, 20*time.Second, func() error { return wantVerdict(t, sc, laptop.AccessToken, http.StatusOK, "") })
	revoke(t, a, "session", laptop.SessionID)
	bustest.WaitFor(t, 20*time.Second, func() error {
		return wantVerdict(t, sc, laptop.AccessToken, http.StatusUnauthorized, "revoked")
	})
	if err := wantVerdict(t, sc, phone.AccessToken, http.StatusOK, ""); err != nil {
		t.Fatalf("the other session: %v", err)
	}
	revoke(t, a, "session", phone.SessionID)
	bustest.WaitFor(t, 20*time.Second, func() error {
		return wantVerdict(t, sc, phone.AccessToken, http.StatusUnauthorized, "revoked")
	})
	out := logs.String()
	if n := logCount(logs, "SSF poll token obtained"); n != 1 {
		t.Errorf("B obtained %d tokens for polls within the first token's lifetime, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "token_url="+a.IssuerURL()+"/oauth2/token") {
		t.Errorf("B's logs do not show the discovered token endpoint:\n%s", out)
	}
	if n := logCount(logs, "SSF poll failed; retrying"); n != 0 {
		t.Errorf("%d polls failed:\n%s", n, out)
	}
	if strings.Contains(out, cl.Secret) || regexp.MustCompile(`eyJ[\w-]+\.[\w-]+\.`).MatchString(out) {
		t.Errorf("B's logs show the client secret or a token:\n%s", out)
	}
}

// pollProxy stands between a poller and A's poll endpoint: it records the
// bearer token of each poll and answers 401 itself when told to.
type pollProxy struct {
	*httptest.Server
	mu      sync.Mutex
	tokens  []string // of each poll that reached A
	refused []string // of each poll answered 401 here
	at      []int    // for each refusal, how many polls had reached A
	refuse  atomic.Int32
	polled  chan struct{} // a poll reached A; capacity 1
}

func newPollProxy(t *testing.T, target string) *pollProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &pollProxy{polled: make(chan struct{}, 1)}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		p.mu.Lock()
		if p.refuse.Load() > 0 {
			p.refuse.Add(-1)
			p.refused = append(p.refused, tok)
			p.at = append(p.at, len(p.tokens))
			p.mu.Unlock()
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		p.tokens = append(p.tokens, tok)
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
		select {
		case p.polled <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(p.Close)
	return p
}

// seen returns copies of the recorded tokens, and for each refusal how
// many polls had reached A before it.
func (p *pollProxy) seen() (tokens, refused []string, at []int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tokens...), append([]string(nil), p.refused...), append([]int(nil), p.at...)
}

// waitPolls waits until n polls have reached A.
func (p *pollProxy) waitPolls(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		tokens, _, _ := p.seen()
		if len(tokens) >= n {
			return tokens
		}
		select {
		case <-p.polled:
		case <-deadline:
			t.Fatalf("%d polls reached A, want %d", len(tokens), n)
		}
	}
}

// TestSSFPoll_ClientCredentials_CachedRenewedReplaced: B (its token URL
// set, the poll URL not at A's origin) uses one token for polls until
// shortly before it expires, then obtains another; a token the poll
// endpoint refuses is replaced at once and the poll sent again, with no
// failure logged.
func TestSSFPoll_ClientCredentials_CachedRenewedReplaced(t *testing.T) {
	const ttl = 5 * time.Minute
	a, cl, pollURL := runTransmitter(t, ttl)
	proxy := newPollProxy(t, a.URL())
	u, _ := url.Parse(pollURL)
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	logs := &lockedBuffer{}
	runPoller(t, a, cl, issuer.SSFPoll{URL: proxy.URL + u.Path, ClientID: cl.ID, ClientSecret: cl.Secret,
		TokenURL: a.URL() + "/oauth2/token"}, now, logs)

	tokens := proxy.waitPolls(t, 2)
	if tokens[0] == "" || tokens[1] != tokens[0] {
		t.Fatalf("the first two polls carried different tokens: %.20q, %.20q; want the first kept", tokens[0], tokens[1])
	}
	// B's clock passes the token's renewal time (30 s before it expires).
	// The poll under way when it did may carry the old token; the one
	// after it may not.
	skew.Store(int64(ttl - 29*time.Second))
	tokens = proxy.waitPolls(t, len(tokens)+2)
	n := len(tokens)
	renewed := tokens[n-1]
	if renewed == tokens[0] {
		t.Fatalf("after the token's renewal time, polls still carry it")
	}
	if got := logCount(logs, "SSF poll token obtained"); got != 2 {
		t.Errorf("%d tokens obtained, want 2", got)
	}

	// The poll endpoint refuses the current token once.
	proxy.refuse.Store(1)
	bustest.WaitFor(t, 30*time.Second, func() error {
		if polls, refused, at := proxy.seen(); len(refused) == 0 || len(polls) <= at[0] {
			return fmt.Errorf("no poll yet after a refusal")
		}
		return nil
	})
	tokens, refused, at := proxy.seen()
	if len(refused) != 1 || refused[0] != renewed {
		t.Fatalf("refused tokens %d, want the current one only", len(refused))
	}
	if tokens[at[0]] == renewed || tokens[at[0]] == "" {
		t.Fatalf("the poll after a 401 carried the refused token")
	}
	if got := logCount(logs, "SSF poll token obtained"); got != 3 {
		t.Errorf("%d tokens obtained, want 3", got)
	}
	if got := logCount(logs, "SSF poll failed; retrying"); got != 0 {
		t.Errorf("%d polls failed, want none: the refused token was replaced at once:\n%s", got, logs.String())
	}
}

// TestSSFPoll_ClientCredentials_BadSecret: a client secret the token
// endpoint refuses is logged clearly (the endpoint's invalid_client, not
// the secret), and the poller backs off, doubling its wait, rather than
// asking again at once.
func TestSSFPoll_ClientCredentials_BadSecret(t *testing.T) {
	a, cl, pollURL := runTransmitter(t, 5*time.Minute)
	logs := &lockedBuffer{}
	const wrong = "not-the-secret-of-herald-b"
	runPoller(t, a, cl, issuer.SSFPoll{URL: pollURL, ClientID: cl.ID, ClientSecret: wrong}, nil, logs)
	bustest.WaitFor(t, 20*time.Second, func() error {
		if n := logCount(logs, "SSF poll failed; retrying"); n < 3 {
			return fmt.Errorf("%d failures logged, want 3", n)
		}
		return nil
	})
	out := logs.String()
	fails := regexp.MustCompile(`msg="SSF poll failed; retrying".* in=(\S+) .*invalid_client`).FindAllStringSubmatch(out, -1)
	if len(fails) < 3 || fails[0][1] != "1s" || fails[1][1] != "2s" || fails[2][1] != "4s" {
		t.Errorf("failures %q, want invalid_client with waits 1s, 2s, 4s:\n%s", fails, out)
	}
	if strings.Contains(out, wrong) {
		t.Errorf("the logs show the client secret:\n%s", out)
	}
	if n := logCount(logs, "SSF poll token obtained"); n != 0 {
		t.Errorf("%d tokens obtained with a wrong secret", n)
	}
}

// TestSSFPoll_ClientCredentials_Config: a poll has a bearer token or
// client credentials, not both nor neither; without a token URL, a
// trusted issuer must be at the poll URL's origin.
func TestSSFPoll_ClientCredentials_Config(t *testing.T) {
	trust := []federation.Issuer{federation.Issuer{URL: "https://a.example", Tokens: true, SSF: true}.WithDefaults()}
	for name, tc := range map[string]struct {
		p    issuer.SSFPoll
		want string
	}{
		"both":      {issuer.SSFPoll{URL: "https://a.example/ssf/poll/1", Token: "t", ClientID: "b", ClientSecret: "s"}, "not both"},
		"neither":   {issuer.SSFPoll{URL: "https://a.example/ssf/poll/1"}, "are required"},
		"no secret": {issuer.SSFPoll{URL: "https://a.example/ssf/poll/1", ClientID: "b"}, "both a client id and a secret"},
		"no issuer": {issuer.SSFPoll{URL: "https://c.example/poll", ClientID: "b", ClientSecret: "s"}, "set the token URL"},
		"http":      {issuer.SSFPoll{URL: "https://c.example/poll", ClientID: "b", ClientSecret: "s", TokenURL: "http://c.example/token"}, "token URL"},
		"scope":     {issuer.SSFPoll{URL: "https://a.example/ssf/poll/1", Token: "t", Scope: "x"}, "go with client credentials"},
	} {
		cfg := issuer.Config{DataDir: t.TempDir(), IssuerURL: "https://issuer.test", Trust: trust, SSFPolls: []issuer.SSFPoll{tc.p}}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), `"s"`) {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
	ok := issuer.Config{DataDir: t.TempDir(), IssuerURL: "https://issuer.test", Trust: trust,
		SSFPolls: []issuer.SSFPoll{{URL: "https://a.example/ssf/poll/1", ClientID: "b", ClientSecret: "s"}}}
	if err := ok.Validate(); err != nil && strings.Contains(err.Error(), "SSF poll") {
		t.Errorf("client credentials with the trusted issuer at the poll URL's origin: %v", err)
	}
}

// TestSSFPoll_ClientCredentials_TokenResponses: the token request is the
// client credentials grant with client_secret_basic (id and secret
// form-encoded) and the scope; a token response that is too large, not a
// Bearer token, or not a token is refused with a clear error, and never
// used.
func TestSSFPoll_ClientCredentials_TokenResponses(t *testing.T) {
	const id, secret = "herald b:1", "s:é/cret"
	for name, tc := range map[string]struct {
		body string
		want string // part of the failure logged; empty: polls succeed
	}{
		"good":       {`{"access_token":"tok-1","token_type":"bearer","expires_in":300}`, ""},
		"too large":  {`{"access_token":"tok-1","token_type":"Bearer","pad":"` + strings.Repeat("x", 70<<10) + `"}`, "larger than 65536 bytes"},
		"dpop":       {`{"access_token":"tok-1","token_type":"DPoP"}`, `DPoP\", want Bearer`}, // as the text log escapes it
		"not token":  {`{"access_token":"tok 1\r\nX: y","token_type":"Bearer"}`, "is not a bearer token"},
		"no token":   {`{"token_type":"Bearer"}`, "no access_token"},
		"refused":    {"", "invalid_client"},
		"expires_in": {`{"access_token":"tok-1","token_type":"Bearer","expires_in":-1}`, "negative expires_in"},
	} {
		t.Run(name, func(t *testing.T) {
			var form url.Values
			var user, pass string
			var mu sync.Mutex
			te := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				mu.Lock()
				form = r.PostForm
				user, pass, _ = r.BasicAuth()
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				if tc.body == "" {
					w.WriteHeader(http.StatusUnauthorized)
					fmt.Fprint(w, `{"error":"invalid_client","error_description":"client authentication failed"}`)
					return
				}
				fmt.Fprint(w, tc.body)
			}))
			defer te.Close()
			polled := make(chan struct{}, 1)
			pe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer tok-1" {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				fmt.Fprint(w, `{"sets":{},"moreAvailable":false}`)
				select {
				case polled <- struct{}{}:
				default:
				}
			}))
			defer pe.Close()
			logs := &lockedBuffer{}
			runIssuerOn(t, bustest.Connect(t, bustest.RunServer(t)), issuer.Config{
				SSFPolls: []issuer.SSFPoll{{URL: pe.URL + "/poll", ClientID: id, ClientSecret: secret, TokenURL: te.URL + "/token"}},
				Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if tc.want == "" {
				select {
				case <-polled:
				case <-time.After(30 * time.Second):
					t.Fatalf("no poll with the token:\n%s", logs.String())
				}
				mu.Lock()
				defer mu.Unlock()
				if form.Get("grant_type") != "client_credentials" || form.Get("scope") != "ssf.manage" ||
					user != url.QueryEscape(id) || pass != url.QueryEscape(secret) {
					t.Errorf("token request %v, basic %q %q; want client_credentials, ssf.manage, the form-encoded id and secret", form, user, pass)
				}
				return
			}
			bustest.WaitFor(t, 30*time.Second, func() error {
				if !strings.Contains(logs.String(), tc.want) {
					return fmt.Errorf("no failure logged with %q", tc.want)
				}
				return nil
			})
			select {
			case <-polled:
				t.Errorf("polled with a refused token response")
			default:
			}
			if out := logs.String(); strings.Contains(out, "s:é/cret") || strings.Contains(out, url.QueryEscape(secret)) {
				t.Errorf("the logs show the secret:\n%s", out)
			}
		})
	}
}
