package issuer

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/secretfile"
)

// openEventKey loads the issuer's event key from dir, or creates it on a
// first start. The event key signs every event and token key entry this
// issuer publishes; verifiers pin it by kid. It is Ed25519 whatever the
// token algorithm, lives as long as the data directory, and like the
// token keys never leaves it (file mode 0600, directory 0700).
func openEventKey(dir string) (k *signingKey, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("open event key: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("open event key: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, fmt.Errorf("open event key: %w", err)
	}
	var found []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".pem") {
			found = append(found, e.Name())
		}
	}
	switch len(found) {
	case 0:
		k, err := createKey(dir, bus.AlgEdDSA)
		if err != nil {
			return nil, false, fmt.Errorf("open event key: %w", err)
		}
		return k, true, nil
	case 1:
		k, err := readKey(filepath.Join(dir, found[0]))
		if err != nil {
			return nil, false, fmt.Errorf("open event key: %w", err)
		}
		return k, false, nil
	}
	return nil, false, fmt.Errorf("open event key: %s holds %d keys, want one", dir, len(found))
}

// legacySuffix marks the signed copy of an unsigned revocation: the copy's
// id is the original's plus this suffix, so replicas that upgrade together
// publish one copy (Nats-Msg-Id dedupe).
const legacySuffix = "-signed"

// resignLegacy republishes, signed, the unsigned revocations that an older
// issuer left in the HERALD stream and that still matter (their until has
// not passed): verifiers drop unsigned events, and an upgrade must not
// un-revoke anything.
func (s *Service) resignLegacy(ctx context.Context) error {
	now := s.now()
	var legacy []*bus.Event
	err := s.conn.Read(ctx, bus.StreamRevocations, bus.ReadOptions{}, func(d bus.Delivery) bool {
		if d.Header.Get(bus.HeaderSignature) != "" {
			return true
		}
		e, err := bus.Decode(d.Data)
		if err != nil || e.Type != bus.TypeRevocation || !e.Revocation.Until.After(now) || len(e.ID)+len(legacySuffix) > 64 {
			return true
		}
		legacy = append(legacy, &bus.Event{ID: e.ID + legacySuffix, Type: e.Type, Time: e.Time, Actor: e.Actor, Revocation: e.Revocation})
		return true
	})
	if err != nil || len(legacy) == 0 {
		return err
	}
	s.log.Info("signing revocations published unsigned by an older issuer", "count", len(legacy))
	if _, err := s.conn.PublishAll(ctx, legacy...); err != nil {
		return fmt.Errorf("republish unsigned revocations: %w", err)
	}
	return nil
}

// eventKeyForbidden are the permissions a shared event key file must not
// grant: none to others. Its group may read it, as Kubernetes makes a
// secret readable by the pod's fsGroup.
const eventKeyForbidden = secretfile.GroupReadable

// EventKeyFile returns the kid of the event key in the PEM file at path,
// the value verifiers pin with --event-keys, creating the file (Ed25519,
// mode 0600) when it does not exist. Replicas of one deployment share the
// file (Config.EventKeyFile).
func EventKeyFile(path string) (kid string, created bool, err error) {
	k, err := readPrivateKey(path, eventKeyForbidden)
	if errors.Is(err, fs.ErrNotExist) {
		k, err = createKeyFile(path)
		created = true
	}
	if err != nil {
		return "", false, fmt.Errorf("event key %s: %w", path, err)
	}
	return k.kid, created, nil
}

// CreateRootKey creates a root key at path: Ed25519, PKCS#8 PEM, mode
// 0600. It refuses to overwrite a file. The root key certifies and
// revokes event keys; keep it offline, never on an issuer host. It returns
// the kid that issuers and verifiers pin with --root-keys.
func CreateRootKey(path string) (string, error) {
	if _, err := os.Lstat(path); err == nil {
		return "", fmt.Errorf("create root key: %s exists", path)
	}
	k, err := createKeyFile(path)
	if err != nil {
		return "", fmt.Errorf("create root key: %w", err)
	}
	return k.kid, nil
}

// createKeyFile generates an Ed25519 key and stores it at path, mode 0600.
func createKeyFile(path string) (*signingKey, error) {
	k, pemBytes, err := generateKey(bus.AlgEdDSA)
	if err != nil {
		return nil, err
	}
	if err := secretfile.Write(path, pemBytes); err != nil {
		return nil, fmt.Errorf("store key: %w", err)
	}
	return k, nil
}

// rootSigner reads the root key at path, which only its owner may read.
func rootSigner(path string) (*bus.Signer, error) {
	k, err := readPrivateKey(path, secretfile.OwnerOnly)
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	return bus.NewSigner(k.priv, "")
}

// readPublicKey reads the public key of a PEM file holding a PKCS#8
// private key or a PKIX public key.
func readPublicKey(path string) (bus.JWK, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return bus.JWK{}, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return bus.JWK{}, fmt.Errorf("%s: not a PEM file", path)
	}
	var pub crypto.PublicKey
	switch block.Type {
	case "PRIVATE KEY":
		k, err := readPrivateKey(path, eventKeyForbidden)
		if err != nil {
			return bus.JWK{}, err
		}
		pub = k.priv.Public()
	case "PUBLIC KEY":
		if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return bus.JWK{}, fmt.Errorf("%s: %w", path, err)
		}
	default:
		return bus.JWK{}, fmt.Errorf("%s: PEM block %q, want PRIVATE KEY or PUBLIC KEY", path, block.Type)
	}
	return bus.NewJWK(pub)
}

// CertifyEventKey returns the certificate, signed with the root key at
// rootPath, of the event key in the PEM file at eventKeyPath (its private
// or public key), for the deployment whose issuer identifier (iss, the
// issuer's IssuerURL) is iss: the name it is stored under in HERALD_KEYS,
// and its value. It is valid from notBefore until expires (zero: no
// expiry).
func CertifyEventKey(rootPath, iss, eventKeyPath string, notBefore, expires time.Time) (name string, value []byte, err error) {
	root, err := rootSigner(rootPath)
	if err != nil {
		return "", nil, err
	}
	key, err := readPublicKey(eventKeyPath)
	if err != nil {
		return "", nil, fmt.Errorf("certify event key: %w", err)
	}
	return bus.CertifyEventKey(root, iss, key, notBefore, expires)
}

// RevokeEventKey returns the revocation of event key kid, signed with the
// root key at rootPath: its name in HERALD_KEYS and its value.
func RevokeEventKey(rootPath, kid, reason string) (name string, value []byte, err error) {
	root, err := rootSigner(rootPath)
	if err != nil {
		return "", nil, err
	}
	return bus.RevokeEventKey(root, kid, reason)
}

// PublishRootStatement puts a certificate or event key revocation made by
// CertifyEventKey or RevokeEventKey in HERALD_KEYS and returns its name.
func PublishRootStatement(ctx context.Context, conn *bus.Conn, value []byte) (string, error) {
	name, err := bus.StatementName(value)
	if err != nil {
		return "", err
	}
	kv, err := conn.Keys(ctx)
	if err != nil {
		return "", err
	}
	if _, err := kv.Put(ctx, name, []byte(strings.TrimSpace(string(value)))); err != nil {
		return "", fmt.Errorf("publish %s: %w", name, err)
	}
	return name, nil
}

// checkOwnEventKey refuses to sign with an event key that a pinned root
// key revoked: a new event key must be made and certified.
func checkOwnEventKey(ctx context.Context, conn *bus.Conn, rootKeys []string, kid string, log *slog.Logger) error {
	kv, err := conn.Keys(ctx)
	if err != nil {
		return err
	}
	e, err := kv.Get(ctx, bus.RevokedEventKeyPrefix+kid)
	if err != nil {
		return nil // no revocation (or none readable yet: verifiers still check)
	}
	if _, err := bus.OpenEventKeyRevocation(e.Key(), e.Value(), func(root string) bool { return slices.Contains(rootKeys, root) }); err != nil {
		log.Warn("event key revocation not signed by a pinned root key; ignored", "event_kid", kid, "err", err)
		return nil
	}
	return fmt.Errorf("event key %s was revoked by a root key: create a new one and certify it (herald keys event certify)", kid)
}
