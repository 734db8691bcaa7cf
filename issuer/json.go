package issuer

import (
	"encoding/json"
	"fmt"

	"github.com/heraldsec/herald/store"
)

func decodeJSON(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode state: %w", err)
	}
	return nil
}

func putJSON(tx *store.Tx, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	tx.Set(key, b)
	return nil
}
