package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
)

// verifierFlags are the verifier's own flags.
type verifierFlags struct {
	http, data, natsURL, issuerURL, audience, logLevel string
}

func runVerifier(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("verifier", "verifier [flags]", stderr)
	var f verifierFlags
	fs.StringVar(&f.http, "http", verifier.DefaultHTTPAddr, "verifier HTTP listen address (port 0 picks one)")
	fs.StringVar(&f.data, "data", filepath.Join(defaultDataDir, "verifier"), "data directory (denylist)")
	fs.StringVar(&f.natsURL, "nats", "nats://"+bus.DefaultListen, "NATS URL (comma-separated for a cluster)")
	fs.StringVar(&f.issuerURL, "issuer", "http://"+issuer.DefaultHTTPAddr, "accepted iss claim")
	fs.StringVar(&f.audience, "audience", issuer.DefaultAudience, "accepted audience")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	defer log.Info("herald stopped") // after every deferred close below
	b, err := connectBus(ctx, f.natsURL, "", "", "herald-verifier", log)
	if err != nil {
		return err
	}
	defer b.close()
	sc, err := verifier.OpenSidecar(verifier.SidecarConfig{
		Verifier: verifier.Config{Issuer: f.issuerURL, Audience: f.audience},
		DataDir:  f.data,
		HTTPAddr: f.http,
		Logger:   log,
	}, b.conn)
	if err != nil {
		return err
	}
	defer sc.Close()
	return sc.Run(ctx)
}

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "status [flags]", stderr)
	url := fs.String("verifier-url", "http://"+verifier.DefaultHTTPAddr, "base URL of the verifier")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/v1/status", nil)
	if err != nil {
		return err
	}
	var st map[string]any
	if err := doJSON(req, &st); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}
