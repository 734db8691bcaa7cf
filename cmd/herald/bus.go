package main

import (
	"context"
	"flag"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
)

const defaultDataDir = "herald-data"

// natsFlags are how issuer and verifier authenticate to NATS: files, never
// secrets on the command line.
type natsFlags struct {
	creds, nkey, ca, cert, key, domain, eventKeys, rootKeys string
	discover                                                bool
}

func (f *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.creds, "nats-creds", "", "NATS credentials file (user JWT and seed, as nsc writes it)")
	fs.StringVar(&f.nkey, "nats-nkey", "", "NATS nkey seed file, e.g. herald-data/"+natsserver.AuthDir+"/verifier.nk of herald dev's embedded server")
	fs.BoolVar(&f.discover, "nats-discover", true, "without --nats-creds, --nats-nkey, --nats-cert or --nats-ca: use the seed and CA of herald dev's embedded server under ./"+defaultDataDir+"/"+natsserver.AuthDir+" if they exist")
	fs.StringVar(&f.ca, "nats-ca", "", "PEM file of the CAs that sign the NATS servers' certificates (requires TLS)")
	fs.StringVar(&f.cert, "nats-cert", "", "PEM client certificate for NATS servers that verify clients (with --nats-key)")
	fs.StringVar(&f.key, "nats-key", "", "PEM key of --nats-cert")
	fs.StringVar(&f.domain, "nats-domain", "", "JetStream domain of the hub, when connected to a leaf node (see deploy/README.md)")
	fs.StringVar(&f.eventKeys, "event-keys", "", "comma-separated kids of the issuers' event keys to trust (printed by the issuer as event_kid); empty: trust on first use")
	fs.StringVar(&f.rootKeys, "root-keys", "", "comma-separated kids of the offline root keys that certify and revoke event keys (herald keys root create)")
}

// roots returns the root key kids of --root-keys.
func (f *natsFlags) roots() []string { return splitList(f.rootKeys) }

// pins returns the event key kids of --event-keys.
func (f *natsFlags) pins() []string { return splitList(f.eventKeys) }

// natsBus is a connection to NATS and, when embedded, its server.
type natsBus struct {
	conn   *bus.Conn
	server *natsserver.Server
}

// connectBus connects to url as role, or, when url is empty, starts an
// embedded server on listen storing under dataDir/nats, secured with the
// TLS and nkey files of dataDir/nats-auth, and connects to it as the
// issuer.
func connectBus(ctx context.Context, url, listen, dataDir, name string, role bus.Role, auth natsFlags, log *slog.Logger) (*natsBus, error) {
	b := &natsBus{}
	cfg := auth.config(url, name, role, log)
	if url == "" {
		files, written, err := natsserver.EnsureAuthFiles(filepath.Join(dataDir, natsserver.AuthDir), natsserver.CertHosts(listen), time.Now())
		if err != nil {
			return nil, err
		}
		sa, err := files.Auth()
		if err != nil {
			return nil, err
		}
		s, err := natsserver.Start(ctx, natsserver.Config{Listen: listen, StoreDir: filepath.Join(dataDir, "nats"), Logger: log, Auth: sa})
		if err != nil {
			return nil, err
		}
		b.server = s
		log.Info("nats requires TLS and an nkey", "dir", files.Dir, "ca", files.CAFile(),
			"verifier_nkey", files.SeedFile(bus.RoleVerifier), "dashboard_nkey", files.SeedFile(bus.RoleDashboard),
			"created", strings.Join(written, ","))
		cfg = bus.Config{URL: s.ClientURL(), Name: name, Logger: log,
			NkeyFile: files.SeedFile(bus.RoleIssuer), CAFile: files.CAFile()}
	}
	conn, err := bus.Connect(ctx, cfg)
	if err != nil {
		b.close()
		return nil, err
	}
	b.conn = conn
	return b, nil
}

// close drains the connection, then stops the embedded server.
func (b *natsBus) close() {
	if b.conn != nil {
		b.conn.Close()
	}
	if b.server != nil {
		b.server.Shutdown()
	}
}
