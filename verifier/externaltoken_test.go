package verifier

import (
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/store"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// extEnv is a verifier over a key set that holds Herald's test keys and a
// trusted external provider's, with a real Pebble denylist.
type extEnv struct {
	*testKeys
	idp  *verifiertest.IdP
	ks   *KeySet
	db   *store.DB
	v    *Verifier
	cfg  Config
	trus bus.Trust
}

// newExtEnv builds an extEnv; trust, if not nil, edits the provider's
// trust entry and cfg the verifier's config before use.
func newExtEnv(t *testing.T, trust func(*bus.Trust), cfg func(*Config)) *extEnv {
	t.Helper()
	e := &extEnv{testKeys: newTestKeys(t), idp: verifiertest.NewIdP(t, idpIssuer), ks: NewKeySet(nil, nil)}
	for _, jwk := range [][]byte{e.EdJWK, e.EsJWK} {
		if err := putKey(t, e.ks, jwk); err != nil {
			t.Fatal(err)
		}
	}
	e.trus = e.idp.Trust()
	if trust != nil {
		trust(&e.trus)
	}
	putIdP(t, e.ks, e.idp, &e.trus)
	db, err := OpenDenylist(filepath.Join(t.TempDir(), "denylist"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e.db = db
	e.cfg = Config{Issuer: testIssuer, Audience: testAudience}
	if cfg != nil {
		cfg(&e.cfg)
	}
	if e.v, err = New(e.cfg, e.ks, db, nil); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestExternal_Algorithms: a trusted provider's tokens verify with each
// algorithm accepted from outside, with the key of their kid bound to
// their issuer.
func TestExternal_Algorithms(t *testing.T) {
	e := newExtEnv(t, nil, nil)
	for _, alg := range bus.ExternalAlgorithms() {
		t.Run(alg, func(t *testing.T) {
			claims := e.idp.Claims(time.Now())
			c, kid, err := e.v.Check(e.idp.Token(t, alg, claims, nil))
			checkVerdict(t, err, nil)
			if c.Issuer != idpIssuer || c.Subject != claims["sub"] || kid != e.idp.Kid(alg) {
				t.Fatalf("claims = %+v, kid %s", c, kid)
			}
		})
	}
}

// TestExternal_Refused: what the checks of an external issuer's tokens
// refuse, and the look-alikes they accept.
func TestExternal_Refused(t *testing.T) {
	e := newExtEnv(t, func(tr *bus.Trust) { tr.Algorithms = []string{bus.AlgRS256, bus.AlgES256, bus.AlgEdDSA} }, nil)
	now := time.Now()
	claims := func(edit func(c map[string]any)) map[string]any {
		c := e.idp.Claims(now)
		if edit != nil {
			edit(c)
		}
		return c
	}
	tok := func(alg string, edit func(c map[string]any), hdr func(h map[string]any)) string {
		return e.idp.Token(t, alg, claims(edit), hdr)
	}
	es := bus.AlgES256
	tests := []struct {
		name  string
		token string
		want  *Error
	}{
		{"typ JWT", tok(es, nil, nil), nil},
		{"typ absent", tok(es, nil, func(h map[string]any) { delete(h, "typ") }), nil},
		{"typ at+jwt", tok(es, nil, func(h map[string]any) { h["typ"] = "at+jwt" }), nil},
		{"typ application/AT+JWT", tok(es, nil, func(h map[string]any) { h["typ"] = "application/AT+JWT" }), nil},
		{"typ jwt lower case", tok(es, nil, func(h map[string]any) { h["typ"] = "jwt" }), nil},
		{"no jti", tok(es, func(c map[string]any) { delete(c, "jti") }, nil), nil},
		{"typ foo", tok(es, nil, func(h map[string]any) { h["typ"] = "foo" }), ErrType},
		{"typ secevent+jwt", tok(es, nil, func(h map[string]any) { h["typ"] = "secevent+jwt" }), ErrType},
		{"algorithm not in the trust entry", tok(bus.AlgPS256, nil, nil), ErrAlgorithm},
		{"alg of another key", tok(es, nil, func(h map[string]any) { h["kid"] = e.idp.Kid(bus.AlgEdDSA) }), ErrAlgorithm},
		{"alg none", forgeNone(t, claims(nil), e.idp.Kid(es)), ErrAlgorithm},
		{"HS256", signHS256(t, claims(nil), e.idp.Kid(es)), ErrAlgorithm},
		{"crit", tok(es, nil, func(h map[string]any) { h["crit"] = []string{"exp"} }), ErrMalformed},
		{"jwk header", tok(es, nil, func(h map[string]any) { h["jwk"] = map[string]string{"kty": "EC"} }), ErrMalformed},
		{"jku header", tok(es, nil, func(h map[string]any) { h["jku"] = "https://evil.test/jwks" }), ErrMalformed},
		{"no kid", tok(es, nil, func(h map[string]any) { delete(h, "kid") }), ErrUnknownKey},
		{"wrong audience", tok(es, func(c map[string]any) { c["aud"] = "other-api" }, nil), ErrAudience},
		{"audience list with ours", tok(es, func(c map[string]any) { c["aud"] = []string{"x", testAudience} }, nil), nil},
		{"no audience", tok(es, func(c map[string]any) { delete(c, "aud") }, nil), ErrMalformed},
		{"expired", tok(es, func(c map[string]any) {
			c["iat"], c["exp"] = now.Add(-time.Hour).Unix(), now.Add(-time.Minute).Unix()
		}, nil), ErrExpired},
		{"not yet valid", tok(es, func(c map[string]any) { c["nbf"] = now.Add(time.Hour).Unix() }, nil), ErrNotYetValid},
		{"issued in the future", tok(es, func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() }, nil), ErrNotYetValid},
		{"no sub", tok(es, func(c map[string]any) { delete(c, "sub") }, nil), ErrMalformed},
		{"no iat", tok(es, func(c map[string]any) { delete(c, "iat") }, nil), ErrMalformed},
		{"no exp", tok(es, func(c map[string]any) { delete(c, "exp") }, nil), ErrMalformed},
		{"sub not a string", tok(es, func(c map[string]any) { c["sub"] = 42 }, nil), ErrMalformed},
		{"exp as a string", tok(es, func(c map[string]any) { c["exp"] = "9999999999" }, nil), ErrMalformed},
		{"lifetime over the trust entry's", tok(es, func(c map[string]any) { c["exp"] = now.Add(2 * time.Hour).Unix() }, nil), ErrMalformed},
		{"lifetime within it", tok(es, func(c map[string]any) { c["exp"] = now.Add(time.Hour).Unix() }, nil), nil},
		{"iss in another case", tok(es, func(c map[string]any) { delete(c, "iss"); c["ISS"] = idpIssuer }, nil), ErrMalformed},
		{"duplicate iss", dupIss(t, e.idp, claims(nil)), ErrMalformed},
		{"unknown issuer", tok(es, func(c map[string]any) { c["iss"] = "https://evil.test" }, nil), ErrIssuer},
		{"issuer with a trailing slash", tok(es, func(c map[string]any) { c["iss"] = idpIssuer + "/" }, nil), ErrIssuer},
		{"bad signature", tok(es, nil, nil)[:len(tok(es, nil, nil))-4] + "AAAA", ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.v.Verify(t.Context(), tt.token)
			checkVerdict(t, err, tt.want)
		})
	}
}

// forgeNone returns an unsigned token (alg none) of claims.
func forgeNone(t *testing.T, claims map[string]any, kid string) string {
	return encodeJWT(t, map[string]any{"alg": "none", "kid": kid, "typ": "JWT"}, claims) + "."
}

// signHS256 signs claims with HMAC, keyed with a public-looking secret.
func signHS256(t *testing.T, claims map[string]any, kid string) string {
	return signJWT(t, jwt.SigningMethodHS256, []byte("public key bytes"), map[string]any{"alg": "HS256", "kid": kid, "typ": "JWT"}, claims)
}

// dupIss returns a token of idp whose claims hold iss twice: the
// provider's and, last, another.
func dupIss(t *testing.T, idp *verifiertest.IdP, claims map[string]any) string {
	t.Helper()
	body := string(mustJSON(t, claims))
	body = strings.Replace(body, "{", `{"iss":"https://evil.test",`, 1)
	h := b64(mustJSON(t, map[string]any{"alg": bus.AlgES256, "kid": idp.Kid(bus.AlgES256), "typ": "JWT"}))
	input := h + "." + b64([]byte(body))
	sig, err := jwt.SigningMethodES256.Sign(input, idp.Es)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// TestExternal_Audiences: a trust entry's audiences replace the
// verifier's own for that issuer's tokens.
func TestExternal_Audiences(t *testing.T) {
	e := newExtEnv(t, func(tr *bus.Trust) { tr.Audiences = []string{"account", "api://orders"} }, nil)
	for aud, want := range map[string]*Error{"account": nil, "api://orders": nil, testAudience: ErrAudience, "other": ErrAudience} {
		c := e.idp.Claims(time.Now())
		c["aud"] = aud
		_, err := e.v.Verify(t.Context(), e.idp.Token(t, bus.AlgRS256, c, nil))
		t.Run(aud, func(t *testing.T) { checkVerdict(t, err, want) })
	}
}

// TestExternal_KeyMisuse: no issuer's key verifies a token naming
// another issuer, Herald's included, whatever the kid says; and Herald's
// keys verify no external issuer's token.
func TestExternal_KeyMisuse(t *testing.T) {
	e := newExtEnv(t, nil, nil)
	b := verifiertest.NewIdP(t, otherIssuer)
	b.Prefix = e.idp.Prefix // the same kids, other keys
	putIdP(t, e.ks, b, nil)
	// Issuer A also has a key under Herald's Ed25519 kid.
	signer := bustest.Signer(t)
	aliasJWK := e.idp.JWK(t, bus.AlgEdDSA)
	aliasJWK.Kid = e.EdKid
	name, value, err := signer.SignExternalKey(idpIssuer, aliasJWK, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ks.Put(name, value); err != nil {
		t.Fatal(err)
	}
	if k, _ := e.ks.Get(e.EdKid); k.Issuer != "" {
		t.Fatal("an external key took the place of Herald's key of the same kid")
	}
	now := time.Now()
	asIssuer := func(iss string) map[string]any {
		c := e.idp.Claims(now)
		c["iss"] = iss
		return c
	}
	for _, alg := range []string{bus.AlgES256, bus.AlgEdDSA} {
		t.Run(alg+" of A as B", func(t *testing.T) {
			_, err := e.v.Verify(t.Context(), e.idp.Token(t, alg, asIssuer(otherIssuer), nil))
			checkVerdict(t, err, ErrBadSignature)
		})
		t.Run(alg+" of B as A", func(t *testing.T) {
			_, err := e.v.Verify(t.Context(), b.Token(t, alg, asIssuer(idpIssuer), nil))
			checkVerdict(t, err, ErrBadSignature)
		})
		t.Run(alg+" of A as Herald", func(t *testing.T) {
			_, err := e.v.Verify(t.Context(), e.idp.Token(t, alg, baseClaims(now), func(h map[string]any) { h["typ"] = "at+jwt" }))
			checkVerdict(t, err, ErrUnknownKey)
		})
	}
	t.Run("A's key under Herald's kid as Herald", func(t *testing.T) {
		tok := signJWT(t, jwt.SigningMethodEdDSA, e.idp.Ed, e.EdHeader(), baseClaims(now))
		_, err := e.v.Verify(t.Context(), tok)
		checkVerdict(t, err, ErrBadSignature)
	})
	t.Run("Herald's key as A", func(t *testing.T) {
		_, err := e.v.Verify(t.Context(), e.EdToken(t, asIssuer(idpIssuer)))
		checkVerdict(t, err, ErrBadSignature) // A's key under that kid is A's own
		_, err = e.v.Verify(t.Context(), e.EsToken(t, asIssuer(idpIssuer)))
		checkVerdict(t, err, ErrUnknownKey)
	})
	t.Run("Herald's own tokens still verify", func(t *testing.T) {
		_, err := e.v.Verify(t.Context(), e.EdToken(t, baseClaims(now)))
		checkVerdict(t, err, nil)
	})
}

// TestExternal_ClaimMapping: the claims a trust entry names become the
// session, client, tenant and email of Claims; others, and mapped claims
// that are not strings, are ignored.
func TestExternal_ClaimMapping(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		names  bus.TrustClaims
		claims map[string]any
		want   Claims
	}{
		{"defaults: sid and client_id", bus.TrustClaims{},
			map[string]any{"sid": "s1", "client_id": "c1", "azp": "a1", "tid": "t1", "email": "e@x"},
			Claims{SessionID: "s1", ClientID: "c1"}},
		{"azp when no client_id", bus.TrustClaims{}, map[string]any{"azp": "a1"}, Claims{ClientID: "a1"}},
		{"azp when client_id is not a string", bus.TrustClaims{}, map[string]any{"client_id": 7, "azp": "a1"}, Claims{ClientID: "a1"}},
		{"Entra ID", bus.TrustClaims{Session: "-", Client: []string{"appid", "azp"}, Tenant: "tid", Email: "preferred_username"},
			map[string]any{"sid": "s1", "appid": "app", "tid": "t1", "preferred_username": "bob@example.com", "scp": "User.Read Mail.Read"},
			Claims{ClientID: "app", Tenant: "t1", Email: "bob@example.com", Scope: "User.Read Mail.Read"}},
		{"no client claim", bus.TrustClaims{Client: []string{"-"}}, map[string]any{"client_id": "c1", "azp": "a1"}, Claims{}},
		{"custom session claim", bus.TrustClaims{Session: "session_state"}, map[string]any{"session_state": "ss", "sid": "s1"}, Claims{SessionID: "ss"}},
		{"mapped claims of other types", bus.TrustClaims{Tenant: "tid", Email: "email"},
			map[string]any{"sid": 42, "client_id": []string{"x"}, "tid": map[string]any{"a": 1}, "email": nil},
			Claims{}},
		{"Okta scp array", bus.TrustClaims{}, map[string]any{"scp": []string{"openid", "email"}}, Claims{Scope: "openid email"}},
		{"arbitrary members", bus.TrustClaims{}, map[string]any{"groups": []any{"a", map[string]any{"b": []int{1}}}, "ver": 2.0, "x": nil},
			Claims{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newExtEnv(t, func(tr *bus.Trust) { tr.Claims = tt.names }, nil)
			c := map[string]any{"iss": idpIssuer, "sub": "u1", "aud": testAudience, "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
			maps.Copy(c, tt.claims)
			got, err := e.v.Verify(t.Context(), e.idp.Token(t, bus.AlgEdDSA, c, nil))
			checkVerdict(t, err, nil)
			if got.SessionID != tt.want.SessionID || got.ClientID != tt.want.ClientID || got.Tenant != tt.want.Tenant ||
				got.Email != tt.want.Email || got.Scope != tt.want.Scope || got.Subject != "u1" || got.ID != "" {
				t.Fatalf("claims = %+v, want %+v", got, tt.want)
			}
		})
	}
	t.Run("too many members", func(t *testing.T) {
		e := newExtEnv(t, nil, nil)
		c := e.idp.Claims(now)
		for i := range 64 {
			c["x"+randomID()[:6]+string(rune('a'+i%26))] = i
		}
		_, err := e.v.Verify(t.Context(), e.idp.Token(t, bus.AlgEdDSA, c, nil))
		checkVerdict(t, err, ErrMalformed)
	})
	t.Run("Herald's tokens carry no email", func(t *testing.T) {
		e := newExtEnv(t, nil, nil)
		c := baseClaims(now)
		c["email"] = "alice@example.com"
		got, err := e.v.Verify(t.Context(), e.EdToken(t, c))
		checkVerdict(t, err, nil)
		if got.Email != "" {
			t.Fatalf("Email = %q from a Herald token", got.Email)
		}
	})
}

// TestExternal_UnknownKidFlood: tokens of a trusted issuer naming kids
// the verifier does not hold call OnUnknownKey at most once per issuer
// per interval, however many arrive.
func TestExternal_UnknownKidFlood(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []bus.KeyRequest
		clock = time.Now()
	)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	advance := func(d time.Duration) {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(calls)
	}
	e := newExtEnv(t, nil, func(c *Config) {
		c.Now = now
		c.OnUnknownKey = func(iss, kid string) {
			mu.Lock()
			calls = append(calls, bus.KeyRequest{Issuer: iss, Kid: kid})
			mu.Unlock()
		}
	})
	b := verifiertest.NewIdP(t, otherIssuer)
	putIdP(t, e.ks, b, nil)
	flood := func(idp *verifiertest.IdP, n int) {
		for range n {
			tok := idp.Token(t, bus.AlgEdDSA, idp.Claims(now()), func(h map[string]any) { h["kid"] = randomID() })
			_, err := e.v.Verify(t.Context(), tok)
			checkVerdict(t, err, ErrUnknownKey)
		}
	}
	flood(e.idp, 1000)
	if got := count(); got != 1 {
		t.Fatalf("%d key requests after 1000 unknown kids, want 1", got)
	}
	if calls[0].Issuer != idpIssuer || calls[0].Kid == "" {
		t.Fatalf("key request = %+v", calls[0])
	}
	flood(b, 10) // another issuer has its own allowance
	if got := count(); got != 2 || calls[1].Issuer != otherIssuer {
		t.Fatalf("key requests = %+v, want a second one for %s", calls, otherIssuer)
	}
	advance(DefaultUnknownKeyInterval - time.Millisecond)
	flood(e.idp, 100)
	if got := count(); got != 2 {
		t.Fatalf("%d key requests before the interval passed, want 2", got)
	}
	advance(time.Millisecond)
	flood(e.idp, 100)
	if got := count(); got != 3 {
		t.Fatalf("%d key requests once the interval passed, want 3", got)
	}
	// Unknown issuers and Herald's own unknown kids ask nothing.
	advance(time.Hour)
	c := e.idp.Claims(now())
	c["iss"] = "https://evil.test"
	_, err := e.v.Verify(t.Context(), e.idp.Token(t, bus.AlgEdDSA, c, nil))
	checkVerdict(t, err, ErrIssuer)
	_, err = e.v.Verify(t.Context(), signJWT(t, jwt.SigningMethodEdDSA, e.Ed, map[string]any{"typ": "at+jwt", "alg": "EdDSA", "kid": "nope"}, baseClaims(now())))
	checkVerdict(t, err, ErrUnknownKey)
	if got := count(); got != 3 {
		t.Fatalf("%d key requests, want 3: unknown issuers and Herald's kids ask none", got)
	}
}

// TestExternal_FollowsBucket: a verifier following HERALD_KEYS accepts a
// provider's tokens once its trust and key entries are published, and
// refuses them, cached or not, once either is deleted; a replaced trust
// entry maps the claims of a cached token anew.
func TestExternal_FollowsBucket(t *testing.T) {
	f := newFixture(t)
	v := f.sc.Verifier()
	idp := verifiertest.NewIdP(t, idpIssuer)
	signer := bustest.Signer(t)
	tr := idp.Trust()
	tr.Claims.Tenant = "tid"
	tname, tvalue := verifiertest.TrustEntry(t, signer, tr)
	kname, kvalue := idp.KeyEntry(t, signer, bus.AlgRS256, time.Hour)
	c := idp.Claims(time.Now())
	c["tid"] = "t1"
	tok := idp.Token(t, bus.AlgRS256, c, nil)

	_, err := v.Verify(t.Context(), tok)
	checkVerdict(t, err, ErrIssuer)
	verifiertest.PublishEntry(t, f.conn, kname, kvalue)
	verifiertest.PublishEntry(t, f.conn, tname, tvalue)
	waitVerdict(t, v, tok, nil)
	got, err := v.Verify(t.Context(), tok) // from the cache
	checkVerdict(t, err, nil)
	if got.Tenant != "t1" {
		t.Fatalf("tenant = %q, want t1", got.Tenant)
	}
	if hits, _, _ := v.CacheStats(); hits == 0 {
		t.Fatal("the token was not served from the cache")
	}

	tr.Claims.Tenant = ""
	_, tvalue2 := verifiertest.TrustEntry(t, signer, tr)
	verifiertest.PublishEntry(t, f.conn, tname, tvalue2)
	bustest.WaitFor(t, 5*time.Second, func() error {
		if got, err := v.Verify(t.Context(), tok); err != nil || got.Tenant != "" {
			return errors.New("claims mapped by the replaced trust entry")
		}
		return nil
	})

	kv, err := f.conn.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(t.Context(), tname); err != nil {
		t.Fatal(err)
	}
	waitVerdict(t, v, tok, ErrIssuer)
	verifiertest.PublishEntry(t, f.conn, tname, tvalue)
	waitVerdict(t, v, tok, nil)
	if err := kv.Purge(t.Context(), kname); err != nil {
		t.Fatal(err)
	}
	waitVerdict(t, v, tok, ErrUnknownKey)

	// A restarted verifier holds what the bucket holds.
	verifiertest.PublishEntry(t, f.conn, kname, kvalue)
	waitVerdict(t, v, tok, nil)
	f.stop()
	if err := kv.Delete(t.Context(), tname); err != nil {
		t.Fatal(err)
	}
	sc, _ := startCore(t, f.conn, f.dir)
	waitReady(t, sc)
	_, err = sc.Verifier().Verify(t.Context(), tok)
	checkVerdict(t, err, ErrIssuer)
}

// waitVerdict waits until v gives tok the verdict want.
func waitVerdict(t *testing.T, v *Verifier, tok string, want *Error) {
	t.Helper()
	bustest.WaitFor(t, 5*time.Second, func() error {
		_, err := v.Verify(t.Context(), tok)
		if want == nil && err != nil || want != nil && !errors.Is(err, want) {
			return errors.New("verdict " + Reason(err) + ", want " + map[bool]string{true: "success", false: ""}[want == nil] + reasonOf(want))
		}
		return nil
	})
}

func reasonOf(e *Error) string {
	if e == nil {
		return ""
	}
	return e.Reason
}

// TestExternal_RevokedForGood: the permanent record of an external key's
// revocation (bus.RevokedExternalKid) makes the verifier drop the key,
// refuse its tokens (cached ones included), and refuse the key's entry if
// an issuer published it again; the same kid of another issuer is not
// affected.
func TestExternal_RevokedForGood(t *testing.T) {
	f := newFixture(t)
	v := f.sc.Verifier()
	idp, other := verifiertest.NewIdP(t, idpIssuer), verifiertest.NewIdP(t, "https://other.idp.test")
	signer := bustest.Signer(t)
	for _, p := range []*verifiertest.IdP{idp, other} {
		tname, tvalue := verifiertest.TrustEntry(t, signer, p.Trust())
		kname, kvalue := p.KeyEntry(t, signer, bus.AlgES256, time.Hour)
		verifiertest.PublishEntry(t, f.conn, tname, tvalue)
		verifiertest.PublishEntry(t, f.conn, kname, kvalue)
	}
	tok := idp.Token(t, bus.AlgES256, idp.Claims(time.Now()), nil)
	otherTok := other.Token(t, bus.AlgES256, other.Claims(time.Now()), nil)
	waitVerdict(t, v, tok, nil)
	waitVerdict(t, v, otherTok, nil)

	kid := idp.Kid(bus.AlgES256)
	rec, err := signer.SignRevokedKey(bus.RevokedKey{Kid: bus.RevokedExternalKid(idpIssuer, kid), At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	verifiertest.PublishEntry(t, f.conn, bus.RevokedKeyPrefix+bus.RevokedExternalKid(idpIssuer, kid), rec)
	waitVerdict(t, v, tok, ErrUnknownKey)
	if _, err := v.Verify(t.Context(), otherTok); err != nil {
		t.Fatalf("the same kid of another issuer: %v", err)
	}
	kname, kvalue := idp.KeyEntry(t, signer, bus.AlgES256, time.Hour) // published again
	if err := f.sc.keys.Put(kname, kvalue); err == nil {
		t.Fatal("a revoked external key was trusted again")
	}
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("after the key was published again: %v, want unknown key", err)
	}
}
