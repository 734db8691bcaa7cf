package issuer_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/ssf"
)

// Any issuer replica serves any stream: a receiver whose client one
// replica registered manages and polls its stream through another, and
// its acknowledgement reaches whichever replica it is sent to.
func TestSSF_AnyReplicaServesAnyStream(t *testing.T) {
	// Unlimited: waiting for both transmitters to start polls their API.
	rs := runReplicas(t, false, 2, issuer.Config{ClientRateLimit: -1})
	a, b := rs.issuers[0].URL(), rs.issuers[1].URL()
	_, tok := ssfClient(t, rs.issuers[0], "receiver", "ssf.manage ssf.read")
	waitTransmitter(t, a, tok)
	waitTransmitter(t, b, tok)
	code, _, body := ssfCall(t, "POST", b+"/ssf/stream", tok, `{}`)
	var st ssf.Stream
	if code != http.StatusCreated || json.Unmarshal(body, &st) != nil {
		t.Fatalf("create on the other replica: %d %s", code, body)
	}
	if code, _, body := ssfCall(t, "GET", a+"/ssf/stream?stream_id="+st.ID, tok, ""); code != http.StatusOK {
		t.Fatalf("read on the first replica: %d %s", code, body)
	}
	if code, _, body := ssfCall(t, "POST", a+"/ssf/verify", tok, fmt.Sprintf(`{"stream_id":%q,"state":"s1"}`, st.ID)); code != http.StatusNoContent {
		t.Fatalf("verify: %d %s", code, body)
	}
	var polled ssf.PollResponse
	bustest.WaitFor(t, 10*time.Second, func() error {
		code, _, body := ssfCall(t, "POST", b+"/ssf/poll/"+st.ID, tok, `{"returnImmediately":true}`)
		if code != http.StatusOK || json.Unmarshal(body, &polled) != nil || len(polled.Sets) != 1 {
			return fmt.Errorf("poll on the other replica: %d %s", code, body)
		}
		return nil
	})
	var jti string
	for j := range polled.Sets {
		jti = j
	}
	zero := 0
	ack, _ := json.Marshal(ssf.PollRequest{Ack: []string{jti}, MaxEvents: &zero})
	if code, _, body := ssfCall(t, "POST", a+"/ssf/poll/"+st.ID, tok, string(ack)); code != http.StatusOK {
		t.Fatalf("ack on the first replica: %d %s", code, body)
	}
	bustest.WaitFor(t, 10*time.Second, func() error {
		list, err := rs.issuers[1].SSFStreams(t.Context())
		if err != nil || len(list) != 1 || list[0].Lag != 0 {
			return fmt.Errorf("streams %+v, %v: want one, nothing pending", list, err)
		}
		return nil
	})
}
