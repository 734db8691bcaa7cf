package issuer_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
)

// TestDashboard_SSFReceivers: in Chromium, the fleet card lists the
// streams receivers created on the SSF transmitter, with their receiver,
// method and status, and shows a stream the operator paused as paused
// with the reason.
func TestDashboard_SSFReceivers(t *testing.T) {
	exe := chromium(t)
	s := bustest.RunServer(t)
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{})
	rx, tok := ssfClient(t, svc, "receiver-x", "ssf.manage")
	waitTransmitter(t, svc.URL(), tok)
	code, _, body := ssfCall(t, "POST", svc.URL()+"/ssf/stream", tok, `{}`)
	var st struct {
		ID string `json:"stream_id"`
	}
	if code != http.StatusCreated || json.Unmarshal(body, &st) != nil || st.ID == "" {
		t.Fatalf("create stream: %d %s", code, body)
	}
	id := st.ID

	b := openBrowser(t, exe)
	b.signIn(svc.Addr().String())
	row := `#ssf tr[data-stream="` + id + `"]`
	b.do("see the receiver's stream in the fleet card", chromedp.WaitVisible(chromedp.CSS(row+`[data-status="enabled"]`)))
	if got := b.text(row); !strings.Contains(got, rx.ID) || !strings.Contains(got, "poll") || !strings.Contains(got, "enabled") {
		t.Errorf("stream row %q, want the receiver %s, poll and enabled", got, rx.ID)
	}
	if code, body := call(t, "POST", svc.URL()+"/v1/ssf/streams/"+id+"/status", adminToken,
		issuer.SSFStatusRequest{Status: "paused", Reason: "maintenance"}); code != http.StatusOK {
		t.Fatalf("pause: %d %s", code, body)
	}
	b.do("see it paused", chromedp.WaitVisible(chromedp.CSS(row+`[data-status="paused"]`)))
	if got := b.text(row); !strings.Contains(got, "paused: maintenance") {
		t.Errorf("paused stream row %q, want its reason", got)
	}
	b.checkConsole()
}
