package natsserver

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/secretfile"
)

// AuthDir is the directory, under a Herald data directory, that holds
// the files securing the embedded NATS server (AuthFiles).
const AuthDir = "nats-auth"

// File names in an AuthFiles directory.
const (
	caCertName     = "ca.pem"
	caKeyName      = "ca-key.pem"
	serverCertName = "server.pem"
	serverKeyName  = "server-key.pem"
	seedSuffix     = ".nk"
)

// Auth secures an embedded server: clients must use TLS, with the
// server's certificate, and authenticate as one of Users with an nkey;
// each user gets the permissions of its role.
type Auth struct {
	// CertFile and KeyFile are the server's PEM certificate and key.
	CertFile, KeyFile string
	// Users maps the public nkey of every user to its role.
	Users map[string]bus.Role
}

// apply sets opts to require TLS with the certificate and the nkeys of
// the users, each with its role's permissions.
func (a *Auth) apply(opts *server.Options) error {
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: a.CertFile, KeyFile: a.KeyFile})
	if err != nil {
		return fmt.Errorf("server tls: %w", err)
	}
	opts.TLS, opts.TLSConfig, opts.TLSTimeout = true, tc, 2
	for pub, role := range a.Users {
		if !nkeys.IsValidPublicUserKey(pub) {
			return fmt.Errorf("nkey user %q is not a public user key", pub)
		}
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: pub, Permissions: Permissions(role)})
	}
	return nil
}

// AuthFiles are the files that secure an embedded server and let
// clients reach it, all in Dir (mode 0700, files 0600): a certificate
// authority (ca.pem, with its key ca-key.pem), the server's certificate
// for its hosts signed by it (server.pem, server-key.pem), and one nkey
// user seed per role (issuer.nk, verifier.nk, dashboard.nk). A client
// of role r trusts CAFile and signs in with SeedFile(r).
type AuthFiles struct {
	// Dir is the directory holding the files.
	Dir string
}

// CAFile is the PEM certificate of the CA clients trust.
func (a AuthFiles) CAFile() string { return filepath.Join(a.Dir, caCertName) }

// SeedFile is the nkey seed a client of role r authenticates with.
func (a AuthFiles) SeedFile(r bus.Role) string { return filepath.Join(a.Dir, string(r)+seedSuffix) }

// Exist reports whether the CA and the seed of r exist, that is whether
// a client of role r can use the files.
func (a AuthFiles) Exist(r bus.Role) bool {
	for _, p := range []string{a.CAFile(), a.SeedFile(r)} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

func (a AuthFiles) path(name string) string { return filepath.Join(a.Dir, name) }

// CertHosts returns the hosts a server certificate must name for a
// server listening on listen (host:port): loopback by address and name,
// the listen host, and the machine's name when it listens on every
// interface.
func CertHosts(listen string) []string {
	hosts := []string{"127.0.0.1", "::1", "localhost"}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return hosts
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host, _ = os.Hostname() // none if it has no name
	}
	if host != "" && !slices.Contains(hosts, host) {
		hosts = append(hosts, host)
	}
	return hosts
}

// EnsureAuthFiles makes the files of an embedded server in dir, or reuses
// them: a missing CA or seed is created, a server certificate that does
// not name every one of hosts (IP addresses or DNS names) or that expires
// within 30 days is reissued by the CA, and a CA that would expire before
// a new server certificate is replaced. Files that others may read, or
// that do not parse, are refused with an error, never replaced. It
// returns the names of the files it wrote.
func EnsureAuthFiles(dir string, hosts []string, now time.Time) (a AuthFiles, written []string, err error) {
	a = AuthFiles{Dir: dir}
	if len(hosts) == 0 {
		return a, nil, errors.New("nats auth files: no host to certify")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return a, nil, fmt.Errorf("nats auth files: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return a, nil, fmt.Errorf("nats auth files: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		return a, nil, fmt.Errorf("nats auth files: %s is open to others (mode %v); run chmod 700", dir, fi.Mode().Perm())
	}
	write := func(name string, data []byte) error {
		if err := secretfile.Write(a.path(name), data); err != nil {
			return fmt.Errorf("nats auth files: write %s: %w", name, err)
		}
		written = append(written, name)
		return nil
	}

	ca, err := a.loadCertKey("CA", caCertName, caKeyName)
	if err != nil {
		return a, nil, err
	}
	if ca == nil || ca.cert.NotAfter.Before(now.Add(certLifetime)) {
		if ca, err = newCA(now); err != nil {
			return a, nil, fmt.Errorf("nats auth files: make CA: %w", err)
		}
		// The key first: a crash between the two leaves a CA
		// certificate without its key, which the next start reports.
		if err := write(caKeyName, ca.keyPEM); err != nil {
			return a, nil, err
		}
		if err := write(caCertName, ca.certPEM); err != nil {
			return a, nil, err
		}
	}
	srv, err := a.loadCertKey("server certificate", serverCertName, serverKeyName)
	if err != nil {
		return a, nil, err
	}
	if srv == nil || checkServerCert(srv.cert, ca.cert, hosts, now) != nil {
		if srv, err = newServerCert(ca, hosts, now); err != nil {
			return a, nil, fmt.Errorf("nats auth files: make server certificate: %w", err)
		}
		if err := write(serverKeyName, srv.keyPEM); err != nil {
			return a, nil, err
		}
		if err := write(serverCertName, srv.certPEM); err != nil {
			return a, nil, err
		}
	}
	for _, r := range bus.Roles() {
		name := string(r) + seedSuffix
		kp, err := readUserSeed(a.SeedFile(r))
		switch {
		case err == nil:
			kp.Wipe()
		case errors.Is(err, fs.ErrNotExist):
			kp, err := nkeys.CreateUser()
			if err != nil {
				return a, nil, fmt.Errorf("nats auth files: make %s nkey: %w", r, err)
			}
			seed, err := kp.Seed()
			if err != nil {
				return a, nil, fmt.Errorf("nats auth files: make %s nkey: %w", r, err)
			}
			err = write(name, append(seed, '\n'))
			wipe(seed)
			if err != nil {
				return a, nil, err
			}
		case err != nil:
			return a, nil, fmt.Errorf("nats auth files: %w", err)
		}
	}
	return a, written, nil
}

// loadCertKey reads a certificate and its key, nil if either is missing.
func (a AuthFiles) loadCertKey(what, certName, keyName string) (*certKey, error) {
	certPEM, err := os.ReadFile(a.path(certName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nats auth files: read %s: %w", what, err)
	}
	keyPEM, err := secretfile.Read(what+" key", a.path(keyName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nats auth files: %w", err)
	}
	ck, err := parseCertKey(certPEM, keyPEM)
	wipe(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("nats auth files: %s in %s: %w (remove %s and %s to make new ones)",
			what, a.Dir, err, certName, keyName)
	}
	return ck, nil
}

// Auth returns what a server needs to require TLS and the nkeys of
// the files' roles.
func (a AuthFiles) Auth() (*Auth, error) {
	sa := &Auth{CertFile: a.path(serverCertName), KeyFile: a.path(serverKeyName), Users: map[string]bus.Role{}}
	for _, r := range bus.Roles() {
		kp, err := readUserSeed(a.SeedFile(r))
		if err != nil {
			return nil, fmt.Errorf("nats auth files: %w", err)
		}
		pub, err := kp.PublicKey()
		kp.Wipe()
		if err != nil {
			return nil, fmt.Errorf("nats auth files: %s nkey: %w", r, err)
		}
		sa.Users[pub] = r
	}
	return sa, nil
}

// readUserSeed reads an nkey user seed file, refusing one that others may
// read.
func readUserSeed(path string) (nkeys.KeyPair, error) {
	b, err := secretfile.Read("nkey seed", path)
	if err != nil {
		return nil, err
	}
	defer wipe(b)
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("nkey seed %s: %w", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicUserKey(pub) {
		kp.Wipe()
		return nil, fmt.Errorf("nkey seed %s: not a user seed", path)
	}
	return kp, nil
}

// wipe overwrites secret bytes once they are no longer needed.
func wipe(b []byte) {
	for i := range b {
		b[i] = 'x'
	}
}
