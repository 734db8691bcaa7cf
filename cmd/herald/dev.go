package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/internal/tasks"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// runDev runs everything in one process: an embedded NATS server, the
// issuer and one verifier sidecar pinned to the issuer's event key.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", "dev [flags]", stderr)
	var f issuerFlags
	f.register(fs)
	verifierHTTP := fs.String("verifier-http", sidecar.DefaultHTTPAddr, "verifier HTTP listen address (port 0 picks one)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	st, err := openIssuerStack(ctx, &f, "herald-dev", stderr)
	if err != nil {
		return err
	}
	defer st.close() // after the verifier's denylist is closed: the bus last
	log, b, tel, svc := st.log, st.bus, st.tel, st.svc
	sc, err := sidecar.Open(sidecar.Config{
		Verifier:      verifier.Config{Issuer: svc.IssuerURL(), Audience: f.audience},
		EventKeys:     append([]string{svc.EventKeyID()}, f.nats.pins()...),
		RootKeys:      f.nats.roots(),
		DataDir:       filepath.Join(f.data, "verifier"),
		HTTPAddr:      *verifierHTTP,
		Logger:        log,
		Version:       version,
		MeterProvider: tel.meter,
		Metrics:       tel.metrics,
	}, b.conn)
	if err != nil {
		return err
	}
	defer sc.Close()

	g := tasks.New(ctx)
	g.Go("issuer", svc.Run)
	g.Go("verifier", sc.Run)
	natsURL, natsAuth := f.natsURL, "(given with --nats)"
	if b.server != nil {
		natsURL = b.server.ClientURL()
		natsAuth = fmt.Sprintf("TLS, CA and nkeys in %s (verifier.nk, dashboard.nk)", filepath.Join(f.data, natsserver.AuthDir))
	}
	tokenFile := filepath.Join(f.data, issuer.AdminTokenFile)
	if os.Getenv("HERALD_ADMIN_TOKEN") != "" {
		tokenFile = "(HERALD_ADMIN_TOKEN)"
	}
	g.Go("announce", func(ctx context.Context) error {
		if sc.WaitReady(ctx) != nil {
			return nil // stopped before it was ready
		}
		log.Info("herald dev ready", "issuer", svc.URL(), "verifier", sc.URL(), "nats", natsURL, "admin_token", tokenFile)
		fmt.Fprintf(stdout, "Herald is running.\n  issuer:      %s (dashboard)\n  verifier:    %s\n  nats:        %s\n  nats auth:   %s\n  admin token: %s\nPress Ctrl-C to stop.\n",
			svc.URL(), sc.URL(), natsURL, natsAuth, tokenFile)
		return nil
	})
	return g.Wait()
}
