package verifier

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// detachedSignature signs payload as bus.Signer does, with signer's key
// from bustest, so tests can pair a valid signature with any payload.
func detachedSignature(t *testing.T, signer *bus.Signer, payload []byte) string {
	t.Helper()
	h, err := json.Marshal(map[string]string{"alg": bus.AlgEdDSA, "kid": signer.KeyID(), "typ": bus.SecEventType})
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(payload)
	return b64(h) + ".." + b64(ed25519.Sign(bustest.EventKey(t), []byte(input)))
}

func revocationEvent(kind bus.Kind, value string) *bus.Event {
	now := time.Now()
	return &bus.Event{ID: bus.NewID(), Type: bus.TypeRevocation, Time: now, Actor: "test",
		Revocation: &bus.Revocation{Kind: kind, Value: value, At: now, Until: now.Add(20 * time.Minute)}}
}

// TestSidecar_ForgedEventsRefused publishes, as someone with publish and
// bucket write rights on NATS but without the issuer's event key: a
// revocation signed by their own event key, a revocation of the issuer
// tampered with, one replayed onto another subject, an audit event and a
// key entry replayed onto the revocation stream, and a key of their own
// (an event key and a token key it signs). The sidecar refuses each with
// its reason, counts them, trusts no forged key, and still applies the
// issuer's next revocation.
func TestSidecar_ForgedEventsRefused(t *testing.T) {
	f := newFixture(t)
	victim, bystander := baseClaims(time.Now()), baseClaims(time.Now())
	mallory := bustest.ForeignConn(t, f.srv)
	js := f.conn.JetStream()
	publishRaw := func(subject string, data []byte, sig string) {
		t.Helper()
		msg := nats.NewMsg(subject)
		msg.Data = data
		msg.Header.Set(bus.HeaderSignature, sig)
		if _, err := js.PublishMsg(t.Context(), msg); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	honest := bustest.Signer(t)

	// Forged: signed by a key no verifier trusts.
	if _, err := mallory.Publish(t.Context(), revocationEvent(bus.KindAll, "")); err != nil {
		t.Fatal(err)
	}
	// Tampered: the issuer's signature over another payload.
	payload, sig, err := honest.SignEvent(revocationEvent(bus.KindSession, "sid-other"))
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(bus.RevokeSubject(bus.KindSession),
		[]byte(strings.Replace(string(payload), "sid-other", victim["sid"].(string), 1)), sig)
	// Replayed onto another subject: a subject revocation of the victim's
	// subject would catch the bystander too.
	payload, sig, err = honest.SignEvent(revocationEvent(bus.KindSession, bystander["sub"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(bus.RevokeSubject(bus.KindSubject), payload, sig)
	// Replayed from the audit stream.
	audit := &bus.Event{ID: bus.NewID(), Type: bus.TypeAdminRevoke, Time: time.Now(), Actor: "x",
		Admin: &bus.Admin{Action: "revoke"}}
	payload, sig, err = honest.SignEvent(audit)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(bus.RevokeSubject(bus.KindAll), payload, sig)
	// A key entry of the bucket, reattached as an event: its signature
	// holds, but for the bucket.
	entry, err := honest.SignKey(mustJWK(t, f.EdJWK))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(entry), ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(bus.RevokeSubject(bus.KindAll), raw, parts[0]+".."+parts[2])
	// A token key of mallory's, signed by mallory's event key.
	_, malloryTokenKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	malloryKid, malloryJWK := jwkOf(t, malloryTokenKey.Public())
	if err := mallory.PublishEventKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := mallory.PublishKey(t.Context(), mustJWK(t, malloryJWK)); err != nil {
		t.Fatal(err)
	}

	revoke(t, f.conn, f.sc, bus.KindSession, victim["sid"].(string), time.Now())
	st := f.sc.Status()
	if st.Refused != 5 || st.Malformed != 0 {
		t.Fatalf("refused %d, malformed %d events; want 5 refused", st.Refused, st.Malformed)
	}
	if len(st.EventKeys) != 1 || st.EventKeys[0] != honest.KeyID() {
		t.Fatalf("event keys %v, want only %s", st.EventKeys, honest.KeyID())
	}
	v := f.sc.Verifier()
	bustest.WaitFor(t, 5*time.Second, func() error {
		if n := v.keys.bad.Load(); n < 2 {
			return fmt.Errorf("%d key entries refused, want 2 (mallory's event key and token key)", n)
		}
		return nil
	})
	_, err = v.Verify(t.Context(), f.EdToken(t, victim))
	checkVerdict(t, err, ErrRevoked)
	_, err = v.Verify(t.Context(), f.EdToken(t, bystander)) // no forged "all" or subject revocation applied
	checkVerdict(t, err, nil)
	forged := signJWT(t, jwt.SigningMethodEdDSA, malloryTokenKey,
		map[string]any{"typ": "at+jwt", "alg": bus.AlgEdDSA, "kid": malloryKid}, baseClaims(time.Now()))
	_, err = v.Verify(t.Context(), forged)
	checkVerdict(t, err, ErrUnknownKey)
}

// TestKeySet_EventKeyTrust checks who may sign token keys: pinned event
// keys only, or without pins the event keys present at start, or the
// first to appear when there were none.
func TestKeySet_EventKeyTrust(t *testing.T) {
	k := newTestKeys(t)
	honest := bustest.Signer(t)
	_, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := bus.NewSigner(otherPriv, testIssuer)
	if err != nil {
		t.Fatal(err)
	}
	eventEntry := func(s *bus.Signer) (string, []byte) {
		data, err := json.Marshal(s.JWK())
		if err != nil {
			t.Fatal(err)
		}
		return bus.EventKeyPrefix + s.KeyID(), data
	}
	keyEntry := func(s *bus.Signer, jwk []byte) []byte {
		data, err := s.SignKey(mustJWK(t, jwk))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}

	t.Run("pinned", func(t *testing.T) {
		ks := NewKeySet(nil, nil)
		ks.TrustEventKeys(honest.KeyID())
		name, data := eventEntry(other)
		if err := ks.Put(name, data); err == nil {
			t.Fatal("an event key that is not pinned was trusted")
		}
		// Signed by an event key not trusted yet: kept aside, then
		// trusted with it.
		if err := ks.Put(k.EdKid, keyEntry(honest, k.EdJWK)); err == nil {
			t.Fatal("token key trusted before its event key")
		}
		name, data = eventEntry(honest)
		if err := ks.Put(name, data); err != nil {
			t.Fatal(err)
		}
		if _, ok := ks.Get(k.EdKid); !ok {
			t.Fatal("token key not trusted once its event key was")
		}
		if err := ks.Put(k.EsKid, keyEntry(other, k.EsJWK)); err == nil {
			t.Fatal("token key signed by an untrusted event key was trusted")
		}
	})
	t.Run("first use closes once loaded", func(t *testing.T) {
		ks := NewKeySet(nil, nil)
		name, data := eventEntry(honest)
		if err := ks.Put(name, data); err != nil {
			t.Fatal(err)
		}
		ks.markLoaded()
		name, data = eventEntry(other)
		if err := ks.Put(name, data); err == nil {
			t.Fatal("an event key appearing after start was trusted")
		}
	})
	t.Run("first to appear when none at start", func(t *testing.T) {
		ks := NewKeySet(nil, nil)
		ks.markLoaded()
		name, data := eventEntry(honest)
		if err := ks.Put(name, data); err != nil {
			t.Fatal(err)
		}
		name, data = eventEntry(other)
		if err := ks.Put(name, data); err == nil {
			t.Fatal("a second event key was trusted on first use")
		}
	})
	t.Run("bad entries", func(t *testing.T) {
		ks := NewKeySet(nil, nil)
		ks.TrustEventKeys(honest.KeyID())
		name, data := eventEntry(honest)
		if err := ks.Put(name, data); err != nil {
			t.Fatal(err)
		}
		if err := ks.Put(bus.EventKeyPrefix+"x", data); err == nil {
			t.Error("event key under another name was trusted")
		}
		if err := ks.Put(k.EdKid, k.EdJWK); err == nil {
			t.Error("unsigned token key was trusted")
		}
		if err := ks.Put(k.EsKid, keyEntry(honest, k.EdJWK)); err == nil {
			t.Error("signed key entry under another kid was trusted")
		}
		entry := keyEntry(honest, k.EdJWK)
		parts := strings.Split(string(entry), ".")
		tampered := parts[0] + "." + parts[1][:len(parts[1])-2] + "AA." + parts[2]
		if err := ks.Put(k.EdKid, []byte(tampered)); err == nil {
			t.Error("tampered key entry was trusted")
		}
		ks.Remove(name) // a deleted event key stays trusted
		if _, _, ok := ks.EventKey(honest.KeyID()); !ok {
			t.Error("event key dropped on delete")
		}
	})
}

func mustJWK(t *testing.T, data []byte) bus.JWK {
	t.Helper()
	jwk, _, err := bus.ParseJWK(data)
	if err != nil {
		t.Fatal(err)
	}
	return jwk
}
