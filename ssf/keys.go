package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxPublishedKeys bounds the transmitter keys the jwks_uri serves: the
// newest ones replicas published.
const maxPublishedKeys = 8

// keyEntry is a transmitter key as BucketSSFStreams keeps it, so that
// every replica's jwks_uri serves the keys of all of them.
type keyEntry struct {
	JWK  json.RawMessage `json:"jwk"`
	Time time.Time       `json:"time"`
}

// publishKey records this replica's transmitter key in the bucket. A
// different key there means replicas do not share one: each SET still
// verifies (the jwks_uri serves both), but a SET one replica sends again
// after another began it differs in its signature, which strict
// receivers refuse as a reused jti; that is logged.
func (t *Transmitter) publishKey(ctx context.Context) error {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(t.cfg.Signer.JWKS(), &set); err != nil || len(set.Keys) != 1 {
		return fmt.Errorf("transmitter key set: %v", err)
	}
	b, err := json.Marshal(keyEntry{JWK: set.Keys[0], Time: t.cfg.Now().UTC()})
	if err != nil {
		return err
	}
	kid := t.cfg.Signer.KeyID()
	others, err := t.keyEntries(ctx)
	if err != nil {
		return err
	}
	for name, e := range others {
		if name != kid && t.cfg.Now().Sub(e.Time) < 24*time.Hour {
			t.log.Warn("another transmitter key was published in the last day: give every issuer replica the same --ssf-key-file",
				"kid", kid, "other_kid", name)
		}
	}
	if _, err := t.streams.Put(ctx, "key."+kid, b); err != nil {
		return fmt.Errorf("publish transmitter key: %w", err)
	}
	return nil
}

func (t *Transmitter) keyEntries(ctx context.Context) (map[string]keyEntry, error) {
	out := map[string]keyEntry{}
	lister, err := t.streams.ListKeysFiltered(ctx, "key.*")
	if err != nil {
		return nil, fmt.Errorf("list transmitter keys: %w", err)
	}
	for k := range lister.Keys() {
		e, err := t.streams.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read transmitter key: %w", err)
		}
		var ke keyEntry
		if json.Unmarshal(e.Value(), &ke) == nil {
			out[strings.TrimPrefix(k, "key.")] = ke
		}
	}
	return out, nil
}

// applyKey takes a change of a published transmitter key into the view
// JWKS serves from.
func (t *Transmitter) applyKey(e jetstream.KeyValueEntry) {
	kid := strings.TrimPrefix(e.Key(), "key.")
	var ke keyEntry
	ok := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &ke) == nil
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		t.keys[kid] = ke
	} else {
		delete(t.keys, kid)
	}
}

// JWKS returns the JSON Web Key Set the jwks_uri serves: this replica's
// transmitter key and those other replicas published, newest first, at
// most maxPublishedKeys, from the view the bucket's watch keeps: serving
// it reads nothing from the bus. Until the watch has brought this
// replica's own key it holds that key only.
func (t *Transmitter) JWKS() []byte {
	type named struct {
		kid string
		keyEntry
	}
	t.mu.Lock()
	all := make([]named, 0, len(t.keys))
	for kid, e := range t.keys {
		all = append(all, named{kid, e})
	}
	t.mu.Unlock()
	slices.SortFunc(all, func(a, b named) int { return b.Time.Compare(a.Time) })
	keys := []json.RawMessage{}
	own := false
	for _, e := range all {
		if len(keys) == maxPublishedKeys {
			break
		}
		own = own || e.kid == t.cfg.Signer.KeyID()
		keys = append(keys, e.JWK)
	}
	if !own {
		return t.cfg.Signer.JWKS()
	}
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}
