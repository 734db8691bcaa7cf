package issuer

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/heraldsec/herald/bus/bustest"
)

// TestNames_PlainCharacterSet: credential and client names are of the
// documented set (validName); anything else, look-alikes of admin
// included, is a 400 and nothing is created.
func TestNames_PlainCharacterSet(t *testing.T) {
	svc, _ := openForTest(t, bustest.RunServer(t), t.TempDir(), nil)
	for _, name := range []string{"oncall", "ci-deploy", "svc.billing_2", "0", strings.Repeat("a", 64)} {
		if _, err := svc.CreateCredential(t.Context(), CredentialRequest{Name: name, Scopes: []string{ScopeRead}}, "test", "test"); err != nil {
			t.Errorf("credential %q: %v", name, err)
		}
		if _, err := svc.CreateClient(t.Context(), ClientRequest{Name: name}, "test", "test"); err != nil {
			t.Errorf("client %q: %v", name, err)
		}
	}
	creds, err := svc.ListCredentials()
	if err != nil {
		t.Fatal(err)
	}
	clients, err := svc.ListClients()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"admin\u2060", "adm\u0456n", "Admin", "admin ", " admin", "-admin", ".admin", "_x",
		"a/b", "a:b", "", strings.Repeat("a", 65), "a\u200bb", "é"} {
		var e *Error
		_, err := svc.CreateCredential(t.Context(), CredentialRequest{Name: name, Scopes: []string{ScopeRead}}, "test", "test")
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Description, "name") {
			t.Errorf("credential %q: %v, want 400 naming the rule", name, err)
		}
		_, err = svc.CreateClient(t.Context(), ClientRequest{Name: name}, "test", "test")
		if !errors.As(err, &e) || e.Status != http.StatusBadRequest || !strings.Contains(e.Description, "name") {
			t.Errorf("client %q: %v, want 400 naming the rule", name, err)
		}
	}
	if after, _ := svc.ListCredentials(); len(after) != len(creds) {
		t.Errorf("%d credentials after refused names, want %d", len(after), len(creds))
	}
	if after, _ := svc.ListClients(); len(after) != len(clients) {
		t.Errorf("%d clients after refused names, want %d", len(after), len(clients))
	}
}
