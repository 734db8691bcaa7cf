package issuer

import (
	"net/http"
	"sort"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/verifier"
)

// publishedKeys are the keys the JWKS serves: the trusted set once it is
// loaded, this replica's keyring until then.
func (h *handler) publishedKeys() []*verifier.Key {
	keys := h.s.trusted.Keys()
	if !h.s.trusted.Loaded() {
		keys = keys[:0]
		for _, k := range h.s.keys.All() {
			keys = append(keys, &verifier.Key{ID: k.kid, Algorithm: k.alg, JWK: k.jwk})
		}
	}
	return keys
}

// signingAlgorithms are the algorithms of the published keys, sorted, and
// the configured algorithm, which signs every new token.
func (h *handler) signingAlgorithms() []string {
	seen := map[string]bool{h.s.cfg.Algorithm: true}
	for _, k := range h.publishedKeys() {
		if k.Algorithm != "" {
			seen[k.Algorithm] = true
		}
	}
	algs := make([]string, 0, len(seen))
	for a := range seen {
		algs = append(algs, a)
	}
	sort.Strings(algs)
	return algs
}

func (h *handler) jwks(w http.ResponseWriter, _ *http.Request) {
	keys := h.publishedKeys()
	out := struct {
		Keys []bus.JWK `json:"keys"`
	}{Keys: make([]bus.JWK, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, k.JWK)
	}
	sort.Slice(out.Keys, func(i, j int) bool { return out.Keys[i].Kid < out.Keys[j].Kid })
	w.Header().Set("Cache-Control", "public, max-age=60")
	httpserve.WriteJSON(w, http.StatusOK, out)
}

func (h *handler) rotateKey(w http.ResponseWriter, r *http.Request) {
	res, err := h.s.RotateKey(r.Context(), actor(r), r.RemoteAddr)
	if err != nil {
		h.writeError(w, err)
		return
	}
	httpserve.WriteJSON(w, http.StatusOK, res)
}
