package bench

import (
	"context"
	"errors"
	"fmt"
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
	// SignRatio is Sessions over raw signing with the issuer's algorithm (EdDSA).
	SignRatio float64 `json:"sign_ratio"`
	// PublishRatio is Sessions over Publish.
	PublishRatio float64 `json:"publish_ratio"`
}

// AlgorithmRate is a rate for one signing algorithm.
type AlgorithmRate struct {
	Algorithm string `json:"algorithm"`
	Rate      Rate   `json:"rate"`
}

// Issue measures how many sessions per second the issuer creates with
// their events acknowledged, and in the same run the two ceilings of that
// path: raw token signing and raw acknowledged publishing of two events.
// The four are measured in turn, round after round.
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
	p.Phasef("issue: CreateSession, raw signing and raw publishing from %d goroutines, %s each in %d rounds",
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
		}})
	if err != nil {
		return nil, wrap(err)
	}
	res.Sessions, res.Publish = rates[0], rates[3]
	res.Sign = []AlgorithmRate{{bus.AlgEdDSA, rates[1]}, {bus.AlgES256, rates[2]}}
	res.SignRatio = ratio(res.Sessions.PerSecond, res.Sign[0].Rate.PerSecond)
	res.PublishRatio = ratio(res.Sessions.PerSecond, res.Publish.PerSecond)
	return res, nil
}
