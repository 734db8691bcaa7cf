package verifier

import (
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier/verifiertest"
)

// scopedEnv is a running core whose bucket holds Herald's test keys and
// two trusted providers, A (whose trust entry names tid and email) and
// B, whose keys have the same kids as A's.
type scopedEnv struct {
	*fixture
	a, b *verifiertest.IdP
	alg  string // the providers' tokens' algorithm; default ES256
}

func newScopedEnv(t *testing.T) *scopedEnv {
	t.Helper()
	e := &scopedEnv{fixture: newFixture(t), a: verifiertest.NewIdP(t, idpIssuer), b: verifiertest.NewIdP(t, otherIssuer)}
	e.b.Prefix = e.a.Prefix
	signer := bustest.Signer(t)
	for _, idp := range []*verifiertest.IdP{e.a, e.b} {
		tr := idp.Trust()
		tr.Claims.Tenant = "tid"
		if idp == e.a {
			tr.Claims.Email = "email"
		}
		name, value := verifiertest.TrustEntry(t, signer, tr)
		verifiertest.PublishEntry(t, e.conn, name, value)
		for _, alg := range []string{bus.AlgES256, bus.AlgEdDSA} {
			name, value := idp.KeyEntry(t, signer, alg, time.Hour)
			verifiertest.PublishEntry(t, e.conn, name, value)
		}
	}
	bustest.WaitFor(t, 5*time.Second, func() error {
		for _, idp := range []*verifiertest.IdP{e.a, e.b} {
			if _, _, ok := e.sc.keys.External(idp.Issuer, idp.Kid(bus.AlgES256)); !ok {
				return errNotYet
			}
		}
		return nil
	})
	return e
}

var errNotYet = &Error{"not_yet", "not yet"}

// tokens returns a token of Herald, of A and of B, issued at iat, whose
// claims edit changes (claim names as Herald's issuer writes them; tenant
// becomes tid in the providers' tokens).
func (e *scopedEnv) tokens(t *testing.T, iat time.Time, edit map[string]any) (herald, a, b string) {
	t.Helper()
	hc := baseClaims(iat)
	for k, v := range edit {
		hc[k] = v
	}
	herald = e.EdToken(t, hc)
	ext := func(idp *verifiertest.IdP) string {
		c := idp.Claims(iat)
		for k, v := range edit {
			if k == "tenant" {
				k = "tid"
			}
			c[k] = v
		}
		alg := e.alg
		if alg == "" {
			alg = bus.AlgES256
		}
		return idp.Token(t, alg, c, nil)
	}
	return herald, ext(e.a), ext(e.b)
}

// verdicts checks the verdicts on tokens, by name.
func (e *scopedEnv) verdicts(t *testing.T, want map[string]*Error, tokens map[string]string) {
	t.Helper()
	for name, tok := range tokens {
		_, err := e.sc.Verifier().Verify(t.Context(), tok)
		if w := want[name]; w == nil && err != nil || w != nil && Reason(err) != ErrRevoked.Reason {
			t.Errorf("%s token: %v, want %v", name, err, w)
		}
	}
}

// TestScopedRevocation: for every kind, a revocation limited to issuer A
// refuses A's matching tokens only, and one for every issuer refuses the
// matching tokens of Herald, A and B alike.
func TestScopedRevocation(t *testing.T) {
	e := newScopedEnv(t)
	iat := time.Now().Add(-2 * time.Second).Truncate(time.Second)
	at := iat.Add(time.Second)
	for _, kind := range []bus.Kind{bus.KindToken, bus.KindSession, bus.KindSubject, bus.KindClient, bus.KindTenant, bus.KindKey} {
		t.Run(kind.String(), func(t *testing.T) {
			value := kind.String() + "-" + randomID()
			claim := map[bus.Kind]string{bus.KindToken: "jti", bus.KindSession: "sid", bus.KindSubject: "sub",
				bus.KindClient: "client_id", bus.KindTenant: "tenant"}[kind]
			edit := map[string]any{claim: value}
			if kind == bus.KindKey {
				// B's key has the same kid; the later tests use the
				// ES256 keys.
				e.alg = bus.AlgEdDSA
				defer func() { e.alg = "" }()
				value, edit = e.a.Kid(bus.AlgEdDSA), nil
			}
			h, a, b := e.tokens(t, iat, edit)
			toks := map[string]string{"Herald": h, "A": a, "B": b}
			e.verdicts(t, nil, toks) // and into the cache

			seq := verifiertest.PublishIssuerRevocation(t, e.conn, idpIssuer, kind, value, at)
			waitApplied(t, e.sc, seq)
			e.verdicts(t, map[string]*Error{"A": ErrRevoked}, toks)
			if kind.ByIssuedAt() {
				_, later, _ := e.tokens(t, at.Add(time.Second), edit)
				e.verdicts(t, nil, map[string]string{"A issued after": later})
			}

			seq = verifiertest.PublishRevocation(t, e.conn, kind, value, at)
			waitApplied(t, e.sc, seq)
			want := map[string]*Error{"Herald": ErrRevoked, "A": ErrRevoked, "B": ErrRevoked}
			if kind == bus.KindKey {
				want["Herald"] = nil // another kid
			}
			e.verdicts(t, want, toks)
		})
	}
	t.Run("subject by email", func(t *testing.T) {
		email := "bob-" + randomID() + "@example.com"
		h, a, b := e.tokens(t, iat, map[string]any{"email": email})
		seq := verifiertest.PublishIssuerRevocation(t, e.conn, idpIssuer, bus.KindSubject, email, at)
		waitApplied(t, e.sc, seq)
		// B's trust entry names no email claim; Herald's tokens carry none.
		e.verdicts(t, map[string]*Error{"A": ErrRevoked}, map[string]string{"Herald": h, "A": a, "B": b})
		seq = verifiertest.PublishRevocation(t, e.conn, bus.KindSubject, email, at)
		waitApplied(t, e.sc, seq)
		e.verdicts(t, map[string]*Error{"A": ErrRevoked}, map[string]string{"Herald": h, "A": a, "B": b})
	})
	t.Run("subject limited to Herald", func(t *testing.T) {
		sub := "carol-" + randomID()
		h, a, b := e.tokens(t, iat, map[string]any{"sub": sub})
		seq := verifiertest.PublishIssuerRevocation(t, e.conn, testIssuer, bus.KindSubject, sub, at)
		waitApplied(t, e.sc, seq)
		e.verdicts(t, map[string]*Error{"Herald": ErrRevoked}, map[string]string{"Herald": h, "A": a, "B": b})
	})
	t.Run("all", func(t *testing.T) {
		h, a, b := e.tokens(t, iat, nil)
		seq := verifiertest.PublishIssuerRevocation(t, e.conn, idpIssuer, bus.KindAll, "", at)
		waitApplied(t, e.sc, seq)
		_, later, _ := e.tokens(t, at.Add(time.Second), nil)
		e.verdicts(t, map[string]*Error{"A": ErrRevoked},
			map[string]string{"Herald": h, "A": a, "B": b, "A issued after": later})
		seq = verifiertest.PublishRevocation(t, e.conn, bus.KindAll, "", at)
		waitApplied(t, e.sc, seq)
		e.verdicts(t, map[string]*Error{"Herald": ErrRevoked, "A": ErrRevoked, "B": ErrRevoked},
			map[string]string{"Herald": h, "A": a, "B": b, "A issued after": later})
	})
}

// TestScopedRevocation_Restart: revocations limited to an issuer hold
// across a restart, from the denylist on disk, and still match no other
// issuer's tokens.
func TestScopedRevocation_Restart(t *testing.T) {
	e := newScopedEnv(t)
	iat := time.Now().Add(-2 * time.Second)
	sub := "dave-" + randomID()
	h, a, b := e.tokens(t, iat, map[string]any{"sub": sub})
	seq := verifiertest.PublishIssuerRevocation(t, e.conn, idpIssuer, bus.KindSubject, sub, iat.Add(time.Second))
	waitApplied(t, e.sc, seq)
	e.stop()
	sc, _ := startCore(t, e.conn, e.dir)
	waitReady(t, sc)
	if st := sc.Status(); st.EventsApplied != 0 {
		t.Fatalf("restarted core applied %d events, want its denylist from disk", st.EventsApplied)
	}
	e.sc = sc
	bustest.WaitFor(t, 5*time.Second, func() error {
		if _, _, ok := sc.keys.External(otherIssuer, e.b.Kid(bus.AlgES256)); !ok {
			return errNotYet
		}
		return nil
	})
	e.verdicts(t, map[string]*Error{"A": ErrRevoked}, map[string]string{"Herald": h, "A": a, "B": b})
}

// TestScopedRevocation_Snapshot: a snapshot carries revocations limited
// to an issuer; a fresh verifier started from it holds the same denylist
// as its publisher and refuses the same tokens.
func TestScopedRevocation_Snapshot(t *testing.T) {
	e := newScopedEnv(t)
	iat := time.Now().Add(-2 * time.Second)
	sub, sid := "erin-"+randomID(), "sess-"+randomID()
	h, a, b := e.tokens(t, iat, map[string]any{"sub": sub, "sid": sid})
	verifiertest.PublishIssuerRevocation(t, e.conn, idpIssuer, bus.KindSubject, sub, iat.Add(time.Second))
	verifiertest.PublishIssuerRevocation(t, e.conn, testIssuer, bus.KindSession, sid, iat.Add(time.Second))
	head := verifiertest.PublishRevocation(t, e.conn, bus.KindToken, "jti-"+randomID(), iat)
	waitApplied(t, e.sc, head)
	info, err := PublishSnapshot(t.Context(), e.conn, e.sc.db, "test")
	if err != nil {
		t.Fatal(err)
	}
	if info.Seq != head || info.Entries != 3 {
		t.Fatalf("snapshot %+v, want 3 entries at %d", info, head)
	}
	fresh := caughtUp(t, e.conn, head)
	if st := fresh.Status(); st.SnapshotSeq != head || st.EventsApplied != 0 {
		t.Fatalf("status %+v: want started from the snapshot at %d", st, head)
	}
	_, want := denylistOf(t, e.sc)
	_, got := denylistOf(t, fresh)
	sameDenylist(t, got, want)
	bustest.WaitFor(t, 5*time.Second, func() error {
		if _, _, ok := fresh.keys.External(otherIssuer, e.b.Kid(bus.AlgES256)); !ok {
			return errNotYet
		}
		return nil
	})
	e.sc = fresh
	e.verdicts(t, map[string]*Error{"Herald": ErrRevoked, "A": ErrRevoked}, map[string]string{"Herald": h, "A": a, "B": b})
}
