package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// maxAnswer bounds an HTTP answer Run reads.
const maxAnswer = 4 << 20

// varz is what Run reads of a NATS server's /varz.
type varz struct {
	ServerName string `json:"server_name"`
	JetStream  struct {
		Config *struct {
			SyncInterval time.Duration `json:"sync_interval"`
			SyncAlways   bool          `json:"sync_always"`
		} `json:"config"`
		Meta *struct {
			Size int `json:"cluster_size"`
		} `json:"meta"`
	} `json:"jetstream"`
}

// serverSync checks, through each server's monitoring endpoint, that
// JetStream syncs every write to disk before acknowledging it
// (sync_interval: always), and learns the cluster's size. Clients cannot
// see this setting, so without monitoring URLs it is not checked.
func (r *run) serverSync(ctx context.Context) {
	if len(r.cfg.MonitorURLs) == 0 {
		r.add(CheckSync, Warning, "not checked: whether the NATS servers sync every write to disk (sync_interval: always) shows only on their monitoring endpoints",
			"give each server's monitoring URL with --nats-monitor http://host:8222 (herald dev's and herald issuer's embedded server always syncs)")
		return
	}
	for _, u := range r.cfg.MonitorURLs {
		var v varz
		if err := r.getJSON(ctx, strings.TrimRight(u, "/")+"/varz", "", &v); err != nil {
			r.add(CheckSync, Error, fmt.Sprintf("monitoring endpoint %s: %v", u, err),
				"check the URL given with --nats-monitor: the server's http_port (or https_port) serves /varz")
			continue
		}
		name := v.ServerName
		if cfg := v.JetStream.Config; cfg == nil {
			r.add(CheckSync, Error, fmt.Sprintf("server %s (%s) runs without JetStream", name, u),
				"enable JetStream on every server of the cluster Herald uses")
			continue
		} else if !cfg.SyncAlways {
			r.add(CheckSync, Error, fmt.Sprintf("server %s (%s) syncs to disk every %s, not at every write: a machine crash loses revocations it acknowledged", name, u, cfg.SyncInterval),
				"set jetstream { sync_interval: always } in the server's configuration and restart it, one server at a time")
			continue
		}
		if m := v.JetStream.Meta; m != nil && m.Size > r.clusterSize {
			r.clusterSize = m.Size
		}
		r.add(CheckSync, OK, fmt.Sprintf("server %s (%s) syncs every write to disk", name, u), "")
	}
}

// getJSON gets url, with a bearer token if one is given, and decodes its
// JSON answer into out.
func (r *run) getJSON(ctx context.Context, url, token string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return &httpError{code: resp.StatusCode, body: strings.TrimSpace(string(body))}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// httpError is an answer other than 200.
type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string {
	b := e.body
	if len(b) > 200 {
		b = b[:200] + "..."
	}
	return fmt.Sprintf("HTTP %d %s", e.code, b)
}
