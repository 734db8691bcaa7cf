package sidecar

import (
	"strings"
	"testing"

	"github.com/heraldsec/herald/verifier/browser"
)

// TestConfig_CookiesNeedProxyMode: cookie sessions without an upstream are
// refused.
func TestConfig_CookiesNeedProxyMode(t *testing.T) {
	sc := Config{DataDir: t.TempDir(), Cookies: &browser.Config{IssuerURL: "https://issuer.example"}}
	sc.setDefaults()
	if err := sc.Validate(); err == nil || !strings.Contains(err.Error(), "proxy mode") {
		t.Fatalf("cookie sessions without an upstream: %v", err)
	}
}
