package verifier_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// ExampleMiddleware embeds Herald in a Go service: the verifier follows
// the bus in-process (no sidecar, no HTTP listener of its own) and
// Middleware admits requests with a valid, unrevoked token, handing their
// claims to the handler. The NATS server and the signed token stand in
// for a real deployment's NATS cluster and issuer.
func ExampleMiddleware() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "herald-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// In production: bus.Connect to your NATS cluster, which the issuer set up.
	srv, err := natsserver.Start(ctx, natsserver.Config{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	conn, err := bus.Connect(ctx, bus.Config{URL: srv.ClientURL(), Name: "my-service"})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	token := issueToken(ctx, conn) // the issuer's job

	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: "https://issuer.example", Audience: "orders"},
		DataDir:  filepath.Join(dir, "verifier"),
		NoListen: true, // the service serves; the verifier only follows the bus
	}, conn)
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := sc.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}

	orders := verifier.Middleware(sc.Verifier(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verifier.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "orders of %s (scope %q)", c.Subject, c.Scope)
	}))

	for _, auth := range []string{"Bearer " + token, ""} {
		req := httptest.NewRequest(http.MethodGet, "/orders", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		orders.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			fmt.Println(rec.Code, rec.Body.String())
		} else {
			fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	// Output:
	// 200 orders of alice (scope "read")
	// 401 Bearer realm="herald"
}

// issueToken does what Herald's issuer does: it creates the streams,
// publishes its event key and a public key signed by it to HERALD_KEYS,
// and signs an access token with the key.
func issueToken(ctx context.Context, conn *bus.Conn) string {
	if err := conn.EnsureStreams(ctx, bus.StreamConfig{RevocationMaxAge: 20 * time.Minute}); err != nil {
		log.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	jwk, err := bus.NewJWK(pub)
	if err != nil {
		log.Fatal(err)
	}
	// The event key signs the key entry; verifiers trust it on first use
	// here, and pin it (sidecar.Config.EventKeys) in production.
	_, eventPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	signer, err := bus.NewSigner(eventPriv, "https://issuer.example")
	if err != nil {
		log.Fatal(err)
	}
	conn.SetSigner(signer)
	if err := conn.PublishEventKey(ctx); err != nil {
		log.Fatal(err)
	}
	if err := conn.PublishKey(ctx, jwk); err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, &verifier.Claims{
		Issuer: "https://issuer.example", Subject: "alice", Audience: jwt.ClaimStrings{"orders"},
		IssuedAt: verifier.NewNumericDate(now), ExpiresAt: verifier.NewNumericDate(now.Add(5 * time.Minute)),
		ID: "jti-1", ClientID: "web", SessionID: "sid-1", Scope: "read",
	})
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = jwk.Kid
	s, err := tok.SignedString(priv)
	if err != nil {
		log.Fatal(err)
	}
	return s
}
