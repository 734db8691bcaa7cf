package verifier

import (
	"fmt"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
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
