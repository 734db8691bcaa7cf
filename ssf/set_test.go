package ssf

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/secretfile"
	"github.com/heraldsec/herald/signals"
)

const testIss = "https://herald.example"

// testTime is the time of the tests' Herald events.
var testTime = time.Unix(1_800_000_000, 0).UTC()

// testKey is generated once: a 2048-bit key takes a while.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func testSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := NewSigner(testKey())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// revocation returns a revocation event of kind k.
func revocation(k bus.Kind, actor, reason, iss string, values ...string) *bus.Event {
	r := &bus.Revocation{Kind: k, Reason: reason, Issuer: iss, At: testTime, Until: testTime.Add(time.Hour)}
	switch {
	case len(values) == 1:
		r.Value = values[0]
	case len(values) > 1:
		r.Values = values
	}
	return &bus.Event{ID: "0190a1b2c3d4e5f60718293a4b5c6d7e", Type: bus.TypeRevocation, Time: testTime, Actor: actor, Revocation: r}
}

func TestMap(t *testing.T) {
	ts := testTime.Unix()
	item := func(sub Subject, entity, reason string, index int) Item {
		return Item{Type: EventSessionRevoked, Subject: sub, Index: index, Event: map[string]any{
			"event_timestamp": ts, "initiating_entity": entity, "reason_admin": map[string]string{"en": reason}}}
	}
	session := func(sid string) Subject { return Complex(map[string]Subject{"session": Opaque(sid)}) }
	tests := []struct {
		name string
		e    *bus.Event
		want []Item
	}{
		{"session", revocation(bus.KindSession, "ops", "stolen laptop", "", "s-1"),
			[]Item{item(session("s-1"), "admin", "stolen laptop", 0)}},
		{"subject", revocation(bus.KindSubject, "ops", "", "", "alice"),
			[]Item{item(IssSub(testIss, "alice"), "admin", "Every session of the user was revoked.", 0)}},
		{"tenant", revocation(bus.KindTenant, "ops", "", "", "acme"),
			[]Item{item(Complex(map[string]Subject{"tenant": Opaque("acme")}), "admin", "Every session of the tenant was revoked.", 0)}},
		{"client", revocation(bus.KindClient, "ops", "", "", "billing"),
			[]Item{item(Complex(map[string]Subject{"application": Opaque("billing")}), "admin", "Every session of the application was revoked.", 0)}},
		{"session default reason", revocation(bus.KindSession, "ops", "", "", "s-1"),
			[]Item{item(session("s-1"), "admin", "The session was revoked.", 0)}},
		{"refresh token reuse", revocation(bus.KindSession, "herald", "refresh token reuse", "", "s-2"),
			[]Item{item(session("s-2"), "policy", "refresh token reuse", 0)}},
		{"client logout", revocation(bus.KindSession, "client:web", "logout", "", "s-3"),
			[]Item{item(session("s-3"), "system", "logout", 0)}},
		{"signal", revocation(bus.KindSubject, "signal:https://idp.example", "", "", "bob"),
			[]Item{item(IssSub(testIss, "bob"), "system", "Every session of the user was revoked.", 0)}},
		{"limited to Herald", revocation(bus.KindSubject, "ops", "x", testIss, "alice"),
			[]Item{item(IssSub(testIss, "alice"), "admin", "x", 0)}},
		{"bulk", revocation(bus.KindSession, "ops", "breach", "", "s-1", "s-2", "s-3"),
			[]Item{item(session("s-1"), "admin", "breach", 0), item(session("s-2"), "admin", "breach", 1), item(session("s-3"), "admin", "breach", 2)}},
		{"bulk subjects", revocation(bus.KindSubject, "ops", "", "", "a", "b"),
			[]Item{item(IssSub(testIss, "a"), "admin", "Every session of the user was revoked.", 0),
				item(IssSub(testIss, "b"), "admin", "Every session of the user was revoked.", 1)}},
		{"token", revocation(bus.KindToken, "ops", "", "", "jti-1"), nil},
		{"bulk tokens", revocation(bus.KindToken, "ops", "", "", "jti-1", "jti-2"), nil},
		{"key", revocation(bus.KindKey, "ops", "", "", "kid-1"), nil},
		{"all", revocation(bus.KindAll, "ops", "", ""), nil},
		{"limited to an external issuer", revocation(bus.KindSubject, "ops", "", "https://idp.example", "alice"), nil},
		{"external issuer bulk sessions", revocation(bus.KindSession, "ops", "", "https://idp.example", "s-1", "s-2"), nil},
		{"not a revocation", &bus.Event{ID: "x", Type: bus.TypeSessionCreated, Time: testTime,
			Session: &bus.Session{ID: "s-1", Subject: "alice"}}, nil},
		{"nil", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.e != nil && tt.e.Revocation != nil {
				if err := tt.e.Validate(); err != nil {
					t.Fatalf("test event: %v", err)
				}
			}
			got := Map(tt.e, testIss)
			if len(got) != len(tt.want) {
				t.Fatalf("%d items, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Type != w.Type || g.Subject.Key() != w.Subject.Key() || g.Index != w.Index || !reflect.DeepEqual(g.Event, w.Event) {
					t.Errorf("item %d:\n got %s %s %d %v\nwant %s %s %d %v", i,
						g.Type, g.Subject.Key(), g.Index, g.Event, w.Type, w.Subject.Key(), w.Index, w.Event)
				}
			}
		})
	}
}

func TestControlItems(t *testing.T) {
	tests := []struct {
		name       string
		got        Item
		typ, event string
	}{
		{"verification with state", Verification("s1", "VGhpcyBpcyBhbiBleGFtcGxl"), EventVerification, `{"state":"VGhpcyBpcyBhbiBleGFtcGxl"}`},
		{"verification by Herald", Verification("s1", ""), EventVerification, `{}`},
		{"stream updated", StreamUpdated("s1", StatusPaused, "the receiver answered 401"), EventStreamUpdated,
			`{"reason":"the receiver answered 401","status":"paused"}`},
		{"stream updated without reason", StreamUpdated("s1", StatusEnabled, ""), EventStreamUpdated, `{"status":"enabled"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := json.Marshal(tt.got.Event)
			if err != nil {
				t.Fatal(err)
			}
			if tt.got.Type != tt.typ || string(ev) != tt.event || tt.got.Subject.Key() != `{"format":"opaque","id":"s1"}` {
				t.Fatalf("got %s %s %s", tt.got.Type, ev, tt.got.Subject.Key())
			}
		})
	}
}

func TestJTI(t *testing.T) {
	a := JTI("stream-1", "0190a1b2c3d4e5f60718293a4b5c6d7e", 0)
	if a != JTI("stream-1", "0190a1b2c3d4e5f60718293a4b5c6d7e", 0) {
		t.Fatal("JTI is not deterministic")
	}
	sum := sha256.Sum256([]byte("stream-1\x000190a1b2c3d4e5f60718293a4b5c6d7e\x000"))
	if want := base64.RawURLEncoding.EncodeToString(sum[:16]); a != want {
		t.Fatalf("JTI = %s, want %s", a, want)
	}
	if len(a) != 22 || strings.ContainsAny(a, "+/=") {
		t.Fatalf("JTI %q is not 22 base64url characters", a)
	}
	others := []string{
		JTI("stream-2", "0190a1b2c3d4e5f60718293a4b5c6d7e", 0),
		JTI("stream-1", "0190a1b2c3d4e5f60718293a4b5c6d7f", 0),
		JTI("stream-1", "0190a1b2c3d4e5f60718293a4b5c6d7e", 1),
		JTI("stream-1\x000190a1b2c3d4e5f60718293a4b5c6d7e", "0", 0),
	}
	seen := map[string]bool{a: true}
	for _, o := range others {
		if seen[o] {
			t.Fatalf("JTI %s repeats", o)
		}
		seen[o] = true
	}
}

// decodePart decodes one base64url part of a compact JWS.
func decodePart(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSign(t *testing.T) {
	s := testSigner(t)
	items := Map(revocation(bus.KindSession, "ops", "stolen laptop", "", "s-1"), testIss)
	c := &Claims{
		Issuer: testIss, JTI: JTI("st1", "ev1", 0), IssuedAt: testTime.Unix(), Audience: []string{"receiver"},
		TXN: "ev1", Subject: items[0].Subject, Type: items[0].Type, Event: items[0].Event,
	}
	set, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(set, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	if got, want := string(decodePart(t, parts[0])), `{"alg":"RS256","kid":"`+s.KeyID()+`","typ":"secevent+jwt"}`; got != want {
		t.Errorf("header %s, want %s", got, want)
	}
	want := `{"iss":"https://herald.example","jti":"` + c.JTI + `","iat":1800000000,"aud":"receiver","txn":"ev1",` +
		`"sub_id":{"format":"complex","session":{"format":"opaque","id":"s-1"}},` +
		`"events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":` +
		`{"event_timestamp":1800000000,"initiating_entity":"admin","reason_admin":{"en":"stolen laptop"}}}}`
	if got := string(decodePart(t, parts[1])); got != want {
		t.Errorf("claims\n got %s\nwant %s", got, want)
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&testKey().PublicKey, crypto.SHA256, sum[:], decodePart(t, parts[2])); err != nil {
		t.Fatalf("signature: %v", err)
	}
	again, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	if again != set {
		t.Fatal("signing twice gave different bytes")
	}
	other, err := NewSigner(testKey())
	if err != nil {
		t.Fatal(err)
	}
	if third, _ := other.Sign(c); third != set {
		t.Fatal("another Signer of the same key (another replica) gave different bytes")
	}

	var claims map[string]json.RawMessage
	if err := json.Unmarshal(decodePart(t, parts[1]), &claims); err != nil {
		t.Fatal(err)
	}
	for _, forbidden := range []string{"sub", "exp"} {
		if _, ok := claims[forbidden]; ok {
			t.Errorf("claim %s present", forbidden)
		}
	}

	// Several audiences: an array; no txn: left out.
	c2 := *c
	c2.Audience, c2.TXN = []string{"r1", "r2"}, ""
	set2, err := s.Sign(&c2)
	if err != nil {
		t.Fatal(err)
	}
	payload := string(decodePart(t, strings.Split(set2, ".")[1]))
	if !strings.Contains(payload, `"aud":["r1","r2"],"sub_id"`) {
		t.Errorf("claims %s: want aud an array and no txn", payload)
	}
}

func TestSignRefuses(t *testing.T) {
	s := testSigner(t)
	good := Claims{Issuer: testIss, JTI: "j", IssuedAt: 1, Audience: []string{"r"}, Subject: Opaque("x"), Type: EventVerification}
	if _, err := s.Sign(&good); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(c *Claims)
	}{
		{"no iss", func(c *Claims) { c.Issuer = "" }},
		{"no jti", func(c *Claims) { c.JTI = "" }},
		{"no type", func(c *Claims) { c.Type = "" }},
		{"no subject", func(c *Claims) { c.Subject = Subject{} }},
		{"no audience", func(c *Claims) { c.Audience = nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.change(&c)
			if set, err := s.Sign(&c); err == nil {
				t.Fatalf("signed %s", set)
			}
		})
	}
	if _, err := s.Sign(nil); err == nil {
		t.Fatal("signed nil claims")
	}
}

// TestSignInterop checks a SET with another JWT library: golang-jwt
// verifies RS256 with the public key and reads the claims.
func TestSignInterop(t *testing.T) {
	s := testSigner(t)
	it := Map(revocation(bus.KindSubject, "ops", "", "", "alice"), testIss)[0]
	set, err := s.Sign(&Claims{Issuer: testIss, JTI: "j1", IssuedAt: time.Now().Unix(), Audience: []string{"receiver"},
		TXN: "ev1", Subject: it.Subject, Type: it.Type, Event: it.Event})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse(set, func(tok *jwt.Token) (any, error) {
		if tok.Header["kid"] != s.KeyID() {
			return nil, errors.New("unknown kid")
		}
		return s.PublicKey(), nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithAudience("receiver"), jwt.WithIssuer(testIss), jwt.WithIssuedAt())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["typ"] != "secevent+jwt" {
		t.Errorf("typ %v", tok.Header["typ"])
	}
	claims := tok.Claims.(jwt.MapClaims)
	sub := claims["sub_id"].(map[string]any)
	if sub["format"] != "iss_sub" || sub["iss"] != testIss || sub["sub"] != "alice" {
		t.Errorf("sub_id %v", sub)
	}
	if _, ok := claims["events"].(map[string]any)[EventSessionRevoked]; !ok {
		t.Errorf("events %v", claims["events"])
	}
	// Another key does not verify it.
	if _, err := jwt.Parse(set, func(*jwt.Token) (any, error) { return &otherKey().PublicKey, nil },
		jwt.WithValidMethods([]string{"RS256"})); err == nil {
		t.Fatal("verified with another key")
	}
}

var otherKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// TestSignHeraldReceiver checks that Herald's own receiver (package
// signals, what a Herald deployment federating with this one runs)
// accepts the SETs of session and subject revocations and reads the
// subject Herald acts on.
func TestSignHeraldReceiver(t *testing.T) {
	s := testSigner(t)
	var jwk bus.JWK
	if err := json.Unmarshal(bytes.TrimSuffix(bytes.TrimPrefix(s.JWKS(), []byte(`{"keys":[`)), []byte(`]}`)), &jwk); err != nil {
		t.Fatal(err)
	}
	pub, err := jwk.ExternalPublicKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &signals.Config{
		Sources: []signals.Source{{Issuer: testIss, ClientID: "receiver"}},
		Keys: func(iss, kid string) (bus.JWK, crypto.PublicKey, bool) {
			if iss != testIss || kid != jwk.Kid {
				return bus.JWK{}, nil, false
			}
			return jwk, pub, true
		},
		Now: func() time.Time { return testTime.Add(time.Second) },
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		e     *bus.Event
		check func(t *testing.T, sub *signals.Subject)
	}{
		{"session", revocation(bus.KindSession, "ops", "", "", "s-1"), func(t *testing.T, sub *signals.Subject) {
			if sub.Format != signals.FormatComplex || sub.Session == nil || sub.Session.Format != signals.FormatOpaque || sub.Session.ID != "s-1" {
				t.Fatalf("subject %+v", sub)
			}
		}},
		{"subject", revocation(bus.KindSubject, "ops", "", "", "alice"), func(t *testing.T, sub *signals.Subject) {
			if sub.Format != signals.FormatIssSub || sub.Issuer != testIss || sub.Sub != "alice" {
				t.Fatalf("subject %+v", sub)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := Map(tt.e, testIss)[0]
			jti := JTI("st1", tt.e.ID, it.Index)
			raw, err := s.Sign(&Claims{Issuer: testIss, JTI: jti, IssuedAt: tt.e.Time.Unix(), Audience: []string{"receiver"},
				TXN: tt.e.ID, Subject: it.Subject, Type: it.Type, Event: it.Event})
			if err != nil {
				t.Fatal(err)
			}
			set, err := signals.ParseSET(raw, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if set.EventType != EventSessionRevoked || set.JTI != jti || set.TxN != tt.e.ID || set.Issuer != testIss || !set.IssuedAt.Equal(testTime) {
				t.Fatalf("SET %+v", set)
			}
			tt.check(t, set.Subject)
			i := len(raw) - 10
			flipped := raw[:i] + string("AB"[boolIndex(raw[i] == 'A')]) + raw[i+1:]
			if _, err := signals.ParseSET(flipped, cfg); err == nil {
				t.Fatal("a changed signature passed")
			}
		})
	}
}

func TestJWKS(t *testing.T) {
	s := testSigner(t)
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(s.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	k := set.Keys[0]
	want := map[string]string{"kty": "RSA", "n": k["n"], "e": "AQAB", "kid": s.KeyID(), "use": "sig", "alg": "RS256"}
	if !reflect.DeepEqual(k, want) {
		t.Fatalf("key %v, want %v", k, want)
	}
	pub := &testKey().PublicKey
	if n := decodePart(t, k["n"]); !bytes.Equal(n, pub.N.Bytes()) {
		t.Fatal("n is not the key's modulus")
	}
	jwk := bus.JWK{Kty: "RSA", N: k["n"], E: k["e"]}
	if s.KeyID() != jwk.Thumbprint() || len(s.KeyID()) != 43 {
		t.Fatalf("kid %s is not the RFC 7638 thumbprint %s", s.KeyID(), jwk.Thumbprint())
	}
	if bytes.Contains(s.JWKS(), []byte(`"d"`)) {
		t.Fatal("private member in the key set")
	}
}

func TestNewSigner(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSigner(weak); err == nil || !strings.Contains(err.Error(), "1024 bits") {
		t.Fatalf("1024-bit key: %v", err)
	}
	if _, err := NewSigner(nil); err == nil {
		t.Fatal("nil key accepted")
	}
	broken := *testKey()
	broken.D = big.NewInt(3)
	if _, err := NewSigner(&broken); err == nil {
		t.Fatal("inconsistent key accepted")
	}
}

// writePEM writes a PEM block to path with mode.
func writePEM(t *testing.T, path, typ string, der []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "ssf")
	path := filepath.Join(dir, "ssf-key.pem")
	key, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v, created %v", err, created)
	}
	if bits := key.N.BitLen(); bits != 2048 {
		t.Errorf("%d bits", bits)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v (%v), want 0700", di.Mode().Perm(), err)
	}
	again, created, err := LoadOrCreateKey(path)
	if err != nil || created {
		t.Fatalf("load: %v, created %v", err, created)
	}
	if !again.Equal(key) {
		t.Fatal("loaded another key than the one created")
	}
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Fatalf("file does not start as PKCS#8 PEM: %.40q", b)
	}

	t.Run("readable by others", func(t *testing.T) {
		if err := os.Chmod(path, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(path, 0o600)
		_, _, err := LoadOrCreateKey(path)
		var me *secretfile.ModeError
		if !errors.As(err, &me) {
			t.Fatalf("error %v, want a mode error", err)
		}
		if b2, _ := os.ReadFile(path); !bytes.Equal(b2, b) {
			t.Fatal("the refused file was changed")
		}
	})

	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weakDER, _ := x509.MarshalPKCS8PrivateKey(weak)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	goodDER, _ := x509.MarshalPKCS8PrivateKey(testKey())
	tests := []struct {
		name, typ string
		der       []byte
		extra     string
		want      string
	}{
		{"weak", "PRIVATE KEY", weakDER, "", "1024 bits"},
		{"not RSA", "PRIVATE KEY", ecDER, "", "want an RSA key"},
		{"PKCS#1", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(testKey()), "", "PKCS#8"},
		{"garbage", "PRIVATE KEY", []byte("garbage"), "", "transmitter key"},
		{"two blocks", "PRIVATE KEY", goodDER, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "one PKCS#8 PEM block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "key.pem")
			writePEM(t, p, tt.typ, tt.der, 0o600)
			if tt.extra != "" {
				f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteString(tt.extra)
				f.Close()
			}
			before, _ := os.ReadFile(p)
			key, created, err := LoadOrCreateKey(p)
			if err == nil || key != nil || created || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, %v, %v; want an error with %q", key != nil, created, err, tt.want)
			}
			if after, _ := os.ReadFile(p); !bytes.Equal(after, before) {
				t.Fatal("the refused file was changed")
			}
		})
	}

	t.Run("existing good key", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "key.pem")
		writePEM(t, p, "PRIVATE KEY", goodDER, 0o400)
		key, created, err := LoadOrCreateKey(p)
		if err != nil || created || !key.Equal(testKey()) {
			t.Fatalf("got created %v, %v", created, err)
		}
	})
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}
