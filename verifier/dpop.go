package verifier

import (
	"container/heap"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/jsonstrict"
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
	// dpopReplayPerKey bounds the proof ids a verifier remembers of one
	// key, so that one client cannot push out the others' proofs.
	dpopReplayPerKey = 1 << 10
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
	dpopHeaderNames = jsonstrict.Names(reflect.TypeFor[dpopHeader]())
	dpopClaimNames  = jsonstrict.Names(reflect.TypeFor[dpopClaims]())
	jwkNames        = jsonstrict.Names(reflect.TypeFor[bus.JWK]())
)

// CheckDPoP checks a DPoP proof (RFC 9449 section 4.3) for a request with
// method and URL at now, as VerifyDPoP does, then, when replay is not nil,
// records its jti there (Use), refusing a proof seen before. Callers that
// must first compare the proof's key with a token's cnf.jkt call
// VerifyDPoP, compare, then Use, so that only a proof by the bound key is
// ever recorded.
func CheckDPoP(proof, method, rawURL, accessToken string, now time.Time, replay *ReplayCache) (*DPoPProof, error) {
	p, err := VerifyDPoP(proof, method, rawURL, accessToken, now)
	if err != nil {
		return nil, err
	}
	if replay != nil {
		if err := replay.Use(p, now); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// VerifyDPoP checks a DPoP proof (RFC 9449 section 4.3) for a request with
// method and URL at now: typ dpop+jwt, an allowed asymmetric alg, a public
// jwk that verifies the signature, htm and htu of this request, a recent
// iat, and, when accessToken is not empty, ath, its hash. It returns the
// proof with its key's thumbprint. It records nothing: replays are the
// caller's to refuse, with ReplayCache.Use.
func VerifyDPoP(proof, method, rawURL, accessToken string, now time.Time) (*DPoPProof, error) {
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
	if err := jsonstrict.CheckMembers(raw, dpopHeaderNames); err != nil {
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
	if err := jsonstrict.CheckMembers(hdr.JWK, jwkNames); err != nil {
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
	if err := jsonstrict.CheckMembers(raw, dpopClaimNames); err != nil {
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
	return &DPoPProof{JKT: jkt, ID: c.ID, At: c.At.Time}, nil
}

// sameHTU compares URLs as RFC 9449 section 4.3 asks: without query and
// fragment, scheme and host case-insensitively, paths as RFC 3986 section
// 6.2.2 normalises them (htuPath).
func sameHTU(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil || ua.Host == "" {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) && htuPath(ua) == htuPath(ub)
}

// htuPath returns u's path as written, "/" when empty, in the form RFC
// 3986 section 6.2.2 compares: an unreserved character percent-encoded
// or not is the same (%7E is ~), hex digits in upper case, and any other
// byte that is not a reserved character percent-encoded. An encoded
// reserved character stays encoded: /a%2Fb is one segment, which an
// application may read as another resource than /a/b.
func htuPath(u *url.URL) string {
	p := u.RawPath // as written, when that is not the default encoding of u.Path
	if p == "" {
		p = u.EscapedPath()
	}
	if p == "" {
		return "/"
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) {
			if d, err := strconv.ParseUint(p[i+1:i+3], 16, 8); err == nil {
				i += 2
				if unreserved(byte(d)) {
					b.WriteByte(byte(d))
				} else {
					b.WriteByte('%')
					b.WriteByte(hex[d>>4])
					b.WriteByte(hex[d&15])
				}
				continue
			}
		}
		if unreserved(c) || strings.IndexByte(":/?#[]@!$&'()*+,;=", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// unreserved reports whether c is an unreserved character of RFC 3986.
func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// ReplayCache remembers DPoP proof ids until they could no longer be
// accepted, so that each proof is used once. It is bounded in count: each
// key holds at most a fixed number of proof ids, the whole cache at most
// max, and it knows at most 2*max keys. Room is made by forgetting the
// oldest proof id of the key itself, past its bound, or, when the cache is
// full, of the key that holds the most, and raising that key's floor: from
// then on a proof of that key no newer than the one forgotten is refused,
// as a possible replay. A replay comes from the same key, so nothing
// forgotten can be replayed, and the floor never touches another key: a
// full cache does not refuse a fresh proof of an honest client. A key
// left with a floor alone is remembered until the floor is past; a new key
// beyond 2*max is refused (only with as many keys in use at once). It is
// safe for concurrent use.
type ReplayCache struct {
	max    int
	perKey int

	mu    sync.Mutex
	keys  map[string]*replayKey      // by key thumbprint
	order deadlineHeap[*replayEntry] // every id held, the soonest to expire first
	bare  deadlineHeap[*replayKey]   // keys holding no id, only a floor, the soonest past first
}

// replayKey is what a ReplayCache holds of one key's proofs.
type replayKey struct {
	jkt   string
	ids   map[string]*replayEntry
	floor time.Time // this key's ids expiring at or before this were forgotten early
	index int       // in ReplayCache.bare, or -1
}

// replayEntry is one remembered proof id.
type replayEntry struct {
	jkt, id string
	until   time.Time // when the proof can no longer be accepted
	index   int       // in ReplayCache.order
}

func (e *replayEntry) deadline() time.Time { return e.until }
func (e *replayEntry) setIndex(i int)      { e.index = i }
func (k *replayKey) deadline() time.Time   { return k.floor }
func (k *replayKey) setIndex(i int)        { k.index = i }

// deadlineHeap orders what a ReplayCache holds by deadline, the soonest
// first (container/heap), keeping each element's index current; a popped
// element's index is -1.
type deadlineHeap[T interface {
	deadline() time.Time
	setIndex(int)
}] []T

func (h deadlineHeap[T]) Len() int           { return len(h) }
func (h deadlineHeap[T]) Less(i, j int) bool { return h[i].deadline().Before(h[j].deadline()) }
func (h deadlineHeap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].setIndex(i)
	h[j].setIndex(j)
}
func (h *deadlineHeap[T]) Push(x any) {
	e := x.(T)
	e.setIndex(len(*h))
	*h = append(*h, e)
}
func (h *deadlineHeap[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	var zero T
	old[len(old)-1] = zero
	*h = old[:len(old)-1]
	e.setIndex(-1)
	return e
}

// NewReplayCache returns a cache of at most n proof ids, and of at most
// dpopReplayPerKey (or n, if lower) of any one key.
func NewReplayCache(n int) *ReplayCache {
	n = max(n, 1)
	return &ReplayCache{max: n, perKey: min(n, dpopReplayPerKey), keys: make(map[string]*replayKey)}
}

// errReplayOld refuses a proof no newer than one its key had forgotten.
var errReplayOld = fmt.Errorf("%w: proof replayed or older than the proofs this verifier remembers of its key", ErrDPoPProof)

// Use records the id of proof p at now and refuses, with ErrDPoPProof, a
// proof seen before, no newer than one of its key the cache had to
// forget, or of a new key when the cache knows as many keys as it may.
// Call it only once p is known to be good for the request: its key bound
// to the valid token it comes with.
func (c *ReplayCache) Use(p *DPoPProof, now time.Time) error {
	until := p.At.Add(DPoPMaxAge + DefaultLeeway)
	if !until.After(now) {
		return fmt.Errorf("%w: iat outside the accepted window", ErrDPoPProof)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.order) > 0 && !c.order[0].until.After(now) {
		c.forget(heap.Pop(&c.order).(*replayEntry), now)
	}
	for len(c.bare) > 0 && !c.bare[0].floor.After(now) {
		delete(c.keys, heap.Pop(&c.bare).(*replayKey).jkt)
	}
	k := c.keys[p.JKT]
	if k == nil {
		if len(c.keys) >= 2*c.max {
			return fmt.Errorf("%w: too many DPoP keys in use at once; retry with a fresh proof", ErrDPoPProof)
		}
		k = &replayKey{jkt: p.JKT, ids: make(map[string]*replayEntry), index: -1}
		c.keys[p.JKT] = k
	}
	if _, ok := k.ids[p.ID]; ok {
		return fmt.Errorf("%w: proof replayed", ErrDPoPProof)
	}
	if !until.After(k.floor) {
		return errReplayOld
	}
	if len(k.ids) >= c.perKey {
		c.forgetOldest(k, now)
	}
	if len(c.order) >= c.max {
		var big *replayKey
		for _, o := range c.keys {
			if big == nil || len(o.ids) > len(big.ids) {
				big = o
			}
		}
		c.forgetOldest(big, now)
	}
	if !until.After(k.floor) { // k forgot its oldest, and p is no newer
		c.drop(k, now)
		return errReplayOld
	}
	e := &replayEntry{jkt: p.JKT, id: p.ID, until: until}
	heap.Push(&c.order, e)
	k.ids[p.ID] = e
	if k.index >= 0 {
		heap.Remove(&c.bare, k.index)
	}
	return nil
}

// forgetOldest forgets k's proof id that expires first and raises k's
// floor to it. The caller holds c.mu.
func (c *ReplayCache) forgetOldest(k *replayKey, now time.Time) {
	var oldest *replayEntry
	for _, e := range k.ids {
		if oldest == nil || e.until.Before(oldest.until) {
			oldest = e
		}
	}
	if oldest == nil {
		return
	}
	heap.Remove(&c.order, oldest.index)
	if oldest.until.After(k.floor) {
		k.floor = oldest.until
	}
	c.forget(oldest, now)
}

// forget deletes e, already out of c.order, from its key. The caller
// holds c.mu.
func (c *ReplayCache) forget(e *replayEntry, now time.Time) {
	if k := c.keys[e.jkt]; k != nil {
		delete(k.ids, e.id)
		c.drop(k, now)
	}
}

// drop deletes k once it holds no proof id and its floor is past, and
// keeps it among the bare keys while it holds a floor alone. The caller
// holds c.mu.
func (c *ReplayCache) drop(k *replayKey, now time.Time) {
	switch {
	case len(k.ids) > 0 || k.index >= 0:
	case !k.floor.After(now):
		delete(c.keys, k.jkt)
	default:
		heap.Push(&c.bare, k)
	}
}

// len returns how many proof ids c holds.
func (c *ReplayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order)
}

// AccessToken returns the access token of r's Authorization header and
// its scheme, "Bearer" (RFC 6750) or "DPoP" (RFC 9449 section 7.1). It
// returns ErrMissing when there is none and ErrMalformed when the header
// is not a single well-formed credential.
func AccessToken(r *http.Request) (token, scheme string, err error) {
	return headerToken(r.Header)
}

// headerToken is AccessToken of the headers h.
func headerToken(h http.Header) (token, scheme string, err error) {
	vals := h.Values("Authorization")
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

// Headers a forward-auth proxy passes the original request's method, URI,
// host and scheme in: nginx X-Original-Method and X-Original-URI, Traefik
// X-Forwarded-Method and X-Forwarded-Uri, and X-Forwarded-Host and
// X-Forwarded-Proto. The verifier reads them only from a trusted proxy,
// whose configuration must set every one of them (deploy/ does).
var (
	forwardedMethod = []string{"X-Forwarded-Method", "X-Original-Method"}
	forwardedURI    = []string{"X-Forwarded-Uri", "X-Original-URI"}
)

// Target is a request as a verdict needs it: the headers that carry its
// access token and DPoP proof, and the method and absolute URL a proof
// must name (RFC 9449 section 4.3, htm and htu). RequestTarget makes one
// of an *http.Request; a front end told about a request in other terms
// (Envoy's gRPC CheckRequest, package verifier/extauthz) fills one in.
type Target struct {
	// Method is the request's method, e.g. GET.
	Method string
	// URL is the request's absolute URL, scheme://host/path?query. Empty
	// when it is not known: a token bound to a DPoP key is then refused
	// with ErrDPoPProof.
	URL string
	// Header holds the request's headers: Authorization and DPoP are read.
	Header http.Header
}

// TrustsPeer reports whether addr is one of Config.TrustedProxies: a peer
// whose description of another request (forward auth) a DPoP check
// believes.
func (v *Verifier) TrustsPeer(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range v.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// trustedPeer reports whether r comes straight from a peer in
// Config.TrustedProxies.
func (v *Verifier) trustedPeer(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	return v.TrustsPeer(ap.Addr())
}

// RequestTarget returns the Target of r: its headers, and the method and
// URL a DPoP proof must name. They are r's own method, URI and Host, and
// its scheme (https over TLS), with two
// exceptions for a peer in Config.TrustedProxies: X-Forwarded-Proto names
// the scheme (a TLS-terminating proxy in front), and, when forwardAuth
// (the request asks /v1/verify about another request), the forward-auth
// headers name the original request's method, URI and host. Anyone else's
// such headers are ignored: in proxy mode and in Middleware the request
// checked is the request served.
func (v *Verifier) RequestTarget(r *http.Request, forwardAuth bool) Target {
	method, uri, host := r.Method, r.URL.RequestURI(), r.Host
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if v.trustedPeer(r) {
		first := func(names []string, def string) string {
			for _, n := range names {
				if v := r.Header.Get(n); v != "" {
					return v
				}
			}
			return def
		}
		if p := strings.ToLower(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if forwardAuth {
			method = first(forwardedMethod, method)
			uri = first(forwardedURI, uri)
			host = first([]string{"X-Forwarded-Host"}, host)
		}
	}
	return Target{Method: method, URL: scheme + "://" + host + uri, Header: r.Header}
}

// VerifyRequest checks the access token of r and, when the token is bound
// to a DPoP key, the request's DPoP proof: a bound token needs the DPoP
// scheme and a fresh proof by its key for this request, so a copied token
// is useless without the key. Unbound tokens work with either scheme.
// forwardAuth says r asks about another request (/v1/verify): see
// RequestTarget. It returns the claims and the kid of the key that
// verified the token, as Check does, and records no metrics (see Observe).
func (v *Verifier) VerifyRequest(r *http.Request, forwardAuth bool) (*Claims, string, error) {
	return v.VerifyTarget(v.RequestTarget(r, forwardAuth))
}

// VerifyTarget is VerifyRequest of the request t describes: its access
// token, and the DPoP proof of a bound token against t.Method and t.URL.
// It returns as VerifyRequest does.
func (v *Verifier) VerifyTarget(t Target) (*Claims, string, error) {
	tok, scheme, err := headerToken(t.Header)
	if err != nil {
		return nil, "", err
	}
	c, kid, err := v.verify(tok)
	if err != nil || c.Confirmation == nil || c.Confirmation.JKT == "" {
		return c, kid, err
	}
	proofs := t.Header.Values(HeaderDPoP)
	if scheme != "DPoP" || len(proofs) != 1 {
		return nil, "", ErrDPoPRequired
	}
	if t.URL == "" {
		return nil, "", fmt.Errorf("%w: the request's URL is not known", ErrDPoPProof)
	}
	now := v.cfg.Now()
	p, err := VerifyDPoP(proofs[0], t.Method, t.URL, tok, now)
	if err != nil {
		return nil, "", err
	}
	if p.JKT != c.Confirmation.JKT {
		return nil, "", fmt.Errorf("%w: signed by another key than the token is bound to", ErrDPoPProof)
	}
	// Only now, with the token valid and the proof by its key, is the
	// proof's id worth remembering: nobody without both can fill the cache.
	if err := v.replay.Use(p, now); err != nil {
		return nil, "", err
	}
	return c, kid, nil
}
