package bustest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
)

// RunSecureServer starts an embedded server as RunServer does, but
// secured as herald dev secures its own: TLS with a certificate of a CA
// and nkey users with the permissions of their roles, all made by
// natsserver.EnsureAuthFiles in a temporary directory.
func RunSecureServer(tb testing.TB) (*natsserver.Server, natsserver.AuthFiles) {
	tb.Helper()
	dir := tb.TempDir()
	files, _, err := natsserver.EnsureAuthFiles(filepath.Join(dir, natsserver.AuthDir), natsserver.CertHosts("127.0.0.1:0"), time.Now())
	if err != nil {
		tb.Fatalf("nats auth files: %v", err)
	}
	auth, err := files.Auth()
	if err != nil {
		tb.Fatalf("nats auth files: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, natsserver.Config{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "nats"), Auth: auth})
	if err != nil {
		tb.Fatalf("start nats: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s, files
}

// ConnectAs connects to s with the seed of role and the CA of files (a
// verifier with bus.VerifierInboxPrefix, as herald verifier does) and
// closes the connection when the test ends.
func ConnectAs(tb testing.TB, s *natsserver.Server, files natsserver.AuthFiles, role bus.Role) *bus.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{URL: s.ClientURL(), Name: tb.Name() + "-" + string(role),
		NkeyFile: files.SeedFile(role), CAFile: files.CAFile(), InboxPrefix: role.InboxPrefix()})
	if err != nil {
		tb.Fatalf("connect nats as %s: %v", role, err)
	}
	tb.Cleanup(c.Close)
	c.SetSigner(Signer(tb)) // publishing is up to the role's permissions
	return c
}

// StrangerSeedFile writes the seed of a new nkey user that no server
// knows to a file (0600) and returns its path: a credential a secured
// server refuses.
func StrangerSeedFile(tb testing.TB) string {
	tb.Helper()
	user, err := nkeys.CreateUser()
	if err != nil {
		tb.Fatal(err)
	}
	seed, err := user.Seed()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "stranger.nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
