package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestRun_ResourceCommands runs every verb of the client and credential
// commands against a fake issuer and checks the request each sends and the
// output, error and usage each gives.
func TestRun_ResourceCommands(t *testing.T) {
	type request struct{ method, path, body string }
	var (
		mu   sync.Mutex
		reqs []request
	)
	answers := map[string]string{
		"POST /v1/clients":                `{"client_id":"c1","name":"billing","scope":"a b","created":"2026-01-02T03:04:05Z","client_secret":"s3cret"}`,
		"GET /v1/clients":                 `{"clients":[{"client_id":"c1","name":"billing","created":"2026-01-02T03:04:05Z"}]}`,
		"POST /v1/clients/c1/secret":      `{"client_id":"c1","name":"billing","created":"2026-01-02T03:04:05Z","rotated":"2026-01-03T00:00:00Z","client_secret":"n3w"}`,
		"DELETE /v1/clients/a%2Fb":        `{"id":"ev1","seq":7,"at":"2026-01-04T00:00:00Z","count":2}`,
		"POST /v1/credentials":            `{"name":"soc","scopes":["revoke","read"],"created":"2026-01-02T03:04:05Z","token":"hrld_x"}`,
		"GET /v1/credentials":             `{"credentials":[{"name":"soc","scopes":["revoke"],"created":"2026-01-02T03:04:05Z"}]}`,
		"POST /v1/credentials/soc/rotate": `{"name":"soc","scopes":["revoke"],"created":"2026-01-02T03:04:05Z","token":"hrld_y"}`,
		"DELETE /v1/credentials/soc":      `{"ignored":true}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, request{r.Method, r.URL.EscapedPath(), string(b)})
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer test-admin" {
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
			return
		}
		a, ok := answers[r.Method+" "+r.URL.EscapedPath()]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"not_found","error_description":"no such thing"}`)
			return
		}
		io.WriteString(w, a)
	}))
	defer srv.Close()
	t.Setenv("HERALD_ADMIN_TOKEN", "test-admin")

	tests := []struct {
		name   string
		args   []string
		req    *request
		stdout string
		stderr string // a substring; "" for an empty stderr
		err    string // "" for success
	}{
		{
			name: "client create",
			args: []string{"client", "create", "--scope", "a b", "billing"},
			req:  &request{"POST", "/v1/clients", `{"name":"billing","scope":"a b"}`},
			stdout: `{
  "client_id": "c1",
  "name": "billing",
  "scope": "a b",
  "created": "2026-01-02T03:04:05Z",
  "client_secret": "s3cret"
}
`,
			stderr: "The client secret is shown once; store it now.\n",
		},
		{
			name: "client list",
			args: []string{"client", "list"},
			req:  &request{"GET", "/v1/clients", ""},
			stdout: `[
  {
    "client_id": "c1",
    "name": "billing",
    "created": "2026-01-02T03:04:05Z"
  }
]
`,
		},
		{
			name: "client rotate",
			args: []string{"client", "rotate", "c1"},
			req:  &request{"POST", "/v1/clients/c1/secret", ""},
			stdout: `{
  "client_id": "c1",
  "name": "billing",
  "created": "2026-01-02T03:04:05Z",
  "rotated": "2026-01-03T00:00:00Z",
  "client_secret": "n3w"
}
`,
		},
		{
			name: "client delete",
			args: []string{"client", "delete", "a/b"},
			req:  &request{"DELETE", "/v1/clients/a%2Fb", ""},
			stdout: `{
  "id": "ev1",
  "seq": 7,
  "at": "2026-01-04T00:00:00Z",
  "count": 2
}
`,
		},
		{
			name:   "client rotate refused",
			args:   []string{"client", "rotate", "nobody"},
			req:    &request{"POST", "/v1/clients/nobody/secret", ""},
			err:    "POST /v1/clients/nobody/secret: 404 Not Found: not_found: no such thing",
			stdout: "",
		},
		{
			name:   "client without verb",
			args:   []string{"client"},
			stderr: "usage: herald client create NAME [--scope S] | list | rotate ID | delete ID\n",
			err:    "client: want create, list, rotate or delete",
		},
		{
			name:   "client unknown verb",
			args:   []string{"client", "show", "c1"},
			stderr: "usage: herald client create",
			err:    "client show: wrong arguments",
		},
		{
			name:   "client create without name",
			args:   []string{"client", "create"},
			stderr: "usage: herald client create",
			err:    "client create: wrong arguments",
		},
		{
			name:   "client list with argument",
			args:   []string{"client", "list", "x"},
			stderr: "  -scope string\n",
			err:    "client list: wrong arguments",
		},
		{
			name:   "client unknown flag",
			args:   []string{"client", "create", "--scopes", "x", "n"},
			stderr: "flag provided but not defined: -scopes",
			err:    "flag provided but not defined: -scopes",
		},
		{
			name: "credential create",
			args: []string{"credential", "create", "--scopes", "revoke, read,", "soc"},
			req:  &request{"POST", "/v1/credentials", `{"name":"soc","scopes":["revoke","read"]}`},
			stdout: `{
  "name": "soc",
  "scopes": [
    "revoke",
    "read"
  ],
  "created": "2026-01-02T03:04:05Z",
  "token": "hrld_x"
}
`,
			stderr: "The token is shown once; store it now.\n",
		},
		{
			name: "credential create, flags after the name",
			args: []string{"credential", "create", "soc", "--scopes", "revoke,read"},
			req:  &request{"POST", "/v1/credentials", `{"name":"soc","scopes":["revoke","read"]}`},
			stdout: `{
  "name": "soc",
  "scopes": [
    "revoke",
    "read"
  ],
  "created": "2026-01-02T03:04:05Z",
  "token": "hrld_x"
}
`,
			stderr: "The token is shown once; store it now.\n",
		},
		{
			name:   "client create with two names",
			args:   []string{"client", "create", "billing", "--scope", "a", "other"},
			stderr: "usage: herald client create",
			err:    "client create: wrong arguments",
		},
		{
			name: "credential create without scopes",
			args: []string{"credential", "create", "soc"},
			req:  &request{"POST", "/v1/credentials", `{"name":"soc","scopes":null}`},
			stdout: `{
  "name": "soc",
  "scopes": [
    "revoke",
    "read"
  ],
  "created": "2026-01-02T03:04:05Z",
  "token": "hrld_x"
}
`,
			stderr: "The token is shown once; store it now.\n",
		},
		{
			name: "credentials list",
			args: []string{"credentials", "list"},
			req:  &request{"GET", "/v1/credentials", ""},
			stdout: `[
  {
    "name": "soc",
    "scopes": [
      "revoke"
    ],
    "created": "2026-01-02T03:04:05Z"
  }
]
`,
		},
		{
			name: "credential rotate",
			args: []string{"credential", "rotate", "soc"},
			req:  &request{"POST", "/v1/credentials/soc/rotate", ""},
			stdout: `{
  "name": "soc",
  "scopes": [
    "revoke"
  ],
  "created": "2026-01-02T03:04:05Z",
  "token": "hrld_y"
}
`,
		},
		{
			name: "credential delete",
			args: []string{"credential", "delete", "soc"},
			req:  &request{"DELETE", "/v1/credentials/soc", ""},
			stdout: `{
  "deleted": "soc"
}
`,
		},
		{
			name: "credential delete refused",
			args: []string{"credential", "delete", "nobody"},
			req:  &request{"DELETE", "/v1/credentials/nobody", ""},
			err:  "DELETE /v1/credentials/nobody: 404 Not Found: not_found: no such thing",
		},
		{
			name:   "credential without verb",
			args:   []string{"credential"},
			stderr: "usage: herald credential create NAME --scopes S,... | list | rotate NAME | delete NAME\n",
			err:    "credential: want create, list, rotate or delete",
		},
		{
			name:   "credential rotate without name",
			args:   []string{"credential", "rotate"},
			stderr: "  -scopes string\n",
			err:    "credential rotate: wrong arguments",
		},
		{
			name:   "credential help",
			args:   []string{"credential", "list", "-h"},
			stderr: "usage: herald credential create",
			err:    "flag: help requested",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			reqs = nil
			mu.Unlock()
			args := tt.args
			if len(args) > 1 {
				args = append([]string{args[0], args[1], "--issuer-url", srv.URL}, args[2:]...)
			}
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, &stdout, &stderr)
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("herald %s: %v", strings.Join(tt.args, " "), err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("herald %s: err = %v, want %q", strings.Join(tt.args, " "), err, tt.err)
			}
			if got, want := stdout.String(), tt.stdout; got != want {
				t.Errorf("stdout = %q, want %q", got, want)
			}
			if tt.stderr == "" && stderr.Len() != 0 {
				t.Errorf("stderr = %q, want nothing", stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.stderr)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case tt.req == nil && len(reqs) != 0:
				t.Errorf("requests %+v, want none", reqs)
			case tt.req != nil && (len(reqs) != 1 || reqs[0] != *tt.req):
				t.Errorf("requests %+v, want [%+v]", reqs, *tt.req)
			}
		})
	}
}
