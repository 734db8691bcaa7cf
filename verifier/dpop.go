package verifier

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
)

// DPoP (RFC 9449) sender-constrains tokens: a token bound to a key (its
// cnf.jkt) is only accepted with a fresh proof signed by that key, for this
// request's method and URL, so a copied token is useless without the key.
const (
	// DPoPMaxAge is how old a proof's iat may be.
	DPoPMaxAge = 60 * time.Second
	// DPoPMaxSize bounds a proof, in bytes, before parsing.
	DPoPMaxSize = 4 << 10
	// HeaderDPoP carries the proof (RFC 9449 section 4.1).
	HeaderDPoP = "DPoP"
	// dpopReplayMax bounds the proof ids a verifier remembers.
	dpopReplayMax = 1 << 18
)

// Reasons a DPoP-bound request is refused (RFC 9449 section 7.1).
var (
	ErrDPoPProof    = &Error{"invalid_dpop_proof", "verifier: invalid DPoP proof"}
	ErrDPoPRequired = &Error{"dpop_required", "verifier: token is bound to a key; a DPoP proof is required"}
)

// Confirmation is the cnf claim (RFC 7800): the thumbprint of the key a
// token is bound to.
type Confirmation struct {
	JKT string `json:"jkt,omitempty"`
}

// DPoPProof is a checked proof.
type DPoPProof struct {
	// JKT is the RFC 7638 thumbprint of the proof's key.
	JKT string
	ID  string
	At  time.Time
}

type dpopClaims struct {
	ID     string       `json:"jti"`
	Method string       `json:"htm"`
	URL    string       `json:"htu"`
	At     *NumericDate `json:"iat"`
	ATH    string       `json:"ath,omitempty"`
}

// dpopHeader is the JOSE header of a DPoP proof.
type dpopHeader struct {
	Typ string          `json:"typ"`
	Alg string          `json:"alg"`
	JWK json.RawMessage `json:"jwk"`
}

// Member names of a proof's header, claims and key: checkMembers refuses
// duplicates of any member and case variants of these (RFC 7515 section
// 5.2 allows refusing duplicates; JOSE names are case-sensitive).
var (
	dpopHeaderNames = jsonNames(reflect.TypeFor[dpopHeader]())
	dpopClaimNames  = jsonNames(reflect.TypeFor[dpopClaims]())
	jwkNames        = jsonNames(reflect.TypeFor[bus.JWK]())
)

// CheckDPoP checks a DPoP proof (RFC 9449 section 4.3) for a request with
// method and URL at now: typ dpop+jwt, an allowed asymmetric alg, a public
// jwk that verifies the signature, htm and htu of this request, a recent
// iat, a jti never seen before (replay), and, when accessToken is not
// empty, ath, its hash. It returns the proof with its key's thumbprint.
func CheckDPoP(proof, method, rawURL, accessToken string, now time.Time, replay *ReplayCache) (*DPoPProof, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrDPoPProof, fmt.Sprintf(format, args...))
	}
	if proof == "" || len(proof) > DPoPMaxSize {
		return nil, bad("missing or too large")
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		return nil, bad("not a compact JWS")
	}
	enc := base64.RawURLEncoding.Strict()
	var hdr dpopHeader
	raw, err := enc.DecodeString(parts[0])
	if err != nil {
		return nil, bad("malformed header")
	}
	if err := checkMembers(raw, dpopHeaderNames); err != nil {
		return nil, bad("header: %v", err)
	}
	if json.Unmarshal(raw, &hdr) != nil {
		return nil, bad("malformed header")
	}
	if !strings.EqualFold(hdr.Typ, "dpop+jwt") {
		return nil, bad("typ %q is not dpop+jwt", hdr.Typ)
	}
	var signer jwt.SigningMethod
	switch hdr.Alg {
	case bus.AlgEdDSA:
		signer = jwt.SigningMethodEdDSA
	case bus.AlgES256:
		signer = jwt.SigningMethodES256
	default:
		return nil, bad("alg %q is not allowed", hdr.Alg)
	}
	if err := checkMembers(hdr.JWK, jwkNames); err != nil {
		return nil, bad("jwk: %v", err)
	}
	jkt, pub, err := bus.ProofKey(hdr.JWK, hdr.Alg)
	if err != nil {
		return nil, bad("%v", err)
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		return nil, bad("malformed signature")
	}
	if err := signer.Verify(parts[0]+"."+parts[1], sig, pub); err != nil {
		return nil, bad("bad signature")
	}
	var c dpopClaims
	raw, err = enc.DecodeString(parts[1])
	if err != nil {
		return nil, bad("malformed claims")
	}
	if err := checkMembers(raw, dpopClaimNames); err != nil {
		return nil, bad("claims: %v", err)
	}
	if json.Unmarshal(raw, &c) != nil {
		return nil, bad("malformed claims")
	}
	switch {
	case c.ID == "" || len(c.ID) > 256:
		return nil, bad("jti missing")
	case c.At == nil:
		return nil, bad("iat missing")
	case c.At.After(now.Add(DefaultLeeway)) || c.At.Before(now.Add(-DPoPMaxAge)):
		return nil, bad("iat outside the accepted window")
	case c.Method != method:
		return nil, bad("htm %q is not the request's method %s", c.Method, method)
	case !sameHTU(c.URL, rawURL):
		return nil, bad("htu is not the request's URL")
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) {
			return nil, bad("ath does not match the access token")
		}
	}
	if replay != nil && !replay.first(jkt+":"+c.ID, c.At.Add(DPoPMaxAge+DefaultLeeway)) {
		return nil, bad("proof replayed")
	}
	return &DPoPProof{JKT: jkt, ID: c.ID, At: c.At.Time}, nil
}

// sameHTU compares URLs as RFC 9449 section 4.3 asks: without query and
// fragment, scheme and host case-insensitively.
func sameHTU(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil || ua.Host == "" {
		return false
	}
	path := func(u *url.URL) string {
		if u.Path == "" {
			return "/"
		}
		return u.Path
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) && path(ua) == path(ub)
}

// ReplayCache remembers DPoP proof ids until they could no longer be
// accepted, so that each proof is used once. It is bounded: when full it
// refuses new proofs rather than forget live ones (fail closed). It is
// safe for concurrent use.
type ReplayCache struct {
	max int

	mu    sync.Mutex
	seen  map[string]time.Time
	swept time.Time
}

// NewReplayCache returns a cache of at most max proof ids.
func NewReplayCache(max int) *ReplayCache {
	return &ReplayCache{max: max, seen: make(map[string]time.Time)}
}

// first records id until until and reports whether it was new.
func (c *ReplayCache) first(id string, until time.Time) bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) > time.Second || len(c.seen) >= c.max {
		for k, t := range c.seen {
			if now.After(t) {
				delete(c.seen, k)
			}
		}
		c.swept = now
	}
	if t, ok := c.seen[id]; ok && now.Before(t) {
		return false
	}
	if len(c.seen) >= c.max {
		return false
	}
	c.seen[id] = until
	return true
}

// AccessToken returns the access token of r's Authorization header and
// its scheme, "Bearer" (RFC 6750) or "DPoP" (RFC 9449 section 7.1). It
// returns ErrMissing when there is none and ErrMalformed when the header
// is not a single well-formed credential.
func AccessToken(r *http.Request) (token, scheme string, err error) {
	vals := r.Header.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", "", ErrMissing
	case 1:
	default:
		return "", "", fmt.Errorf("%w: more than one Authorization header", ErrMalformed)
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	switch {
	case !ok:
		return "", "", ErrMissing
	case strings.EqualFold(scheme, "Bearer"):
		scheme = "Bearer"
	case strings.EqualFold(scheme, "DPoP"):
		scheme = "DPoP"
	default:
		return "", "", ErrMissing
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", "", fmt.Errorf("%w: bad %s credential", ErrMalformed, scheme)
	}
	return tok, scheme, nil
}

// requestTarget returns the method and URL a DPoP proof must name: the
// original request's, as forward-auth proxies pass them (nginx
// X-Original-Method and X-Original-URI, Traefik X-Forwarded-Method and
// X-Forwarded-Uri, with X-Forwarded-Proto and X-Forwarded-Host), else r's own.
func requestTarget(r *http.Request) (method, target string) {
	first := func(names ...string) string {
		for _, n := range names {
			if v := r.Header.Get(n); v != "" {
				return v
			}
		}
		return ""
	}
	method = first("X-Forwarded-Method", "X-Original-Method")
	if method == "" {
		method = r.Method
	}
	uri := first("X-Forwarded-Uri", "X-Original-URI")
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	scheme := first("X-Forwarded-Proto")
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	host := first("X-Forwarded-Host")
	if host == "" {
		host = r.Host
	}
	return method, scheme + "://" + host + uri
}

// verifyRequest checks the access token of r and, when the token is bound
// to a DPoP key, the request's DPoP proof: a bound token needs the DPoP
// scheme and a fresh proof by its key for this request, so a copied token
// is useless without the key. Unbound tokens work with either scheme.
func (v *Verifier) verifyRequest(r *http.Request) (*Claims, string, error) {
	tok, scheme, err := AccessToken(r)
	if err != nil {
		return nil, "", err
	}
	c, kid, err := v.verify(tok)
	if err != nil || c.Confirmation == nil || c.Confirmation.JKT == "" {
		return c, kid, err
	}
	proofs := r.Header.Values(HeaderDPoP)
	if scheme != "DPoP" || len(proofs) != 1 {
		return nil, "", ErrDPoPRequired
	}
	method, target := requestTarget(r)
	p, err := CheckDPoP(proofs[0], method, target, tok, v.cfg.Now(), v.replay)
	if err != nil {
		return nil, "", err
	}
	if p.JKT != c.Confirmation.JKT {
		return nil, "", fmt.Errorf("%w: signed by another key than the token is bound to", ErrDPoPProof)
	}
	return c, kid, nil
}
