package issuer

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

// dashboardFS holds the web dashboard: plain HTML, CSS and JavaScript,
// served as they are (no build step, no external assets).
//
//go:embed dashboard
var dashboardFS embed.FS

// dashboardCSP allows the page only its own files: no inline script or
// style, no other origin, no framing. Trusted Types leave the script no
// HTML sink (innerHTML and the like), so event data from the stream can
// only ever become text.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; " +
	"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"

// dashboardTypes are the content types of the files the dashboard has;
// any other file is not served.
var dashboardTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// serveDashboardIndex serves the dashboard's page (GET /). It needs no
// credential: the page asks for one and sends it to the API itself.
func serveDashboardIndex(w http.ResponseWriter, r *http.Request) {
	serveDashboardFile(w, r, "index.html")
}

// serveDashboardAsset serves the dashboard's scripts, styles and icon
// (GET /dashboard/{file}).
func serveDashboardAsset(w http.ResponseWriter, r *http.Request) {
	serveDashboardFile(w, r, r.PathValue("file"))
}

func serveDashboardFile(w http.ResponseWriter, r *http.Request, name string) {
	ctype, ok := dashboardTypes[path.Ext(name)]
	if !ok || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	data, err := dashboardFS.ReadFile("dashboard/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data) // the client went away; nothing to do
}
