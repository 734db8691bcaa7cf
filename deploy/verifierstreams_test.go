package deploy

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/issuer"
)

// TestNATS_VerifierCreatesNoStream: the verifier user of accounts.conf and
// leaf.conf may not create any stream. One of its own could republish its
// messages into HERALD_KEYS or HERALD_SESSIONS, where the server stores
// them whatever the user's permissions (an unsigned revoked.<kid> record
// is honoured; a junk cut-off of kind all stops every refresh), or copy
// HERALD_AUDIT; nor may it read HERALD_AUDIT by get.
func TestNATS_VerifierCreatesNoStream(t *testing.T) {
	leafPort := freePort(t)
	natsEnv(t, fmt.Sprintf(`["nats-leaf://leaf:leaf-secret@127.0.0.1:%d"]`, leafPort))
	hub := startNATS(t, natsConfig(t, "nats/nats-1.conf"), leafPort)
	leaf := startNATS(t, natsConfig(t, "nats/leaf.conf"), 0)
	issuerConn := connectAs(t, bus.Config{URL: userURL(hub, "issuer", "issuer-secret")})
	svc, err := issuer.Open(t.Context(), issuer.Config{
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", AdminToken: "deploy-test-admin-token-32-bytes-long", Logger: quiet,
		ClientSecretCost: 4, IssuerURL: "https://auth.example.com",
	}, issuerConn)
	if err != nil {
		t.Fatal(err)
	}
	run(t, svc.Run, func() { svc.Close() })
	if _, err := svc.CreateSession(t.Context(), issuer.SessionRequest{Subject: "alice"}, "test"); err != nil {
		t.Fatal(err)
	}

	const denied = 500 * time.Millisecond
	for i, cfg := range []bus.Config{
		{URL: userURL(hub, "verifier", "verifier-secret"), Name: "thief-hub"},
		{URL: userURL(hub, "verifier", "verifier-secret"), JetStreamDomain: "hub", Name: "thief-hub-domain"},
		{URL: userURL(leaf, "verifier", "verifier-secret"), JetStreamDomain: "hub", Name: "thief-leaf"},
	} {
		js := connectAs(t, cfg).JetStream()
		for j, dest := range []string{"$KV." + bus.BucketKeys + ".revoked.stolen", "$KV." + bus.BucketSessions + ".cutoff.all.x"} {
			src := fmt.Sprintf("thief%d%d.x", i, j)
			ctx, cancel := context.WithTimeout(t.Context(), denied)
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: fmt.Sprintf("THIEF%d%d", i, j), Subjects: []string{src},
				RePublish: &jetstream.RePublish{Source: src, Destination: dest}})
			cancel()
			if err == nil {
				ctx, cancel := context.WithTimeout(t.Context(), denied)
				_, _ = js.Publish(ctx, src, []byte("junk"))
				cancel()
				t.Errorf("%s: the verifier user created a stream republishing to %s", cfg.Name, dest)
			}
		}
		ctx, cancel := context.WithTimeout(t.Context(), denied)
		_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: fmt.Sprintf("THIEFCOPY%d", i), Sources: []*jetstream.StreamSource{{Name: bus.StreamAudit}}})
		cancel()
		if err == nil {
			t.Errorf("%s: the verifier user created a stream copying %s", cfg.Name, bus.StreamAudit)
		}
		ctx, cancel = context.WithTimeout(t.Context(), denied)
		audit, err := js.Stream(ctx, bus.StreamAudit)
		cancel()
		if err == nil {
			ctx, cancel = context.WithTimeout(t.Context(), denied)
			_, err = audit.GetMsg(ctx, 1)
			cancel()
			if err == nil {
				t.Errorf("%s: the verifier user read %s by get", cfg.Name, bus.StreamAudit)
			}
			ctx, cancel = context.WithTimeout(t.Context(), denied)
			_, err = audit.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(">"))
			cancel()
			if err == nil {
				t.Errorf("%s: the verifier user read %s by get", cfg.Name, bus.StreamAudit)
			}
		}
	}
	kv, err := issuerConn.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(t.Context(), "revoked.stolen"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("HERALD_KEYS revoked.stolen: %v, want not found", err)
	}
}
