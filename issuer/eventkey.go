package issuer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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
const eventKeyForbidden = 0o037

// EventKeyFile returns the kid of the event key in the PEM file at path,
// the value verifiers pin with --event-keys, creating the file (Ed25519,
// mode 0600) when it does not exist. Replicas of one deployment share the
// file (Config.EventKeyFile).
func EventKeyFile(path string) (kid string, created bool, err error) {
	k, err := readPrivateKey(path, eventKeyForbidden)
	if errors.Is(err, fs.ErrNotExist) {
		dir := filepath.Dir(path)
		k, err = createKey(dir, bus.AlgEdDSA)
		if err == nil {
			err = os.Rename(filepath.Join(dir, k.kid+".pem"), path)
		}
		created = true
	}
	if err != nil {
		return "", false, fmt.Errorf("event key %s: %w", path, err)
	}
	return k.kid, created, nil
}
