package ssf

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
)

const testIssuer = "https://issuer.test"

// rig is one bus with Herald's streams and the event signer of bustest.
type rig struct {
	srv  *natsserver.Server
	conn *bus.Conn
}

func newRig(t *testing.T) *rig {
	t.Helper()
	s := bustest.RunServer(t)
	return &rig{srv: s, conn: bustest.Setup(t, s, bustest.RevocationMaxAge)}
}

// waitStatus waits until tr's view of stream id (what its push workers
// act on) has status.
func waitStatus(t *testing.T, tr *Transmitter, id, status string) {
	t.Helper()
	bustest.WaitFor(t, 10*time.Second, func() error {
		if r := tr.record(id); r == nil || r.Status != status {
			return fmt.Errorf("stream %s not %s yet", id, status)
		}
		return nil
	})
}

// transmitter starts a Transmitter on its own connection (a replica);
// stop cancels it and waits for Run to return.
func (g *rig) transmitter(t *testing.T, edit func(*Config)) (tr *Transmitter, conn *bus.Conn, stop func()) {
	t.Helper()
	conn = bustest.Connect(t, g.srv)
	signer, err := NewSigner(testKey())
	if err != nil {
		t.Fatal(err)
	}
	pub := bustest.Signer(t).JWK()
	cfg := Config{Conn: conn, Issuer: testIssuer, Signer: signer,
		Open: func(d bus.Delivery) (*bus.Event, error) {
			return bus.OpenEvent(d, bus.StreamRevocations, func(kid string) (bus.JWK, crypto.PublicKey, bool) {
				if kid != pub.Kid {
					return bus.JWK{}, nil, false
				}
				return pub, bustest.EventKey(t).Public(), true
			})
		},
		RetryMin: 5 * time.Millisecond, RetryMax: 40 * time.Millisecond, AckWait: 2 * time.Second,
		MinVerificationInterval: time.Hour, Log: slog.New(slog.DiscardHandler), LoopbackPush: true}
	if edit != nil {
		edit(&cfg)
	}
	tr, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Logf("Run: %v", err) // a killed replica's watch ends
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-tr.ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("transmitter did not start")
	}
	return tr, conn, stop
}

// revoke publishes a revocation of kind and value and returns its event.
func (g *rig) revoke(t *testing.T, kind bus.Kind, value string) *bus.Event {
	t.Helper()
	now := time.Now().UTC()
	e := &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "admin:test",
		Revocation: &bus.Revocation{Kind: kind, Value: value, Reason: "test", At: now, Until: now.Add(bustest.RevocationMaxAge)}}
	bustest.Publish(t, g.conn, e)
	return e
}

// got is one SET a receiver took, decoded after its signature checked.
type got struct {
	raw    string
	header map[string]any
	claims map[string]any
}

func (g got) jti() string { return g.claims["jti"].(string) }
func (g got) txn() string { s, _ := g.claims["txn"].(string); return s }
func (g got) eventType() string {
	for k := range g.claims["events"].(map[string]any) {
		return k
	}
	return ""
}
func (g got) event() map[string]any {
	for _, v := range g.claims["events"].(map[string]any) {
		return v.(map[string]any)
	}
	return nil
}

// receiver is a push endpoint: answer decides each answer (nil: 202);
// it records what it accepted, in order, and every request.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	answer func(n int, g got) int
	tries  int
	took   []got
	seen   chan struct{} // a SET arrived; capacity 1
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{t: t, seen: make(chan struct{}, 1)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	b := make([]byte, 64<<10)
	n, _ := r.Body.Read(b)
	for n < len(b) {
		m, err := r.Body.Read(b[n:])
		n += m
		if err != nil {
			break
		}
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/secevent+jwt" {
		rc.t.Errorf("Content-Type %q", ct)
	}
	g, err := verifySET(string(b[:n]), &testKey().PublicKey)
	if err != nil {
		rc.t.Errorf("receiver: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.tries++
	n, answer := rc.tries, rc.answer
	rc.mu.Unlock()
	code := http.StatusAccepted
	if answer != nil {
		code = answer(n, g)
	}
	rc.mu.Lock()
	if code == http.StatusAccepted {
		rc.took = append(rc.took, g)
	}
	rc.mu.Unlock()
	select {
	case rc.seen <- struct{}{}:
	default:
	}
	if code == http.StatusBadRequest {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprint(w, `{"err":"invalid_key","description":"unknown key"}`)
		return
	}
	w.WriteHeader(code)
}

func (rc *receiver) setAnswer(f func(n int, g got) int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.answer = f
}

func (rc *receiver) received() []got {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.took)
}

// waitFor waits until the receiver took n SETs.
func (rc *receiver) waitFor(t *testing.T, n int) []got {
	t.Helper()
	bustest.WaitFor(t, 20*time.Second, func() error {
		if k := len(rc.received()); k < n {
			return fmt.Errorf("receiver took %d SETs, want %d", k, n)
		}
		return nil
	})
	return rc.received()
}

// verifySET checks a compact SET's RS256 signature and the profile's
// header, and returns it decoded.
func verifySET(tok string, pub *rsa.PublicKey) (got, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return got{}, fmt.Errorf("not a compact JWS: %q", tok)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return got{}, err
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig); err != nil {
		return got{}, fmt.Errorf("signature: %w", err)
	}
	g := got{raw: tok}
	for i, dst := range []*map[string]any{&g.header, &g.claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return got{}, err
		}
		if err := json.Unmarshal(b, dst); err != nil {
			return got{}, err
		}
	}
	if g.header["typ"] != "secevent+jwt" || g.header["alg"] != "RS256" {
		return got{}, fmt.Errorf("header %v", g.header)
	}
	if _, ok := g.claims["sub"]; ok {
		return got{}, fmt.Errorf("a sub claim: %v", g.claims)
	}
	if _, ok := g.claims["exp"]; ok {
		return got{}, fmt.Errorf("an exp claim: %v", g.claims)
	}
	if len(g.claims["events"].(map[string]any)) != 1 {
		return got{}, fmt.Errorf("not one event: %v", g.claims["events"])
	}
	return g, nil
}

// pushStream creates a push stream of receiver to rc on tr.
func pushStream(t *testing.T, tr *Transmitter, receiver string, rc *receiver) *Stream {
	t.Helper()
	st, err := tr.Create(t.Context(), receiver, pushRequest(rc.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func pushRequest(url string) *StreamRequest {
	return &StreamRequest{Delivery: &Delivery{Method: MethodPush, EndpointURL: url, AuthorizationHeader: "Bearer push-secret"}}
}
