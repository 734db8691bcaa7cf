package issuer_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/issuer"
)

// TestAttackPoll_MaliciousTransmitter: a poll response with more SETs
// than asked for, one larger than the bound, or one that is not JSON is
// refused whole: nothing in it is acted on, and polling goes on.
func TestAttackPoll_MaliciousTransmitter(t *testing.T) {
	idp := federationtest.NewIdP(t)
	many := make(map[string]string)
	for i := range 101 {
		set := idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": fmt.Sprintf("u%d", i)}, nil)
		many[jtiOf(t, set)] = set
	}
	one := idp.SET(t, credentialChange, map[string]any{"format": "iss_sub", "iss": idp.URL, "sub": "victim"}, nil)
	for name, body := range map[string]func(w http.ResponseWriter){
		"more SETs than asked": func(w http.ResponseWriter) {
			json.NewEncoder(w).Encode(map[string]any{"sets": many})
		},
		"oversized": func(w http.ResponseWriter) {
			json.NewEncoder(w).Encode(map[string]any{"sets": map[string]string{jtiOf(t, one): one},
				"padding": strings.Repeat("x", 2<<20)})
		},
		"not JSON": func(w http.ResponseWriter) {
			w.Write([]byte("<html>sets</html>"))
		},
		"sets not strings": func(w http.ResponseWriter) {
			w.Write([]byte(`{"sets":{"a":{"nested":["x"]}}}`))
		},
	} {
		t.Run(name, func(t *testing.T) {
			var requests atomic.Int64
			tr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				body(w)
			}))
			t.Cleanup(tr.Close)
			s := bustest.RunServer(t)
			trust := []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}
			svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust,
				SSFPolls: []issuer.SSFPoll{{URL: tr.URL, Token: "t"}}})
			// The second request is made once the first response is handled.
			bustest.WaitFor(t, 10*time.Second, func() error {
				if n := requests.Load(); n < 2 {
					return fmt.Errorf("%d poll requests", n)
				}
				return nil
			})
			if seq := revocationSeq(t, svc); seq != 0 {
				t.Errorf("a refused poll response revoked: seq %d", seq)
			}
			code, raw := call(t, "GET", svc.URL()+"/v1/audit?action=signal.poll", adminToken, nil)
			if code != http.StatusOK || strings.Contains(string(raw), "signal.poll") {
				t.Errorf("a refused poll response was audited as signals: %d %s", code, raw)
			}
		})
	}
}

// TestAttackPoll_SlowTransmitterStops: a transmitter that never answers
// holds a poll open, but stopping the issuer ends it at once: the poller
// is owned and stopped with the service.
func TestAttackPoll_SlowTransmitterStops(t *testing.T) {
	idp := federationtest.NewIdP(t)
	held := make(chan struct{}, 1)
	tr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte(`{"sets":{`)) // and then nothing more
		w.(http.Flusher).Flush()
		select {
		case held <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	t.Cleanup(tr.Close)
	s := bustest.RunServer(t)
	trust := []federation.Issuer{federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults()}
	_, stop := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust,
		SSFPolls: []issuer.SSFPoll{{URL: tr.URL, Token: "t"}}})
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the transmitter was never polled")
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("the issuer did not stop while a poll was held open")
	}
}
