package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/secretfile"
)

// signingKey is a private key this issuer signs with.
type signingKey struct {
	kid    string
	alg    string
	method jwt.SigningMethod
	priv   crypto.Signer
	jwk    bus.JWK
	// created is when the key was made (its file's modification time
	// for a key loaded from disk).
	created time.Time
}

// keyring holds the issuer's private keys in dir, one PKCS#8 PEM file per
// key (mode 0600, directory 0700), and which one currently signs. Private
// keys never leave this directory; only public keys are published.
type keyring struct {
	dir string

	mu      sync.RWMutex
	keys    map[string]*signingKey
	current *signingKey
	next    *signingKey // published, not yet signing: it signs after the next rotation
}

const (
	currentFile = "current"
	nextFile    = "next"
)

// openKeyring loads the keys in dir, creating dir, a current and a next
// key of algorithm alg where they are missing or of another algorithm.
// Keys recorded revoked are deleted from dir, never loaded: a current or
// next key that was revoked is replaced by a new one.
func openKeyring(dir, alg string, revoked map[string]bool) (kr *keyring, created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("open keys: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("open keys: %w", err)
	}
	kr = &keyring{dir: dir, keys: make(map[string]*signingKey)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, false, fmt.Errorf("open keys: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".pem") {
			continue
		}
		k, err := readKey(filepath.Join(dir, name))
		if err != nil {
			return nil, false, fmt.Errorf("open keys: %w", err)
		}
		if revoked[k.kid] {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, false, fmt.Errorf("open keys: delete revoked key: %w", err)
			}
			continue
		}
		kr.keys[k.kid] = k
	}
	if kr.current, err = kr.pointer(currentFile); err != nil {
		return nil, false, err
	}
	if kr.next, err = kr.pointer(nextFile); err != nil {
		return nil, false, err
	}
	if kr.next == nil || kr.next.alg != alg || kr.next == kr.current {
		k, err := kr.generate(alg)
		if err != nil {
			return nil, false, err
		}
		if err := kr.setPointer(nextFile, k); err != nil {
			return nil, false, err
		}
		created = true
	}
	if kr.current == nil || kr.current.alg != alg {
		// A first start, or a change of algorithm: sign with a fresh key
		// at once. Open publishes it before anything is signed.
		k, err := kr.generate(alg)
		if err != nil {
			return nil, false, err
		}
		if err := kr.setPointer(currentFile, k); err != nil {
			return nil, false, err
		}
		created = true
	}
	return kr, created, nil
}

// pointer returns the key named in file (current or next), nil if none.
func (kr *keyring) pointer(file string) (*signingKey, error) {
	b, err := os.ReadFile(filepath.Join(kr.dir, file))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("open keys: %w", err)
	}
	return kr.keys[strings.TrimSpace(string(b))], nil
}

// generate creates a new key of algorithm alg and stores it, without
// making it current.
func (kr *keyring) generate(alg string) (*signingKey, error) {
	k, err := createKey(kr.dir, alg)
	if err != nil {
		return nil, err
	}
	kr.mu.Lock()
	kr.keys[k.kid] = k
	kr.mu.Unlock()
	return k, nil
}

// createKey generates a key of algorithm alg and stores it in dir as
// <kid>.pem, mode 0600.
func createKey(dir, alg string) (*signingKey, error) {
	k, pemBytes, err := generateKey(alg)
	if err != nil {
		return nil, err
	}
	if err := secretfile.Write(filepath.Join(dir, k.kid+".pem"), pemBytes); err != nil {
		return nil, fmt.Errorf("store signing key: %w", err)
	}
	return k, nil
}

// generateKey generates a key of algorithm alg and returns it with its
// PKCS#8 PEM encoding, for the caller to store with secretfile.Write.
func generateKey(alg string) (*signingKey, []byte, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case bus.AlgEdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case bus.AlgES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		err = fmt.Errorf("unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	k, err := newSigningKey(priv)
	if err != nil {
		return nil, nil, err
	}
	k.created = time.Now()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// setPointer makes k the current or next key, on disk first.
func (kr *keyring) setPointer(file string, k *signingKey) error {
	if err := secretfile.Write(filepath.Join(kr.dir, file), []byte(k.kid+"\n")); err != nil {
		return fmt.Errorf("set %s signing key: %w", file, err)
	}
	kr.mu.Lock()
	if file == currentFile {
		kr.current = k
	} else {
		kr.next = k
	}
	kr.mu.Unlock()
	return nil
}

// Next returns the key that will sign after the next rotation. It is
// published as soon as it is made, so verifiers hold it long before any
// token is signed with it.
func (kr *keyring) Next() *signingKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.next
}

// Current returns the key that signs new tokens.
func (kr *keyring) Current() *signingKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.current
}

// All returns every key held.
func (kr *keyring) All() []*signingKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([]*signingKey, 0, len(kr.keys))
	for _, k := range kr.keys {
		out = append(out, k)
	}
	return out
}

// Has reports whether the keyring holds kid.
func (kr *keyring) Has(kid string) bool {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.keys[kid] != nil
}

// remove deletes a key's private file. The current and next keys cannot
// be removed.
func (kr *keyring) remove(kid string) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if (kr.current != nil && kr.current.kid == kid) || (kr.next != nil && kr.next.kid == kid) {
		return fmt.Errorf("remove signing key %s: it is the current or next key", kid)
	}
	delete(kr.keys, kid)
	err := os.Remove(filepath.Join(kr.dir, kid+".pem"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove signing key %s: %w", kid, err)
	}
	return nil
}

func newSigningKey(priv crypto.Signer) (*signingKey, error) {
	jwk, err := bus.NewJWK(priv.Public())
	if err != nil {
		return nil, err
	}
	k := &signingKey{kid: jwk.Kid, alg: jwk.Alg, priv: priv, jwk: jwk}
	switch jwk.Alg {
	case bus.AlgEdDSA:
		k.method = jwt.SigningMethodEdDSA
	case bus.AlgES256:
		k.method = jwt.SigningMethodES256
	}
	return k, nil
}

func readKey(path string) (*signingKey, error) {
	k, err := readPrivateKey(path, secretfile.OwnerOnly)
	if err != nil {
		return nil, err
	}
	if filepath.Base(path) != k.kid+".pem" {
		return nil, fmt.Errorf("signing key %s: file name does not match kid %s", path, k.kid)
	}
	return k, nil
}

// readPrivateKey reads a PKCS#8 PEM private key whose mode grants none of
// the permissions in forbidden (secretfile.OwnerOnly or
// secretfile.GroupReadable).
func readPrivateKey(path string, forbidden fs.FileMode) (*signingKey, error) {
	b, fi, err := secretfile.ReadFile("signing key", path, forbidden)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("signing key %s: not a PKCS#8 PEM file", path)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: unsupported key type %T", path, parsed)
	}
	k, err := newSigningKey(priv)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	k.created = fi.ModTime()
	return k, nil
}

// publishKey puts the public key in HERALD_KEYS, signed with the event
// key, where verifiers learn it.
func publishKey(ctx context.Context, conn *bus.Conn, k *signingKey) error {
	return conn.PublishKey(ctx, k.jwk)
}
