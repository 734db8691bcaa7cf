package sidecar

import (
	"maps"
	"net/http"
	"strings"

	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/browser"
)

// Handler serves the sidecar's HTTP API: /v1/verify, /v1/status,
// /healthz, /readyz and /metrics. In proxy mode the application's listener
// sends every path to the upstream, through the proxy (and /.herald/ to
// the cookie sessions), and the API is served on the admin listener only.
type Handler struct {
	sc  *Sidecar
	mux *http.ServeMux
	// api: the sidecar's own endpoints, with /v1/verify/ served as is.
	api bool
}

var _ http.Handler = (*Handler)(nil)

// newHandler returns the handler of the sidecar's main listener: its API
// in forward-auth mode, the application in proxy mode.
func newHandler(sc *Sidecar) *Handler {
	if sc.proxy == nil {
		return newAdminHandler(sc)
	}
	h := &Handler{sc: sc, mux: http.NewServeMux()}
	if sc.sessions != nil {
		h.mux.Handle("/", sc.sessions)
		h.mux.HandleFunc(browser.OwnPrefix, sc.sessions.ServeOwn)
	} else {
		h.mux.Handle("/", sc.proxy)
	}
	return h
}

// newAdminHandler returns the handler of the sidecar's own endpoints.
func newAdminHandler(sc *Sidecar) *Handler {
	h := &Handler{sc: sc, mux: http.NewServeMux(), api: true}
	// Any method: nginx auth_request, Traefik forwardAuth and Envoy
	// ext_authz forward the original request's method. Envoy's ext_authz
	// HTTP service appends the original path to its path_prefix, hence
	// the subtree.
	h.mux.HandleFunc("/v1/verify", h.verify)
	h.mux.HandleFunc("/v1/verify/", h.verify)
	h.mux.HandleFunc("GET /v1/status", h.status)
	h.mux.HandleFunc("GET /metrics", h.metrics)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		httpserve.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	h.mux.HandleFunc("GET /readyz", h.readyz)
	return h
}

// ServeHTTP implements http.Handler. The /v1/verify/ subtree is answered
// whatever its path: ServeMux would redirect a path with // or dot
// segments (Envoy's path_prefix followed by such an original path) to a
// cleaned one, which Envoy does not follow but hands the client as a refusal.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.api && strings.HasPrefix(r.URL.Path, "/v1/verify/") {
		h.verify(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// verify answers forward auth about the request r describes, with the
// verdict Envoy's gRPC ext_authz (package verifier/extauthz) also gets.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	d := h.sc.verifier.Decide(r.Context(), h.sc.verifier.RequestTarget(r, true))
	if d.Err != nil {
		h.sc.log.Debug("token refused", "reason", verifier.Reason(d.Err), "remote", r.RemoteAddr)
		verifier.WriteRefusal(w, d.Err)
		return
	}
	maps.Copy(w.Header(), d.Identity())
	httpserve.WriteJSON(w, http.StatusOK, d.Claims)
}

func (h *Handler) status(w http.ResponseWriter, _ *http.Request) {
	httpserve.WriteJSON(w, http.StatusOK, h.sc.Status())
}

func (h *Handler) readyz(w http.ResponseWriter, _ *http.Request) {
	st := h.sc.Status()
	code := http.StatusOK
	if !st.Ready {
		code = http.StatusServiceUnavailable
	}
	httpserve.WriteJSON(w, code, map[string]any{"ready": st.Ready, "caught_up": st.CaughtUp, "connected": st.Connected,
		"stale": st.Stale, "keys_loaded": st.KeysLoaded})
}

// metrics serves /metrics with the handler the program configured.
func (h *Handler) metrics(w http.ResponseWriter, r *http.Request) {
	if h.sc.cfg.Metrics == nil {
		http.Error(w, "metrics are not configured", http.StatusNotFound)
		return
	}
	h.sc.cfg.Metrics.ServeHTTP(w, r)
}
