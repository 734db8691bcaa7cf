package issuer_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

func TestCredentials_ScopesAndRotation(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	mk := func(name string, scopes ...string) string {
		code, body := call(t, "POST", svc.URL()+"/v1/credentials", adminToken, issuer.CredentialRequest{Name: name, Scopes: scopes})
		var c issuer.Credential
		if code != 201 || json.Unmarshal(body, &c) != nil || c.Token == "" {
			t.Fatalf("create credential %s: %d %s", name, code, body)
		}
		return c.Token
	}
	revoker := mk("oncall", issuer.ScopeRevoke)
	reader := mk("grafana", issuer.ScopeRead)

	tests := []struct {
		name, token, method, path string
		body                      any
		want                      int
	}{
		{"revoker rotates keys", revoker, "POST", "/v1/keys/rotate", nil, 403},
		{"revoker creates a client", revoker, "POST", "/v1/clients", issuer.ClientRequest{Name: "x"}, 403},
		{"revoker creates a credential", revoker, "POST", "/v1/credentials", issuer.CredentialRequest{Name: "y", Scopes: []string{"admin"}}, 403},
		{"revoker revokes", revoker, "POST", "/v1/revocations", issuer.RevocationRequest{Kind: "token", Value: "j1"}, 200},
		{"revoker reads revocations", revoker, "GET", "/v1/revocations", nil, 200},
		{"reader revokes", reader, "POST", "/v1/revocations", issuer.RevocationRequest{Kind: "token", Value: "j2"}, 403},
		{"reader creates a session", reader, "POST", "/v1/sessions", issuer.SessionRequest{Subject: "a"}, 403},
		{"reader lists audit", reader, "GET", "/v1/audit", nil, 200},
		{"unknown token", "hrld_nope", "GET", "/v1/audit", nil, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := call(t, tt.method, svc.URL()+tt.path, tt.token, tt.body); code != tt.want {
				t.Fatalf("%s %s = %d %s, want %d", tt.method, tt.path, code, body, tt.want)
			}
		})
	}

	code, body := call(t, "POST", svc.URL()+"/v1/credentials/oncall/rotate", adminToken, nil)
	var rotated issuer.Credential
	if code != 200 || json.Unmarshal(body, &rotated) != nil || rotated.Token == "" {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if code, _ := call(t, "GET", svc.URL()+"/v1/revocations", revoker, nil); code != 401 {
		t.Fatalf("old token after rotation: %d, want 401", code)
	}
	if code, _ := call(t, "GET", svc.URL()+"/v1/revocations", rotated.Token, nil); code != 200 {
		t.Fatalf("new token: %d, want 200", code)
	}
	if code, _ := call(t, "DELETE", svc.URL()+"/v1/credentials/grafana", adminToken, nil); code != 204 {
		t.Fatalf("delete credential: %d", code)
	}
	if code, _ := call(t, "GET", svc.URL()+"/v1/audit", reader, nil); code != 401 {
		t.Fatalf("deleted credential: %d, want 401", code)
	}

	// The audit trail names who did what, from where.
	code, body = call(t, "GET", svc.URL()+"/v1/audit?actor=oncall", adminToken, nil)
	var audit struct {
		Audit []issuer.AuditRecord `json:"audit"`
	}
	if code != 200 || json.Unmarshal(body, &audit) != nil || len(audit.Audit) != 1 {
		t.Fatalf("audit of oncall: %d %s", code, body)
	}
	if a := audit.Audit[0]; a.Action != "revoke" || a.Value != "j1" || a.Source == "" || a.Time.IsZero() {
		t.Fatalf("audit record %+v: want revoke of j1 with a source and time", a)
	}
}

func TestRevocations_BulkListAndDryRun(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)

	var sessions []issuer.SessionResponse
	for i := range 5 {
		sessions = append(sessions, createSession(t, svc, issuer.SessionRequest{Subject: fmt.Sprintf("bulk-%d", i%2), ClientID: "app"}))
	}
	// Dry runs change nothing and count what would be cut off.
	code, body := call(t, "POST", svc.URL()+"/v1/revocations?dry_run=true", adminToken, issuer.RevocationRequest{Kind: "subject", Value: "bulk-0"})
	var br issuer.BlastRadius
	if code != 200 || json.Unmarshal(body, &br) != nil || !br.DryRun || br.Sessions != 3 || br.Subjects != 1 || br.Clients != 1 {
		t.Fatalf("dry run subject: %d %s", code, body)
	}
	code, body = call(t, "POST", svc.URL()+"/v1/revocations?dry_run=true", adminToken, issuer.RevocationRequest{Kind: "all"})
	if code != 200 || json.Unmarshal(body, &br) != nil || br.Sessions != 5 || br.Subjects != 2 {
		t.Fatalf("dry run all: %d %s", code, body)
	}
	if err := wantVerdict(t, sc, sessions[0].AccessToken, 200, ""); err != nil {
		t.Fatalf("after dry runs: %v", err)
	}

	// 50,000 jtis (and our tokens' own) in one request, few events.
	values := make([]string, 0, 50003)
	for i := range 50000 {
		values = append(values, fmt.Sprintf("%032x", i))
	}
	for _, sess := range sessions[:3] {
		values = append(values, claimsOf(t, sess.AccessToken).ID)
	}
	code, body = call(t, "POST", svc.URL()+"/v1/revocations", adminToken, issuer.RevocationRequest{Kind: "token", Values: values, Reason: "leak"})
	var res issuer.RevocationResult
	if code != 200 || json.Unmarshal(body, &res) != nil || res.Count != len(values) || res.Events < 2 || res.Events > 5 {
		t.Fatalf("bulk revoke: %d %.300s", code, body)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		if st := sc.Status(); st.Applied < res.Seq {
			return fmt.Errorf("applied %d, want %d", st.Applied, res.Seq)
		}
		return nil
	})
	for i, sess := range sessions {
		want, reason := 200, ""
		if i < 3 {
			want, reason = 401, "revoked"
		}
		if err := wantVerdict(t, sc, sess.AccessToken, want, reason); err != nil {
			t.Errorf("session %d: %v", i, err)
		}
	}

	code, body = call(t, "GET", svc.URL()+"/v1/revocations?kind=token&value="+values[42], adminToken, nil)
	var list struct {
		Revocations []issuer.RevocationRecord `json:"revocations"`
	}
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Revocations) != 1 || list.Revocations[0].Reason != "leak" || list.Revocations[0].Count == 0 {
		t.Fatalf("list revocations by value: %d %.500s", code, body)
	}
}

func TestRevokeAll_RotatesTheSigningKey(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	sc, _ := runSidecar(t, s, svc.IssuerURL(), t.TempDir())
	waitReady(t, sc)
	before := createSession(t, svc, issuer.SessionRequest{Subject: "z"})
	oldKid := headerKid(t, before.AccessToken)
	res := revoke(t, svc, "all", "")
	if res.Rotated == "" || res.Rotated == oldKid {
		t.Fatalf("revoke all: rotated_to %q, want a new key (old %s)", res.Rotated, oldKid)
	}
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, before.AccessToken, 401, "revoked") })
	after := createSession(t, svc, issuer.SessionRequest{Subject: "z"})
	if kid := headerKid(t, after.AccessToken); kid != res.Rotated {
		t.Fatalf("new token signed by %s, want %s", kid, res.Rotated)
	}
	if err := wantVerdict(t, sc, after.AccessToken, 200, ""); err != nil {
		t.Fatal(err)
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct{ id, typ, data string }

// readSSE reads n events from GET /v1/events with the given query and
// Last-Event-ID, then disconnects.
func readSSE(t *testing.T, svc *issuer.Service, query, lastID string, n int) []sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", svc.URL()+"/v1/events?"+query, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out []sseEvent
	var cur sseEvent
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.id != "" {
				out = append(out, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			cur.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.typ = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[6:]
		}
	}
	if len(out) < n {
		t.Fatalf("got %d events, want %d: %v", len(out), n, sc.Err())
	}
	return out
}

func TestEvents_ResumeWithLastEventID(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	// Some history on both streams: 2 revocations (+2 audit), 2 sessions
	// (2 events each).
	revoke(t, svc, "token", "t-1")
	createSession(t, svc, issuer.SessionRequest{Subject: "sse"})
	revoke(t, svc, "token", "t-2")
	createSession(t, svc, issuer.SessionRequest{Subject: "sse"})

	first := readSSE(t, svc, "from=start", "", 5)
	// Disconnected. More events on both streams meanwhile.
	revoke(t, svc, "session", "s-3")
	createSession(t, svc, issuer.SessionRequest{Subject: "sse"})
	rest := readSSE(t, svc, "", first[len(first)-1].id, 3+4)

	all := readSSE(t, svc, "from=start", "", 5+7)
	var got, want []string
	for _, e := range append(first, rest...) {
		got = append(got, e.data)
	}
	for _, e := range all {
		want = append(want, e.data)
	}
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d] {
			t.Fatalf("event delivered twice across the reconnect: %s", d)
		}
		seen[d] = true
	}
	for _, d := range want {
		if !seen[d] {
			t.Fatalf("event missed across the reconnect: %s", d)
		}
	}

	// Filters: only revocations.
	revs := readSSE(t, svc, "from=start&type=revocation", "", 3)
	for _, e := range revs {
		if e.typ != "revocation" {
			t.Fatalf("type filter let through %s", e.typ)
		}
	}
}

func TestRevoke_WaitForTheFleet(t *testing.T) {
	s := bustest.RunServer(t)
	svc, _ := runIssuer(t, s, t.TempDir())
	var scs []*sidecar.Sidecar
	var conns []*bus.Conn
	for range 3 {
		conn := bustest.Connect(t, s)
		sc, err := sidecar.Open(sidecar.Config{
			Verifier: verifier.Config{Issuer: svc.IssuerURL(), Audience: issuer.DefaultAudience},
			DataDir:  t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet,
		}, conn)
		if err != nil {
			t.Fatal(err)
		}
		bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
		scs, conns = append(scs, sc), append(conns, conn)
	}
	waitReady(t, scs...)
	bustest.WaitFor(t, 10*time.Second, func() error {
		code, body := call(t, "GET", svc.URL()+"/v1/verifiers", adminToken, nil)
		if n := strings.Count(string(body), `"live":true`); code != 200 || n != 3 {
			return fmt.Errorf("fleet: %d, %d live verifiers: %s", code, n, body)
		}
		return nil
	})

	type answer struct {
		issuer.RevocationResult
		issuer.Confirmation
		Error string `json:"error"`
	}
	revokeWait := func(value, wait string) (int, answer) {
		code, body := call(t, "POST", svc.URL()+"/v1/revocations?wait="+wait, adminToken,
			issuer.RevocationRequest{Kind: "token", Value: value, Reason: "wait test"})
		var a answer
		if err := json.Unmarshal(body, &a); err != nil {
			t.Fatalf("answer %s: %v", body, err)
		}
		return code, a
	}
	code, a := revokeWait("j-all", "5s")
	if code != 200 || a.Confirmed != 3 || len(a.Missing) != 0 || a.Seq == 0 {
		t.Fatalf("wait with every verifier running: %d %+v", code, a)
	}
	if a.SlowestMS <= 0 || a.SlowestMS > 5000 {
		t.Fatalf("slowest %v ms: want the time the slowest verifier took", a.SlowestMS)
	}

	// The third verifier dies: its connection drops without leaving the
	// fleet, so its last heartbeat still says it is live.
	conns[2].NATS().Close()
	code, a = revokeWait("j-some", "1s")
	if code != 504 || a.Error != "not_confirmed" || a.Confirmed != 2 || len(a.Missing) != 1 || a.Missing[0].ID != scs[2].ID() {
		t.Fatalf("wait with a dead verifier: %d %+v, want 504 naming %s", code, a, scs[2].ID())
	}
	if a.Missing[0].Lag == 0 || a.Seq == 0 {
		t.Fatalf("missing verifier %+v: want its lag", a.Missing[0])
	}
	// The revocation is in force on the others all the same.
	if st := scs[0].Status(); st.Applied < a.Seq {
		t.Fatalf("verifier 0 applied %d, want %d", st.Applied, a.Seq)
	}
}
