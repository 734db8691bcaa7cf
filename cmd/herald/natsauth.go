package main

import (
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
)

// config returns the settings to connect to an existing NATS at urls as
// role. When no credential is given (no --nats-creds, --nats-nkey,
// --nats-cert or --nats-ca, no user in the URL) and --nats-discover is
// on, it uses the seed of role and the CA that herald dev (or herald
// issuer) made for its embedded server under ./herald-data, if they
// exist: `herald verifier --nats nats://127.0.0.1:4222` then works from
// the directory where herald dev runs.
func (f *natsFlags) config(urls, name string, role bus.Role, log *slog.Logger) bus.Config {
	// A verifier's inbox prefix is the only one its role may subscribe
	// to; other setups do not mind it.
	cfg := bus.Config{URL: urls, Name: name, Logger: log, Retry: true, InboxPrefix: role.InboxPrefix(),
		CredsFile: f.creds, NkeyFile: f.nkey, CAFile: f.ca, CertFile: f.cert, KeyFile: f.key, JetStreamDomain: f.domain}
	given := f.creds != "" || f.nkey != "" || f.ca != "" || f.cert != "" || f.key != ""
	if urls == "" || given || !f.discover || hasUser(urls) {
		return cfg
	}
	files := natsserver.AuthFiles{Dir: filepath.Join(defaultDataDir, natsserver.AuthDir)}
	if !files.Exist(role) {
		return cfg
	}
	cfg.NkeyFile, cfg.CAFile = files.SeedFile(role), files.CAFile()
	log.Info("nats: using the embedded server's credential found in the working directory",
		"role", role, "nkey", cfg.NkeyFile, "ca", cfg.CAFile)
	return cfg
}

// hasUser reports whether any of the comma-separated URLs carries a user.
func hasUser(urls string) bool {
	for _, s := range strings.Split(urls, ",") {
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil && u.User != nil {
			return true
		}
	}
	return false
}
