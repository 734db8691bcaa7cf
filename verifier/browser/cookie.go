package browser

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/heraldsec/herald/internal/secretfile"
	"github.com/heraldsec/herald/verifier"
)

// CookieName is the browser session cookie. The __Host- prefix makes the
// browser refuse it unless it is Secure, has Path=/ and no Domain (RFC
// 6265bis section 4.1.3.2), so neither a sibling subdomain nor a plain-HTTP
// page can plant or overwrite it.
const CookieName = "__Host-herald"

// DefaultKeyFile is the sealing key's file in a sidecar's data directory
// when no Config.KeyFile is given.
const DefaultKeyFile = "cookie.key"

// Bounds of the cookie and its sealing key.
const (
	cookieKeySize = 32
	// maxCookieBytes keeps the whole Set-Cookie line under the 4096 bytes
	// every browser stores (RFC 6265 section 6.1).
	maxCookieBytes = 3800
	cookieVersion  = "v1."
)

// errCookie is why a cookie that is not ours, or was tampered with, is
// refused; it is a malformed credential.
var errCookie = fmt.Errorf("%w: session cookie does not open", verifier.ErrMalformed)

// cookieState is what a session cookie holds, sealed: the session's tokens
// and the times the sidecar enforces. The browser holds only ciphertext.
type cookieState struct {
	// Handle names this browser session; new at every login, so a session
	// id is never carried across a login (no fixation). The CSRF token is
	// derived from it.
	Handle string `json:"h"`
	// Gen counts refreshes; the newest state of a handle wins.
	Gen     uint64 `json:"g"`
	Session string `json:"sid"`
	Access  string `json:"at"`
	Refresh string `json:"rt"`
	// Created and Seen are Unix seconds: login and last activity.
	Created int64 `json:"c"`
	Seen    int64 `json:"s"`
}

// sealer seals session cookies with AES-256-GCM and derives their CSRF
// tokens. Both keys come from one secret through HKDF, so that replicas
// sharing the secret open each other's cookies. It is safe for concurrent
// use.
type sealer struct {
	aead  cipher.AEAD
	csrf  []byte
	claim []byte // names a refresh in HERALD_BFF (refreshrelay.go)
}

func newSealer(secret []byte) (*sealer, error) {
	if len(secret) < cookieKeySize {
		return nil, fmt.Errorf("cookie key: %d bytes, want at least %d", len(secret), cookieKeySize)
	}
	encKey, err := hkdf.Key(sha256.New, secret, nil, "herald cookie v1 seal", 32)
	if err != nil {
		return nil, fmt.Errorf("cookie key: %w", err)
	}
	csrfKey, err := hkdf.Key(sha256.New, secret, nil, "herald cookie v1 csrf", 32)
	if err != nil {
		return nil, fmt.Errorf("cookie key: %w", err)
	}
	claimKey, err := hkdf.Key(sha256.New, secret, nil, "herald cookie v1 refresh claim", 32)
	if err != nil {
		return nil, fmt.Errorf("cookie key: %w", err)
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("cookie key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("cookie key: %w", err)
	}
	return &sealer{aead: aead, csrf: csrfKey, claim: claimKey}, nil
}

// seal returns the cookie value of st: version, then base64url of a random
// nonce and the ciphertext, authenticated with the cookie's name.
func (s *sealer) seal(st *cookieState) (string, error) {
	v, err := s.sealData(st, []byte(CookieName))
	if err != nil {
		return "", fmt.Errorf("seal session cookie: %w", err)
	}
	if len(v) > maxCookieBytes {
		return "", fmt.Errorf("seal session cookie: %d bytes, more than a browser keeps (%d): are the access tokens too large?", len(v), maxCookieBytes)
	}
	return v, nil
}

// sealData returns the JSON of x encrypted and authenticated with ad, in
// the cookie's form. Different ad keep a value sealed for one purpose from
// being opened for another.
func (s *sealer) sealData(x any, ad []byte) (string, error) {
	plain, err := json.Marshal(x)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return cookieVersion + base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, plain, ad)), nil
}

// open authenticates and decrypts a cookie value; anything else fails with
// errCookie.
func (s *sealer) open(v string) (*cookieState, error) {
	if len(v) > maxCookieBytes {
		return nil, errCookie
	}
	var st cookieState
	if !s.openData(v, []byte(CookieName), &st) || st.Handle == "" || st.Refresh == "" || st.Access == "" {
		return nil, errCookie
	}
	return &st, nil
}

// openData authenticates v with ad, decrypts it and decodes the JSON into
// x; it reports whether all of that succeeded.
func (s *sealer) openData(v string, ad []byte, x any) bool {
	if !strings.HasPrefix(v, cookieVersion) {
		return false
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(v[len(cookieVersion):])
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return false
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], ad)
	return err == nil && json.Unmarshal(plain, x) == nil
}

// csrfToken is the CSRF token of a browser session: an HMAC of its
// handle, so it changes at every login and cannot be computed without the
// key.
func (s *sealer) csrfToken(handle string) string { return macString(s.csrf, handle) }

// checkCSRFToken reports whether tok is the CSRF token of handle.
func (s *sealer) checkCSRFToken(handle, tok string) bool {
	return subtle.ConstantTimeCompare([]byte(s.csrfToken(handle)), []byte(tok)) == 1
}

// claimKey names the refresh of refreshToken in HERALD_BFF: an HMAC of it,
// so that the bucket shows no token, and a key no one without the cookie
// key can compute to claim a refresh in advance.
func (s *sealer) claimKey(refreshToken string) string { return macString(s.claim, refreshToken) }

// macString returns base64url of the HMAC-SHA256 of msg under key.
func macString(key []byte, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newHandle returns a random browser session handle (128 bits).
func newHandle() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// sessionCookie returns the Set-Cookie of a session cookie with value v
// that the browser keeps for maxAge (RFC 6265bis: Secure, HttpOnly so
// JavaScript never reads it, SameSite=Lax so other sites' subrequests and
// form posts do not carry it).
func sessionCookie(v string, maxAge time.Duration) *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: v, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: max(1, int(maxAge/time.Second))}
}

// clearedCookie is the Set-Cookie that deletes the session cookie.
func clearedCookie() *http.Cookie {
	return &http.Cookie{Name: CookieName, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, MaxAge: -1}
}

// cookieKeyForbidden are the permissions a cookie key file must not grant:
// none to others, and no more than reading to its group, since Kubernetes
// makes a mounted secret readable by the pod's fsGroup (a defaultMode of
// 0400 becomes 0440), as for the issuer's event key.
const cookieKeyForbidden = secretfile.GroupReadable

// loadCookieKey reads the sealing secret from path: base64 (standard or
// URL alphabet) of at least 32 bytes, in a file that no one but its owner
// (and its group, read-only) may read. With create, a missing file is
// created with a new random key, mode 0600.
func loadCookieKey(path string, create bool) ([]byte, error) {
	b, _, err := secretfile.ReadFile("cookie key", path, cookieKeyForbidden)
	var me *secretfile.ModeError
	switch {
	case errors.Is(err, fs.ErrNotExist) && create:
		return createCookieKey(path)
	case errors.As(err, &me):
		return nil, fmt.Errorf("cookie key %s: mode %v lets others read it; want 0600, 0400 or 0440 (chmod 600, or defaultMode: 0400 for a Kubernetes secret)",
			path, me.Mode)
	case err != nil:
		return nil, fmt.Errorf("cookie key: %w", err)
	}
	text := strings.TrimSpace(string(b))
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		key, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(text, "="))
	}
	if err != nil || len(key) < cookieKeySize {
		return nil, fmt.Errorf("cookie key %s: want base64 of at least %d random bytes (openssl rand -base64 32)", path, cookieKeySize)
	}
	return key, nil
}

// createCookieKey writes a new random key to path, mode 0600, through a
// temporary file renamed into place, and returns it.
func createCookieKey(path string) ([]byte, error) {
	key := make([]byte, cookieKeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24)
	if err := secretfile.Write(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n")); err != nil {
		return nil, fmt.Errorf("create cookie key: %w", err)
	}
	return key, nil
}

// takeCookie removes the session cookie from a request's Cookie headers
// and returns its values.
func takeCookie(h http.Header) []string {
	var vals []string
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return nil
	}
	kept := lines[:0:0]
	for _, line := range lines {
		var rest []string
		for part := range strings.SplitSeq(line, ";") {
			name, v, _ := strings.Cut(strings.TrimSpace(part), "=")
			if strings.TrimSpace(name) == CookieName {
				vals = append(vals, strings.Trim(strings.TrimSpace(v), `"`))
				continue
			}
			if strings.TrimSpace(part) != "" {
				rest = append(rest, strings.TrimSpace(part))
			}
		}
		if len(rest) > 0 {
			kept = append(kept, strings.Join(rest, "; "))
		}
	}
	h.Del("Cookie")
	if len(kept) > 0 {
		h["Cookie"] = kept
	}
	return vals
}

// takeSetCookie removes every Set-Cookie of the session cookie from h.
func takeSetCookie(h http.Header) {
	lines := h.Values("Set-Cookie")
	if len(lines) == 0 {
		return
	}
	kept := lines[:0:0]
	for _, line := range lines {
		name, _, _ := strings.Cut(line, "=")
		if !strings.EqualFold(strings.TrimSpace(name), CookieName) {
			kept = append(kept, line)
		}
	}
	h.Del("Set-Cookie")
	if len(kept) > 0 {
		h["Set-Cookie"] = kept
	}
}
