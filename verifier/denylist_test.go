package verifier

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/store"
)

// A token's dimensions, each of which one revocation kind can target.
const (
	dimJTI    = "jti"
	dimSID    = "sid"
	dimSub    = "sub"
	dimClient = "client_id"
	dimTenant = "tenant"
	dimKid    = "kid"
)

var dims = []string{dimJTI, dimSID, dimSub, dimClient, dimTenant, dimKid}

// revocationToken describes the token a revocation case presents: the
// revoked one, possibly differing in one dimension, issued at iat.
type revocationToken struct {
	other string // the dimension that differs from the revoked token, or ""
	iat   time.Time
}

func (f *fixture) revocationToken(t *testing.T, rt revocationToken) string {
	t.Helper()
	c := baseClaims(rt.iat)
	c["jti"], c["sid"], c["sub"], c["client_id"], c["tenant"] = "jti-1", "sid-1", "sub-1", "client-1", "tenant-1"
	switch rt.other {
	case "":
	case dimKid:
		return f.EsToken(t, c)
	default:
		c[rt.other] = "other-" + rt.other
	}
	return f.EdToken(t, c)
}

// TestVerifier_Revoked publishes one revocation of each kind on the real
// stream and checks the README's table of kinds: the matching token is refused,
// tokens that differ in exactly the revoked dimension still verify, and the
// issued-at kinds reject only tokens issued at or before the revocation.
func TestVerifier_Revoked(t *testing.T) {
	tests := []struct {
		kind       bus.Kind
		dim        string // the dimension the kind targets; "" for all
		byIssuedAt bool
	}{
		{bus.KindToken, dimJTI, false},
		{bus.KindSession, dimSID, false},
		{bus.KindSubject, dimSub, true},
		{bus.KindClient, dimClient, true},
		{bus.KindTenant, dimTenant, true},
		{bus.KindKey, dimKid, false},
		{bus.KindAll, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			v := f.sc.Verifier()

			// The revocation time has nanoseconds; Herald's iat has
			// milliseconds. before is a second earlier, sameMilli the
			// revocation's own millisecond, after a few ms later.
			at := time.Now()
			before := at.Add(-time.Second)
			sameMilli := at.Truncate(time.Millisecond)
			after := sameMilli.Add(7 * time.Millisecond)

			value := map[string]string{
				dimJTI: "jti-1", dimSID: "sid-1", dimSub: "sub-1",
				dimClient: "client-1", dimTenant: "tenant-1", dimKid: f.EdKid,
			}[tt.dim]

			// Every token verifies before the revocation.
			for _, other := range append([]string{""}, dims...) {
				_, err := v.Verify(t.Context(), f.revocationToken(t, revocationToken{other: other, iat: before}))
				if err != nil {
					t.Fatalf("before revoking, token differing in %q: %v", other, err)
				}
			}
			keysBefore := f.sc.Status().Keys

			revoke(t, f.conn, f.sc, tt.kind, value, at)

			if got, want := f.sc.Status().Denylist, 1; got != want {
				t.Errorf("denylist size = %d, want %d", got, want)
			}
			if tt.kind == bus.KindKey {
				if got, want := f.sc.Status().Keys, keysBefore-1; got != want {
					t.Errorf("keys after key revocation = %d, want %d", got, want)
				}
				if _, ok := f.sc.keys.Get(f.EdKid); ok {
					t.Errorf("revoked key %s still in the key set", f.EdKid)
				}
			}

			type verdict struct {
				name string
				tok  revocationToken
				ok   bool
			}
			verdicts := []verdict{{"revoked token", revocationToken{iat: before}, false}}
			for _, d := range dims {
				// Only a token that differs in the revoked dimension escapes.
				verdicts = append(verdicts, verdict{"other " + d, revocationToken{other: d, iat: before}, d == tt.dim})
			}
			verdicts = append(verdicts,
				// Token, session and key revocations reject every matching
				// token; the others only those issued up to the revocation.
				verdict{"issued a few ms after", revocationToken{iat: after}, tt.byIssuedAt},
				verdict{"issued in the same millisecond", revocationToken{iat: sameMilli}, false},
				verdict{"issued in the same second, whole seconds", revocationToken{iat: at.Truncate(time.Second)}, false},
			)
			for _, vd := range verdicts {
				t.Run(vd.name, func(t *testing.T) {
					c, err := v.Verify(t.Context(), f.revocationToken(t, vd.tok))
					if vd.ok {
						checkVerdict(t, err, nil)
						return
					}
					checkVerdict(t, err, ErrRevoked)
					if c != nil {
						t.Fatalf("revoked token returned claims %+v", c)
					}
				})
			}
		})
	}
}

// TestVerifier_RevokedLaterAt checks that a second revocation of the same
// subject moves the cut-off forward: tokens issued between the two are
// refused too.
func TestVerifier_RevokedLaterAt(t *testing.T) {
	f := newFixture(t)
	v := f.sc.Verifier()
	first := time.Now().Add(-time.Minute)
	second := first.Add(30 * time.Second)
	between := first.Add(15 * time.Second)
	tok := func(iat time.Time) string {
		c := baseClaims(iat)
		c["sub"] = "bob"
		return f.EdToken(t, c)
	}

	revoke(t, f.conn, f.sc, bus.KindSubject, "bob", first)
	_, err := v.Verify(t.Context(), tok(between))
	checkVerdict(t, err, nil)

	revoke(t, f.conn, f.sc, bus.KindSubject, "bob", second)
	_, err = v.Verify(t.Context(), tok(between))
	checkVerdict(t, err, ErrRevoked)
	_, err = v.Verify(t.Context(), tok(second.Add(time.Millisecond)))
	checkVerdict(t, err, nil)

	// An older revocation arriving late does not move the cut-off back.
	revoke(t, f.conn, f.sc, bus.KindSubject, "bob", first)
	_, err = v.Verify(t.Context(), tok(between))
	checkVerdict(t, err, ErrRevoked)
}

// TestVerifier_RevokedKeyNotReadded checks that a revoked key stays out of
// the key set when the issuer publishes it to HERALD_KEYS again.
func TestVerifier_RevokedKeyNotReadded(t *testing.T) {
	f := newFixture(t)
	revoke(t, f.conn, f.sc, bus.KindKey, f.EdKid, time.Now())
	bustest.WaitFor(t, 5*time.Second, func() error {
		if _, ok := f.sc.keys.Get(f.EdKid); ok {
			return fmt.Errorf("key %s still trusted", f.EdKid)
		}
		return nil
	})
	bad := f.sc.keys.bad.Load()
	publishKey(t, f.conn, f.EdKid, f.EdJWK)
	// The watcher refuses it and counts the refusal.
	bustest.WaitFor(t, 5*time.Second, func() error {
		if f.sc.keys.bad.Load() == bad {
			return fmt.Errorf("re-published key not yet seen")
		}
		return nil
	})
	if _, ok := f.sc.keys.Get(f.EdKid); ok {
		t.Fatalf("revoked key %s trusted again after re-publish", f.EdKid)
	}
	_, err := f.sc.Verifier().Verify(t.Context(), f.EdToken(t, baseClaims(time.Now())))
	if err == nil {
		t.Fatal("token signed with a revoked key verified")
	}
}

// TestDenyKeyFor: a key limited to an issuer differs from every key for
// every issuer, and SnapshotEntries reads both back, without the scope
// markers.
func TestDenyKeyFor(t *testing.T) {
	if DenyKeyFor(bus.KindSubject, "", "u") != DenyKey(bus.KindSubject, "u") {
		t.Fatal("DenyKeyFor without an issuer is not DenyKey")
	}
	// Whatever the value, an unlimited key has ':' where a limited one
	// has '@'.
	scoped := DenyKeyFor(bus.KindSubject, idpIssuer, "u")
	for _, v := range []string{"u", "@" + idpIssuer + "\x00u", idpIssuer + "\x00u"} {
		if DenyKey(bus.KindSubject, v) == scoped {
			t.Fatalf("value %q collides with a limited key", v)
		}
	}
	// The NUL ends the issuer: no issuer holds one.
	if bus.CheckIssuer(idpIssuer+"\x00x") == nil {
		t.Fatal("an issuer with a NUL is valid: the issuer and value of a limited key could run together")
	}
	at := time.Now().UTC()
	r := &bus.Revocation{Kind: bus.KindSession, Value: "s", At: at, Until: at.Add(time.Hour), Issuer: idpIssuer}
	entries := entriesFor(nil, r)
	entries = entriesFor(entries, &bus.Revocation{Kind: bus.KindAll, At: at, Until: at.Add(time.Hour), Issuer: otherIssuer})
	if len(entries) != 4 {
		t.Fatalf("%d entries, want 2 and their 2 scope markers", len(entries))
	}
	se, err := SnapshotEntries(entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(se) != 2 || se[0].Issuer != idpIssuer || se[0].Value != "s" || se[0].Kind != bus.KindSession ||
		se[1].Issuer != otherIssuer || se[1].Kind != bus.KindAll || se[1].Value != "" {
		t.Fatalf("snapshot entries = %+v", se)
	}
	for _, bad := range []string{"3@no-nul", "3@bad issuer\x00v", "3@\x00v", "3?v"} {
		if _, err := SnapshotEntries([]store.Entry{{Key: bad, At: at, Until: at}}); err == nil {
			t.Errorf("%q read as a denylist key", bad)
		}
	}
}
