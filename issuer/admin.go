package issuer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/heraldsec/herald/internal/secretfile"
)

// AdminTokenFile is the file under the data directory holding the admin
// token when HERALD_ADMIN_TOKEN is not set.
const AdminTokenFile = "admin.token"

// adminAuth checks the admin bearer credential. Only a hash of the token is
// kept, and comparison is constant-time.
type adminAuth struct {
	sum [32]byte
}

// loadAdminToken returns the admin credential: token if set, else the
// content of dir/admin.token, which is created (mode 0600) if missing.
func loadAdminToken(token, dir string) (auth adminAuth, path string, created bool, err error) {
	if token != "" {
		return adminAuth{sum: sha256.Sum256([]byte(token))}, "", false, nil
	}
	path = filepath.Join(dir, AdminTokenFile)
	b, err := secretfile.Read("admin token", path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		token = "hrld_" + randomSecret(32)
		if err := secretfile.Write(path, []byte(token+"\n")); err != nil {
			return adminAuth{}, path, false, fmt.Errorf("create admin token: %w", err)
		}
		created = true
	case err != nil:
		return adminAuth{}, path, false, fmt.Errorf("read admin token: %w", err)
	default:
		token = strings.TrimSpace(string(b))
		if err := checkAdminTokenLen(len(token)); err != nil {
			return adminAuth{}, path, false, fmt.Errorf("admin token %s: %w", path, err)
		}
	}
	return adminAuth{sum: sha256.Sum256([]byte(token))}, path, created, nil
}

// randomSecret returns n random bytes, base64url without padding.
func randomSecret(n int) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(n))
}

// randomID returns n random bytes in hex: identifiers (sid, jti) that are
// safe on command lines, where a leading '-' would read as a flag.
func randomID(n int) string {
	return hex.EncodeToString(randomBytes(n))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("issuer: read random: %v", err)) // crypto/rand never fails on supported platforms
	}
	return b
}
