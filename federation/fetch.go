package federation

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
)

// Bounds of what is read from an identity provider.
const (
	// MaxKeys bounds the keys kept of one issuer's key set.
	MaxKeys = 64
	// maxBody bounds a discovery document or key set, in bytes.
	maxBody = 1 << 20
	// maxEntries bounds the entries of a key set looked at.
	maxEntries = 256
	// DefaultFetchTimeout bounds one HTTP request to a provider.
	DefaultFetchTimeout = 10 * time.Second
)

// Well-known paths (OpenID Connect Discovery 1.0 section 4, RFC 8414
// section 3, Shared Signals Framework 1.0 section 7.2).
const (
	wellKnownOIDC  = "/.well-known/openid-configuration"
	wellKnownOAuth = "/.well-known/oauth-authorization-server"
	wellKnownSSF   = "/.well-known/ssf-configuration"
)

// key is a usable key of a provider.
type key struct {
	jwk bus.JWK
	pub crypto.PublicKey
}

// keySet is the result of fetching a provider's key set.
type keySet struct {
	keys []key
	// skipped says, for each key left out, which and why.
	skipped []string
	// ttl is how long the set may be cached, from its response's
	// Cache-Control max-age or Expires; cached says whether it said.
	ttl    time.Duration
	cached bool
}

// fetcher reads providers' documents over HTTP.
type fetcher struct {
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
}

// newHTTPClient returns a copy of c (or a default client) that follows no
// redirect: the documents of a provider are read where its issuer URL and
// jwks_uri say, and nowhere a response points to.
func newHTTPClient(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &out
}

// get reads the JSON document at u: status 200, at most maxBody bytes.
func (f *fetcher) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("get %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("get %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode/100 == 3 {
			return nil, nil, &statusError{url: u, status: resp.StatusCode, note: fmt.Sprintf(" (redirect to %.128q not followed)", loc)}
		}
		return nil, nil, &statusError{url: u, status: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("get %s: %w", u, err)
	}
	if len(body) > maxBody {
		return nil, nil, fmt.Errorf("get %s: body larger than %d bytes", u, maxBody)
	}
	return body, resp.Header, nil
}

// statusError is a response other than 200 OK.
type statusError struct {
	url    string
	status int
	note   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("get %s: status %d%s", e.url, e.status, e.note)
}

// metadata is what Herald reads of a discovery or SSF configuration
// document.
type metadata struct {
	Issuer        string
	JWKSURI       string
	TokenEndpoint string
}

// pick returns the member of a metadata document read from u that the
// caller needs, checked.
type pick func(u string, m metadata) (string, error)

// pickJWKS picks the jwks_uri.
func pickJWKS(u string, m metadata) (string, error) { return pickURL(u, "jwks_uri", m.JWKSURI) }

// pickTokenEndpoint picks the token_endpoint.
func pickTokenEndpoint(u string, m metadata) (string, error) {
	return pickURL(u, "token_endpoint", m.TokenEndpoint)
}

// pickURL returns v, member name of the metadata read from u, once it is
// present and a URL Herald fetches.
func pickURL(u, name, v string) (string, error) {
	if v == "" {
		return "", fmt.Errorf("read %s: no %s", u, name)
	}
	if err := CheckURL(v); err != nil {
		return "", fmt.Errorf("read %s: %s: %w", u, name, err)
	}
	return v, nil
}

// discover reads the provider's OpenID Connect discovery document, or,
// if there is none, its RFC 8414 authorization server metadata, and
// returns its jwks_uri.
func (f *fetcher) discover(ctx context.Context, iss string) (string, error) {
	return f.discoverMember(ctx, iss, pickJWKS)
}

// discoverMember reads the provider's OpenID Connect discovery document,
// or, if there is none, its RFC 8414 authorization server metadata, and
// returns the member p picks.
func (f *fetcher) discoverMember(ctx context.Context, iss string, p pick) (string, error) {
	oidc := strings.TrimSuffix(iss, "/") + wellKnownOIDC
	uri, err := f.metadata(ctx, iss, oidc, p)
	if err == nil {
		return uri, nil
	}
	var se *statusError
	if !errors.As(err, &se) {
		return "", err
	}
	// RFC 8414 section 3.1: the well-known segment goes between the host
	// and the issuer's path.
	oauth, uerr := insertWellKnown(iss, wellKnownOAuth)
	if uerr != nil {
		return "", uerr
	}
	uri, err2 := f.metadata(ctx, iss, oauth, p)
	if err2 != nil {
		return "", fmt.Errorf("discover %s: %w; %w", iss, err, err2)
	}
	return uri, nil
}

// ssfConfiguration reads the provider's Shared Signals configuration
// and returns the jwks_uri of its SETs. The well-known segment goes
// between host and path, as in RFC 8414; for an issuer with a path, the
// form appending it to the issuer is tried next.
func (f *fetcher) ssfConfiguration(ctx context.Context, iss string) (string, error) {
	inserted, err := insertWellKnown(iss, wellKnownSSF)
	if err != nil {
		return "", err
	}
	uri, err := f.metadata(ctx, iss, inserted, pickJWKS)
	appended := strings.TrimSuffix(iss, "/") + wellKnownSSF
	var se *statusError
	if err == nil || appended == inserted || !errors.As(err, &se) {
		return uri, err
	}
	uri, err2 := f.metadata(ctx, iss, appended, pickJWKS)
	if err2 != nil {
		return "", fmt.Errorf("ssf configuration of %s: %w; %w", iss, err, err2)
	}
	return uri, nil
}

// insertWellKnown returns the URL of the well-known document wk of issuer
// iss, inserted between the host and the path (RFC 8414 section 3.1).
func insertWellKnown(iss, wk string) (string, error) {
	u, err := url.Parse(iss)
	if err != nil {
		return "", fmt.Errorf("issuer %s: %w", iss, err)
	}
	return u.Scheme + "://" + u.Host + wk + strings.TrimSuffix(u.EscapedPath(), "/"), nil
}

// metadata reads the metadata document at u of issuer iss and returns
// the member p picks. The document must name iss exactly (OpenID Connect
// Discovery 1.0 section 4.3, RFC 8414 section 3.3).
func (f *fetcher) metadata(ctx context.Context, iss, u string, p pick) (string, error) {
	body, _, err := f.get(ctx, u)
	if err != nil {
		return "", err
	}
	// Members by their exact names: encoding/json would also fill a field
	// from "ISSUER" or "Jwks_Uri", the last of them winning.
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return "", fmt.Errorf("read %s: %w", u, err)
	}
	var m metadata
	for name, dst := range map[string]*string{"issuer": &m.Issuer, "jwks_uri": &m.JWKSURI, "token_endpoint": &m.TokenEndpoint} {
		if v, ok := members[name]; ok {
			if err := json.Unmarshal(v, dst); err != nil {
				return "", fmt.Errorf("read %s: %s: %w", u, name, err)
			}
		}
	}
	if m.Issuer != iss {
		return "", fmt.Errorf("read %s: it names issuer %.128q, not %s", u, m.Issuer, iss)
	}
	return p(u, m)
}

// jwks reads the key set at u and keeps the keys Herald can verify
// signatures of algs with.
func (f *fetcher) jwks(ctx context.Context, u string, algs []string) (keySet, error) {
	body, h, err := f.get(ctx, u)
	if err != nil {
		return keySet{}, err
	}
	ks, err := parseJWKS(body, algs)
	if err != nil {
		return keySet{}, fmt.Errorf("read key set %s: %w", u, err)
	}
	ks.ttl, ks.cached = cacheLifetime(h, f.now())
	return ks, nil
}

// privateMembers are the JWK members of private and symmetric keys (RFC
// 7518 section 6): a key set carrying them is a leak, and such a key is
// never used.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// jwkDoc is a JWK as a provider publishes it.
type jwkDoc struct {
	Kty    string   `json:"kty"`
	Crv    string   `json:"crv"`
	X      string   `json:"x"`
	Y      string   `json:"y"`
	N      string   `json:"n"`
	E      string   `json:"e"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
}

// parseJWKS returns the keys of the JWK set body that verify signatures
// of one of algs: use sig or none, RSA (2048 bits or more), EC P-256 or
// OKP Ed25519, with a kid, without private members; at most MaxKeys. The
// others are listed in skipped. A set without a usable key is an error.
func parseJWKS(body []byte, algs []string) (keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return keySet{}, err
	}
	var ks keySet
	entries := doc.Keys
	if len(entries) > maxEntries {
		ks.skipped = append(ks.skipped, fmt.Sprintf("%d keys past the first %d", len(entries)-maxEntries, maxEntries))
		entries = entries[:maxEntries]
	}
	seen := make(map[string]bool)
	for i, raw := range entries {
		k, pub, err := parseJWK(raw, algs)
		if err == nil && seen[k.Kid] {
			err = errors.New("another key has the same kid")
		}
		if err == nil && len(ks.keys) == MaxKeys {
			err = fmt.Errorf("more than %d keys", MaxKeys)
		}
		if err != nil {
			if errors.Is(err, errNotSigning) {
				continue
			}
			ks.skipped = append(ks.skipped, fmt.Sprintf("key %d (kid %.64q): %v", i, kidOf(raw), err))
			continue
		}
		seen[k.Kid] = true
		ks.keys = append(ks.keys, key{jwk: k, pub: pub})
	}
	if len(ks.keys) == 0 {
		return ks, fmt.Errorf("no usable signing key (%d entries; %s)", len(doc.Keys), strings.Join(ks.skipped, "; "))
	}
	return ks, nil
}

// errNotSigning marks a key meant for encryption, left out silently.
var errNotSigning = errors.New("not a signing key")

// parseJWK reads one key of a provider's key set.
func parseJWK(raw json.RawMessage, algs []string) (bus.JWK, crypto.PublicKey, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return bus.JWK{}, nil, fmt.Errorf("not a JSON object: %w", err)
	}
	for _, m := range privateMembers {
		if _, ok := members[m]; ok {
			return bus.JWK{}, nil, fmt.Errorf("has private member %q: refused", m)
		}
	}
	var d jwkDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		return bus.JWK{}, nil, err
	}
	if d.Use != "" && d.Use != "sig" {
		return bus.JWK{}, nil, errNotSigning
	}
	if d.KeyOps != nil && !slices.Contains(d.KeyOps, "verify") {
		return bus.JWK{}, nil, errNotSigning
	}
	if d.Kid == "" {
		return bus.JWK{}, nil, errors.New("no kid")
	}
	alg := d.Alg
	if alg == "" {
		alg = inferAlg(d, algs)
	}
	if !slices.Contains(algs, alg) {
		return bus.JWK{}, nil, fmt.Errorf("kty %.16q alg %.16q is not an accepted algorithm", d.Kty, alg)
	}
	k := bus.JWK{Kty: d.Kty, Crv: d.Crv, X: d.X, Y: d.Y, N: d.N, E: d.E, Kid: d.Kid, Alg: alg, Use: "sig"}
	pub, err := k.ExternalPublicKey()
	if err != nil {
		return bus.JWK{}, nil, err
	}
	return k, pub, nil
}

// inferAlg returns the algorithm a key without alg signs with: ES256 for
// P-256, EdDSA for Ed25519, RS256 for RSA (PS256 if only that is
// accepted).
func inferAlg(d jwkDoc, algs []string) string {
	switch {
	case d.Kty == "EC" && d.Crv == "P-256":
		return bus.AlgES256
	case d.Kty == "OKP" && d.Crv == "Ed25519":
		return bus.AlgEdDSA
	case d.Kty == "RSA" && !slices.Contains(algs, bus.AlgRS256) && slices.Contains(algs, bus.AlgPS256):
		return bus.AlgPS256
	case d.Kty == "RSA":
		return bus.AlgRS256
	}
	return ""
}

// kidOf returns the kid of a raw key, if it has a string one.
func kidOf(raw json.RawMessage) string {
	var v struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(raw, &v)
	return v.Kid
}

// cacheLifetime returns how long a response with header h, received at
// now, may be cached (RFC 9111 section 4.2.1): Cache-Control max-age less
// Age, else Expires less Date. no-store and no-cache mean none. ok is
// false when the response says nothing.
func cacheLifetime(h http.Header, now time.Time) (time.Duration, bool) {
	var maxAge time.Duration
	found := false
	for _, line := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(val, `"`), 10, 64)
				if err != nil || n < 0 {
					return 0, true // RFC 9111 section 4.2.1: invalid means stale
				}
				maxAge = time.Duration(min(n, int64(365*24*time.Hour/time.Second))) * time.Second
				found = true
			}
		}
	}
	if found {
		if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
			maxAge -= time.Duration(min(age, int64(365*24*time.Hour/time.Second))) * time.Second
		}
		return max(maxAge, 0), true
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0, true // RFC 9111 section 5.3: an invalid date means expired
		}
		base := now
		if date, err := http.ParseTime(h.Get("Date")); err == nil {
			base = date
		}
		return max(t.Sub(base), 0), true
	}
	return 0, false
}
