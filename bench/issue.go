package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/issuer"
)

// Defaults for IssueConfig.
const (
	DefaultIssueWorkers  = 32
	DefaultIssueDuration = 5 * time.Second
)

// IssueConfig configures Issue.
type IssueConfig struct {
	// Dir holds all data. Required.
	Dir string
	// Workers is how many sessions are created concurrently, as requests
	// in flight behind an HTTP server. Default DefaultIssueWorkers.
	Workers int
	// Duration is how long each rate is measured. Default DefaultIssueDuration.
	Duration time.Duration
	// Rounds is how many interleaved rounds Duration is split into.
	// Default DefaultRounds.
	Rounds int
	// Progress, if not nil, receives progress lines.
	Progress *Progress
}

// IssueResult is the outcome of Issue.
type IssueResult struct {
	Workers int `json:"workers"`
	// Sessions is issuer.Service.CreateSession: the session committed to
	// Pebble (synced), the access token signed, and its two events
	// (session.created, token.issued) acknowledged by JetStream (synced).
	Sessions Rate `json:"sessions"`
	// Sign is the raw signing rate of access tokens with golang-jwt, per
	// algorithm, from as many goroutines: the ceiling of the CPU part.
	Sign []AlgorithmRate `json:"sign"`
	// Publish is the rate of publishing two events together and awaiting
	// both acknowledgements, from as many goroutines: the ceiling of the
	// bus part.
	Publish Rate `json:"publish_pairs"`
	// Refresh is the rate of refreshes through the issuer's token endpoint
	// (grant_type=refresh_token, over HTTP on loopback): each worker
	// rotates its own session's refresh token, a compare-and-set on
	// HERALD_SESSIONS, and waits for its token.issued event's
	// acknowledgement.
	Refresh Rate `json:"refresh"`
	// SyncedWrite is the single-writer synced-write rate of the disk: one
	// goroutine appending 4 KiB and syncing it (fsync), in a loop, in Dir,
	// as `dd oflag=dsync` does. A rate of synced operations above it
	// proves that their writes are grouped.
	SyncedWrite Rate `json:"synced_write"`
	// SignRatio is Sessions over raw signing with the issuer's algorithm (EdDSA).
	SignRatio float64 `json:"sign_ratio"`
	// PublishRatio is Sessions over Publish.
	PublishRatio float64 `json:"publish_ratio"`
	// SyncRatio is Sessions over SyncedWrite, and RefreshSyncRatio
	// Refresh over SyncedWrite.
	SyncRatio        float64 `json:"sync_ratio"`
	RefreshSyncRatio float64 `json:"refresh_sync_ratio"`
}

// AlgorithmRate is a rate for one signing algorithm.
type AlgorithmRate struct {
	Algorithm string `json:"algorithm"`
	Rate      Rate   `json:"rate"`
}

// Issue measures how many sessions per second the issuer creates with
// their events acknowledged and how many refreshes it serves, and in the
// same run the ceilings and the floor of that path: raw token signing, raw
// acknowledged publishing of two events, and the disk's single-writer
// synced-write rate. They are measured in turn, round after round.
func Issue(ctx context.Context, cfg IssueConfig) (*IssueResult, error) {
	if cfg.Dir == "" {
		return nil, errors.New("issue: dir is required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultIssueWorkers
	}
	if cfg.Duration <= 0 {
		cfg.Duration = DefaultIssueDuration
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = DefaultRounds
	}
	p := cfg.Progress
	wrap := func(err error) error { return fmt.Errorf("issue: %w", err) }
	c, err := startCore(ctx, cfg.Dir)
	if err != nil {
		return nil, wrap(err)
	}
	defer c.Close()
	res := &IssueResult{Workers: cfg.Workers}
	signers := make([]*signer, 2)
	for i, alg := range []string{bus.AlgEdDSA, bus.AlgES256} {
		if signers[i], err = newSigner(alg); err != nil {
			return nil, wrap(err)
		}
	}
	sign := func(s *signer) func(context.Context, int, int) error {
		return func(_ context.Context, w, i int) error {
			_, err := s.sign(s.claims(fmt.Sprintf("bench-%d-%d", w, i), bus.NewID(), bus.NewID()))
			return err
		}
	}
	// Each worker refreshes its own session's chain of refresh tokens.
	refresh := make([]string, cfg.Workers)
	for w := range refresh {
		s, err := c.svc.CreateSession(ctx, issuer.SessionRequest{Subject: fmt.Sprintf("bench-refresh-%d", w)}, "bench")
		if err != nil {
			return nil, wrap(err)
		}
		refresh[w] = s.RefreshToken
	}
	client := &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Workers, MaxConnsPerHost: cfg.Workers}}
	defer client.CloseIdleConnections()
	tokenURL := c.svc.URL() + "/oauth2/token"
	floor, err := os.OpenFile(filepath.Join(cfg.Dir, "synced-write"), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, wrap(err)
	}
	defer os.Remove(floor.Name())
	defer floor.Close()
	block := make([]byte, 4096)
	var floorOff int64
	p.Phasef("issue: CreateSession, refresh, raw signing, raw publishing from %d goroutines, and the synced-write floor, %s each in %d rounds",
		cfg.Workers, cfg.Duration, cfg.Rounds)
	rates, err := compareRates(ctx, cfg.Rounds, cfg.Duration/10, cfg.Duration, p,
		rateSpec{what: "CreateSession", workers: cfg.Workers, fn: func(ctx context.Context, w, i int) error {
			_, err := c.svc.CreateSession(ctx, issuer.SessionRequest{Subject: fmt.Sprintf("bench-%d-%d", w, i)}, "bench")
			return err
		}},
		rateSpec{what: "sign EdDSA", workers: cfg.Workers, fn: sign(signers[0])},
		rateSpec{what: "sign ES256", workers: cfg.Workers, fn: sign(signers[1])},
		rateSpec{what: "publish pairs", workers: cfg.Workers, fn: func(ctx context.Context, w, i int) error {
			now := time.Now()
			sid, jti := bus.NewID(), bus.NewID()
			sub := fmt.Sprintf("bench-%d-%d", w, i)
			_, err := c.conn.PublishAll(ctx,
				&bus.Event{ID: bus.NewID(), Type: bus.TypeSessionCreated, Time: now, Actor: "bench",
					Session: &bus.Session{ID: sid, Subject: sub, ClientID: "herald", Expires: now.Add(24 * time.Hour)}},
				&bus.Event{ID: bus.NewID(), Type: bus.TypeTokenIssued, Time: now, Actor: "bench",
					Token: &bus.Token{ID: jti, SessionID: sid, Subject: sub, ClientID: "herald", KeyID: "bench",
						IssuedAt: now, Expires: now.Add(5 * time.Minute)}})
			return err
		}},
		rateSpec{what: "refresh", workers: cfg.Workers, fn: func(ctx context.Context, w, _ int) error {
			next, err := postRefresh(ctx, client, tokenURL, refresh[w])
			if err != nil {
				return err
			}
			refresh[w] = next
			return nil
		}},
		rateSpec{what: "synced 4 KiB write", workers: 1, fn: func(context.Context, int, int) error {
			// Appended, as dd does, and restarted every 64 MiB.
			if floorOff >= 64<<20 {
				if err := floor.Truncate(0); err != nil {
					return err
				}
				floorOff = 0
			}
			if _, err := floor.WriteAt(block, floorOff); err != nil {
				return err
			}
			floorOff += int64(len(block))
			return floor.Sync()
		}})
	if err != nil {
		return nil, wrap(err)
	}
	res.Sessions, res.Publish, res.Refresh, res.SyncedWrite = rates[0], rates[3], rates[4], rates[5]
	res.Sign = []AlgorithmRate{{bus.AlgEdDSA, rates[1]}, {bus.AlgES256, rates[2]}}
	res.SignRatio = ratio(res.Sessions.PerSecond, res.Sign[0].Rate.PerSecond)
	res.PublishRatio = ratio(res.Sessions.PerSecond, res.Publish.PerSecond)
	res.SyncRatio = ratio(res.Sessions.PerSecond, res.SyncedWrite.PerSecond)
	res.RefreshSyncRatio = ratio(res.Refresh.PerSecond, res.SyncedWrite.PerSecond)
	return res, nil
}

// postRefresh refreshes through the token endpoint and returns the new
// refresh token.
func postRefresh(ctx context.Context, client *http.Client, tokenURL, token string) (string, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, bytes.NewReader([]byte(form)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("refresh: %s %s", resp.Status, bytes.TrimSpace(body))
	}
	var tr issuer.TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.RefreshToken == "" {
		return "", fmt.Errorf("refresh: bad answer %q: %v", body, err)
	}
	return tr.RefreshToken, nil
}
