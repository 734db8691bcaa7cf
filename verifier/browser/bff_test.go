package browser

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testSealer(t *testing.T, secret byte) *sealer {
	t.Helper()
	s, err := newSealer(bytes.Repeat([]byte{secret}, cookieKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealer_OpensOnlyItsOwnCookies(t *testing.T) {
	s := testSealer(t, 1)
	st := &cookieState{Handle: newHandle(), Gen: 3, Session: "sid-1", Access: "a.b.c", Refresh: "hrt_x", Created: 100, Seen: 200}
	v, err := s.seal(st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.open(v)
	if err != nil || *got != *st {
		t.Fatalf("open(seal(st)) = %+v, %v; want %+v", got, err, st)
	}
	if again, _ := s.seal(st); again == v {
		t.Fatal("two seals of one state are equal: the nonce is not random")
	}
	for _, secret := range []string{"a.b.c", "hrt_x", "sid-1"} {
		if strings.Contains(v, secret) || strings.Contains(v, base64.RawURLEncoding.EncodeToString([]byte(secret))) {
			t.Fatalf("cookie shows %q", secret)
		}
	}

	flipped := []byte(v)
	if i := len(flipped) - 5; flipped[i] == 'A' { // another base64url character
		flipped[i] = 'B'
	} else {
		flipped[i] = 'A'
	}
	other := testSealer(t, 2)
	tests := map[string]struct {
		s *sealer
		v string
	}{
		"tampered":       {s, string(flipped)},
		"another key":    {other, v},
		"no version":     {s, strings.TrimPrefix(v, cookieVersion)},
		"truncated":      {s, v[:len(v)/2]},
		"empty":          {s, ""},
		"not base64":     {s, cookieVersion + "!!!"},
		"too large":      {s, cookieVersion + strings.Repeat("A", maxCookieBytes)},
		"only the nonce": {s, cookieVersion + base64.RawURLEncoding.EncodeToString(make([]byte, 12))},
	}
	for name, tt := range tests {
		if _, err := tt.s.open(tt.v); !errors.Is(err, errCookie) {
			t.Errorf("%s: open = %v, want errCookie", name, err)
		}
	}
	if s.csrfToken(st.Handle) == s.csrfToken(newHandle()) || s.csrfToken(st.Handle) == other.csrfToken(st.Handle) {
		t.Fatal("CSRF tokens are not bound to the session and the key")
	}
	if !s.checkCSRFToken(st.Handle, s.csrfToken(st.Handle)) || s.checkCSRFToken(st.Handle, other.csrfToken(st.Handle)) {
		t.Fatal("checkCSRFToken accepts a wrong token or refuses the right one")
	}
	if _, err := s.seal(&cookieState{Handle: "h", Access: strings.Repeat("x", 4000), Refresh: "r"}); err == nil {
		t.Fatal("sealed a cookie larger than a browser keeps")
	}
}

func TestCookieKey_File(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultKeyFile)
	k1, err := loadCookieKey(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if k2, err := loadCookieKey(path, true); err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load = %v; want the same key", err)
	}
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if k, err := loadCookieKey(write("ro", good+"\n", 0o400), false); err != nil || len(k) != 32 {
		t.Fatalf("0400 key file: %v", err)
	}
	if _, err := loadCookieKey(write("url", base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), 0o600), false); err != nil {
		t.Fatalf("base64url key: %v", err)
	}
	// A Kubernetes secret mounted with defaultMode 0400 in a pod with an
	// fsGroup is 0440: its group may read it.
	if k, err := loadCookieKey(write("group", good+"\n", 0o440), false); err != nil || len(k) != 32 {
		t.Fatalf("0440 key file: %v", err)
	}
	for name, p := range map[string]string{
		"readable by others":                write("open", good, 0o644),
		"readable by others, not the group": write("other", good, 0o604),
		"writable by the group":             write("groupw", good, 0o660),
		"short":                             write("short", base64.StdEncoding.EncodeToString(make([]byte, 16)), 0o600),
		"not base64":                        write("text", "correct horse battery staple", 0o600),
		"missing":                           filepath.Join(dir, "missing"),
	} {
		if _, err := loadCookieKey(p, false); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
}

func TestCSRFGuard(t *testing.T) {
	s := testSealer(t, 1)
	g := newCSRFGuard(s)
	st := &cookieState{Handle: newHandle()}
	mine, theirs := s.csrfToken(st.Handle), s.csrfToken(newHandle())
	tests := []struct {
		name, method, site, origin, token string
		noSession                         bool
		want                              error
	}{
		{name: "same origin", method: "POST", site: "same-origin"},
		{name: "typed by the user", method: "POST", site: "none"},
		{name: "cross site", method: "POST", site: "cross-site", want: errCrossSite},
		{name: "same site, other origin", method: "POST", site: "same-site", want: errCrossSite},
		{name: "cross site with the token", method: "POST", site: "cross-site", token: mine, want: errCrossSite},
		{name: "origin matches", method: "DELETE", origin: "https://app.example"},
		{name: "origin of another site", method: "PUT", origin: "https://evil.example", want: errCrossSite},
		{name: "null origin", method: "POST", origin: "null", want: errCrossSite},
		{name: "no headers, token", method: "PATCH", token: mine},
		{name: "no headers, no token", method: "POST", want: errCSRFMissing},
		{name: "no headers, another session's token", method: "POST", token: theirs, want: errCSRFMissing},
		{name: "no headers, no session", method: "POST", noSession: true},
		{name: "cross-site navigation", method: "GET", site: "cross-site"},
		{name: "cross-site HEAD", method: "HEAD", site: "cross-site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://app.example/transfer", nil)
			if tt.site != "" {
				r.Header.Set("Sec-Fetch-Site", tt.site)
			}
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			if tt.token != "" {
				r.Header.Set(HeaderCSRFToken, tt.token)
			}
			sess := st
			if tt.noSession {
				sess = nil
			}
			err := g.checkOrigin(r)
			if err == nil {
				err = g.checkToken(r, sess)
			}
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("check = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCookieConfig_Validate(t *testing.T) {
	good := Config{IssuerURL: "https://issuer.example", LoginPath: "/login", PublicPaths: []string{"/static/", "/login"}}
	good.KeyFile = filepath.Join(t.TempDir(), DefaultKeyFile)
	good.EnsureDefaults()
	if errs := good.validate(); len(errs) != 0 {
		t.Fatalf("good config: %v", errs)
	}
	tests := map[string]func(c *Config){
		"no issuer":              func(c *Config) { c.IssuerURL = "" },
		"issuer not http":        func(c *Config) { c.IssuerURL = "ftp://issuer" },
		"idle beyond max age":    func(c *Config) { c.Idle = 2 * c.MaxAge },
		"negative max age":       func(c *Config) { c.MaxAge = -time.Second },
		"login on another site":  func(c *Config) { c.LoginPath = "//evil.example/login" },
		"login with a backslash": func(c *Config) { c.LoginPath = "/\\evil.example" },
		"login not a path":       func(c *Config) { c.LoginPath = "login" },
		"public with dots":       func(c *Config) { c.PublicPaths = []string{"/static/../admin"} },
		"public own prefix":      func(c *Config) { c.PublicPaths = []string{"/.herald/logout"} },
		"secret without id":      func(c *Config) { c.ClientSecret = "s" },
	}
	for name, mutate := range tests {
		c := good
		mutate(&c)
		if errs := c.validate(); len(errs) == 0 {
			t.Errorf("%s: valid", name)
		}
	}
}

func TestBFF_PublicPaths(t *testing.T) {
	b := &Sessions{cfg: Config{PublicPaths: []string{"/login", "/static/"}}}
	for path, want := range map[string]bool{
		"/login": true, "/login/": true, "/login/callback": true, "/static/app.css": true, "/static": true,
		"/loginx": false, "/": false, "/admin": false, "/static/../admin": false, "/login/..": false,
		"/login%2F..%2Fadmin": false, "//login": false,
	} {
		r := httptest.NewRequest("GET", "http://app.example"+path, nil)
		if got := b.public(r); got != want {
			t.Errorf("public(%s) = %v, want %v", path, got, want)
		}
	}
}

func TestTakeCookie(t *testing.T) {
	h := http.Header{"Cookie": {"theme=dark; " + CookieName + "=v1.abc; lang=en", CookieName + "=v1.def", "x=1"}}
	got := takeCookie(h)
	if len(got) != 2 || got[0] != "v1.abc" || got[1] != "v1.def" {
		t.Fatalf("taken %q", got)
	}
	if rest := h.Values("Cookie"); len(rest) != 2 || rest[0] != "theme=dark; lang=en" || rest[1] != "x=1" {
		t.Fatalf("left %q", rest)
	}
	if got := takeCookie(http.Header{"Cookie": {CookieName + "=only"}}); len(got) != 1 {
		t.Fatalf("taken %q", got)
	}

	set := http.Header{"Set-Cookie": {"theme=dark; Path=/", CookieName + "=forged; Path=/", strings.ToLower(CookieName) + "=x"}}
	takeSetCookie(set)
	if v := set.Values("Set-Cookie"); len(v) != 1 || v[0] != "theme=dark; Path=/" {
		t.Fatalf("Set-Cookie left %q", v)
	}
	line := sessionCookie("v1.x", time.Hour).String()
	for _, want := range []string{CookieName + "=v1.x", "Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=3600"} {
		if !strings.Contains(line, want) {
			t.Errorf("Set-Cookie %q lacks %s", line, want)
		}
	}
	if strings.Contains(strings.ToLower(line), "domain") {
		t.Errorf("Set-Cookie %q has a Domain: a __Host- cookie must not", line)
	}
}
