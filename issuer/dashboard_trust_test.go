package issuer_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/federation/federationtest"
	"github.com/heraldsec/herald/issuer"
)

// TestDashboard_TrustedIssuersAndSignals: in Chromium, the dashboard shows
// each trusted issuer's keys, with an unreachable one failing; a
// provider's back-channel logout appears in the live feed as a signal with
// what it revoked; and a revocation limited to the provider, made through
// the form's Issuer field, is reviewed as such (no count of its sessions),
// revokes that provider's token on the verifier and shows its issuer in
// the feed.
func TestDashboard_TrustedIssuersAndSignals(t *testing.T) {
	exe := chromium(t)
	idp := federationtest.NewIdP(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String() // a provider that never answers
	ln.Close()
	s := bustest.RunServer(t)
	trust := []federation.Issuer{
		federation.Issuer{URL: idp.URL, Tokens: true}.WithDefaults(),
		federation.Issuer{URL: down, Tokens: true}.WithDefaults(),
	}
	svc, _ := runIssuerOn(t, bustest.Connect(t, s), issuer.Config{Trust: trust})
	sc := runFleet(t, s, svc, 1)[0]
	tok := idp.AccessToken(t, "frank", "f-1")
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, tok, http.StatusOK, "") })
	if code, body, _ := postLogout(t, svc, idp.LogoutToken(t, func(c jwt.MapClaims) { c["sid"] = "f-0" })); code != http.StatusOK {
		t.Fatalf("logout: %d %s", code, body)
	}

	b := openBrowser(t, exe)
	b.signIn(svc.Addr().String())
	b.do("see the provider's keys in the fleet card",
		chromedp.WaitVisible(chromedp.CSS(`#trusted tr[data-issuer="`+idp.URL+`"][data-failing="false"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#trusted tr[data-issuer="`+down+`"][data-failing="true"]`)))
	if got := b.text(`#trusted tr[data-issuer="` + down + `"]`); !strings.Contains(got, "failing since") {
		t.Errorf("unreachable provider shown as %q, want its failure", got)
	}
	b.do("see the logout in the feed", chromedp.WaitVisible(chromedp.CSS(`#feed li[data-type="signal.received"]`)))
	if got := b.text(`#feed li[data-type="signal.received"]`); !strings.Contains(got, "logout from "+idp.URL) || !strings.Contains(got, "revoked session f-0") {
		t.Errorf("signal in the feed %q, want the logout from %s revoking session f-0", got, idp.URL)
	}

	b.do("review a revocation of the provider's subject",
		chromedp.SetValue(chromedp.CSS("#kind"), "subject"),
		chromedp.SendKeys(chromedp.CSS("#value"), "frank"),
		chromedp.SendKeys(chromedp.CSS("#iss"), idp.URL),
		chromedp.Click(chromedp.CSS("#revoke")),
		chromedp.WaitVisible(chromedp.CSS("#confirm")))
	if got := b.text("#blast-note"); !strings.Contains(got, "external issuer") {
		t.Errorf("dry run note %q, want it to say the provider's sessions cannot be counted", got)
	}
	b.do("confirm it",
		chromedp.Click(chromedp.CSS("#confirm")),
		chromedp.WaitVisible(chromedp.CSS("#result.ok")))
	if got := b.text("#result"); !strings.Contains(got, "of issuer "+idp.URL) {
		t.Errorf("result %q, want it to name the issuer", got)
	}
	bustest.WaitFor(t, 10*time.Second, func() error { return wantVerdict(t, sc, tok, http.StatusUnauthorized, "revoked") })
	feedItem := `#feed li[data-type="revocation"][data-value="frank"]`
	b.do("see the revocation in the feed", chromedp.WaitVisible(chromedp.CSS(feedItem)))
	if got := b.text(feedItem); !strings.Contains(got, "of "+idp.URL) {
		t.Errorf("feed entry %q, want the issuer it is limited to", got)
	}
	b.checkConsole()
}
