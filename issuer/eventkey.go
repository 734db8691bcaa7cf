package issuer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/heraldsec/herald/bus"
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
