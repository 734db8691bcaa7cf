package verifier

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// boundRequest is a forward-auth-free request for target with a token and
// a DPoP proof.
func boundRequest(method, target, tok, proof string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	r.Header.Set("Authorization", "DPoP "+tok)
	if proof != "" {
		r.Header.Set(HeaderDPoP, proof)
	}
	return r
}

// atIat sets a proof's iat to t, with its nanoseconds, so that proofs made
// in one test have distinct, ordered issue times.
func atIat(t time.Time) func(h, c map[string]any) {
	return func(_, c map[string]any) { c["iat"] = json1e9(t) }
}

// json1e9 is t as a NumericDate JSON number with nanoseconds.
func json1e9(t time.Time) any { return json.Number(fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())) }

// TestDPoP_ReplayCacheNeedsTheBoundKey: a proof's jti is remembered only
// once the proof's key is shown to be the one the valid token is bound to,
// so a caller with a stolen token but without its key cannot fill the
// replay cache; and a full cache forgets its oldest proofs (refusing proofs
// no newer than those, which it can no longer tell from replays) instead
// of refusing every honest client.
func TestDPoP_ReplayCacheNeedsTheBoundKey(t *testing.T) {
	k := newTestKeys(t)
	clk := &clock{now: time.Now()}
	v, _, _ := newMemVerifier(t, k, clk)
	v.replay = NewReplayCache(8)
	v.replay.perKey = 4
	const target = "https://api.example/orders"
	honest := newDPoPKey(t)
	c := baseClaims(time.Now().Add(-time.Second))
	c["cnf"] = map[string]string{"jkt": honest.JKT}
	tok := k.EdToken(t, c)
	base := time.Now().Add(-30 * time.Second)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * time.Millisecond) }

	// A thief with the token but not its key, a new key and jti each time.
	for i := range 50 {
		thief := newDPoPKey(t)
		_, _, err := v.VerifyRequest(boundRequest("GET", target, tok, thief.Proof(t, "GET", target, tok, atIat(at(i)))), false)
		if !errors.Is(err, ErrDPoPProof) {
			t.Fatalf("proof by another key: %v, want invalid_dpop_proof", err)
		}
	}
	if n := v.replay.len(); n != 0 {
		t.Fatalf("proofs by keys the token is not bound to filled the replay cache: %d entries", n)
	}

	// The honest client is served, far beyond the cache's size.
	var proofs []string
	for i := range 20 {
		p := honest.Proof(t, "GET", target, tok, atIat(at(100+i)))
		proofs = append(proofs, p)
		if _, _, err := v.VerifyRequest(boundRequest("GET", target, tok, p), false); err != nil {
			t.Fatalf("honest proof %d: %v", i, err)
		}
		if n := v.replay.len(); n > 4 {
			t.Fatalf("one key holds %d entries, want at most 4", n)
		}
	}
	// Replays are refused, recent or forgotten.
	for _, i := range []int{0, 10, 19} {
		if _, _, err := v.VerifyRequest(boundRequest("GET", target, tok, proofs[i]), false); !errors.Is(err, ErrDPoPProof) || !strings.Contains(err.Error(), "replay") {
			t.Fatalf("replay of proof %d: %v, want refused as a replay", i, err)
		}
	}

	// Other clients, each within its own bound, fill the whole cache; a
	// newcomer is still served, and the oldest proofs go.
	for n := range 3 {
		other := newDPoPKey(t)
		oc := baseClaims(time.Now().Add(-time.Second))
		oc["cnf"] = map[string]string{"jkt": other.JKT}
		otok := k.EdToken(t, oc)
		for i := range 4 {
			p := other.Proof(t, "GET", target, otok, atIat(at(200+10*n+i)))
			if _, _, err := v.VerifyRequest(boundRequest("GET", target, otok, p), false); err != nil {
				t.Fatalf("client %d proof %d: %v", n, i, err)
			}
			if got := v.replay.len(); got > 8 {
				t.Fatalf("replay cache holds %d entries, bound 8", got)
			}
		}
	}
	if _, _, err := v.VerifyRequest(boundRequest("GET", target, tok, honest.Proof(t, "GET", target, tok, atIat(at(300)))), false); err != nil {
		t.Fatalf("honest proof after the cache filled: %v", err)
	}
}
