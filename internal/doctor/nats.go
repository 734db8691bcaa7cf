package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
)

// connect connects to NATS once, without retrying, and reports how it
// went: a refused credential, an unreachable server and a TLS failure
// each get their own fix.
func (r *run) connect(ctx context.Context) *bus.Conn {
	cfg := r.cfg.Bus
	cfg.Retry = false
	if cfg.Name == "" {
		cfg.Name = "herald-doctor"
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	conn, err := bus.Connect(cctx, cfg)
	if err != nil {
		r.add(CheckNATS, Error, err.Error(), connectFix(err))
		return nil
	}
	nc := conn.NATS()
	r.add(CheckNATS, OK, fmt.Sprintf("connected to %s (server %s, nats-server %s) and authenticated",
		nc.ConnectedUrlRedacted(), nc.ConnectedServerName(), nc.ConnectedServerVersion()), "")
	return conn
}

// connectFix says what to do about a failed connection.
func connectFix(err error) string {
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(msg, "authorization") ||
		strings.Contains(msg, "authentication"):
		return "NATS refused the credentials: give the credential of a Herald role that NATS knows " +
			"(--nats-creds for a credentials file of the HERALD account, --nats-nkey for herald dev's or herald issuer's embedded server, " +
			"e.g. herald-data/nats-auth/dashboard.nk); check that it has not expired or been revoked, and that the user is in the account Herald's streams live in"
	case strings.Contains(msg, "x509") || strings.Contains(msg, "tls") || strings.Contains(msg, "certificate"):
		return "the TLS handshake failed: give the CA that signs the NATS servers' certificates with --nats-ca, " +
			"and a client certificate with --nats-cert and --nats-key if the servers verify clients"
	case strings.Contains(msg, "file") || strings.Contains(msg, "seed") || strings.Contains(msg, "permission denied"):
		return "a credential file could not be used: check the paths given with --nats-creds, --nats-nkey, --nats-ca, --nats-cert and --nats-key, and that seed files are readable by their owner only (mode 0600)"
	}
	return "no NATS server answered: check --nats (nats://host:4222, comma-separated for a cluster), that the servers run, and that a firewall lets this host reach them"
}

// jetStream checks that the account has JetStream, which Herald's streams
// need, and that the credentials may use it.
func (r *run) jetStream(ctx context.Context, conn *bus.Conn) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	info, err := conn.JetStream().AccountInfo(ctx)
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		r.add(CheckJetStream, Error, "JetStream is not enabled for this account: "+err.Error(),
			"enable JetStream on the NATS servers (jetstream { store_dir: ... }) and for the account Herald uses")
		return false
	case err != nil:
		r.add(CheckJetStream, Error, "the JetStream API did not answer: "+err.Error(),
			"the credentials may not be allowed to use the JetStream API ($JS.API.INFO): use the dashboard's or the issuer's "+
				"(herald nats-permissions dashboard prints the dashboard's); with a leaf node, give the hub's JetStream domain with --nats-domain")
		return false
	}
	detail := fmt.Sprintf("JetStream answers: %d streams", info.Streams)
	if info.Domain != "" {
		detail += ", domain " + info.Domain
	}
	r.add(CheckJetStream, OK, detail, "")
	return true
}
