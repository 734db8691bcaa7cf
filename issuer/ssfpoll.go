package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/signals"
)

// SSFPoll is a Shared Signals stream this issuer polls for SETs (RFC 8936).
type SSFPoll struct {
	// URL is the transmitter's poll endpoint.
	URL string
	// Token is the bearer token the transmitter gave Herald for it.
	Token string
}

// Poll bounds.
const (
	// pollMaxEvents is the maxEvents of each poll request.
	pollMaxEvents = 100
	// pollMaxResponse bounds a poll response body, in bytes.
	pollMaxResponse = pollMaxEvents*bus.MaxSignalToken + 64<<10
	// pollIdle is how long the poller waits after a poll that returned
	// nothing, pollRetry the first wait after a failed one (doubling up
	// to pollRetryMax).
	pollIdle     = 5 * time.Second
	pollRetry    = time.Second
	pollRetryMax = time.Minute
	// pollTimeout bounds one poll request, including the transmitter's
	// long poll.
	pollTimeout = 60 * time.Second
)

// pollRequest is the body of an RFC 8936 poll request.
type pollRequest struct {
	MaxEvents         int                       `json:"maxEvents"`
	ReturnImmediately bool                      `json:"returnImmediately"`
	Ack               []string                  `json:"ack,omitempty"`
	SetErrs           map[string]*signals.Error `json:"setErrs,omitempty"`
}

// pollResponse is the body of an RFC 8936 poll response.
type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

// pollState is what a poller owes its transmitter: the acknowledgements
// and errors of SETs it has acted on, kept in HERALD_SIGNALS until a poll
// request carried them, so that a restart sends them rather than acting
// on the SETs twice.
type pollState struct {
	Ack     []string                  `json:"ack,omitempty"`
	SetErrs map[string]*signals.Error `json:"setErrs,omitempty"`
}

// pollKey returns the key of the poll state of url in HERALD_SIGNALS.
func pollKey(url string) string { return bus.SignalKey("poll", url) }

// pollSSF polls p until ctx ends: each SET received is acted on as a
// pushed one is, then acknowledged (or reported in setErrs when it is
// refused) in the next request. A SET whose action failed for want of the
// bus is neither: the transmitter sends it again. Polling resumes after a
// restart with what was owed, and a SET received again after it was acted
// on is acknowledged without acting again (its replay record).
func (s *Service) pollSSF(ctx context.Context, p SSFPoll) error {
	client := &http.Client{Timeout: pollTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	state, err := s.loadPollState(ctx, p.URL)
	if err != nil {
		return err
	}
	wait, failed := time.Duration(0), pollRetry
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		resp, err := s.poll(ctx, client, p, state)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("SSF poll failed; retrying", "url", p.URL, "in", failed, "err", err)
			s.metrics.signal(ctx, bus.SignalPoll, "poll_failed")
			wait, failed = failed, min(2*failed, pollRetryMax)
			continue
		}
		failed = pollRetry
		// The transmitter has what the request carried.
		state = pollState{SetErrs: map[string]*signals.Error{}}
		for jti, raw := range resp.Sets {
			_, err := s.receiveSET(ctx, raw, bus.SignalPoll, p.URL)
			var se *signals.Error
			switch {
			case err == nil:
				state.Ack = append(state.Ack, jti)
			case errors.As(err, &se):
				state.SetErrs[jti] = se
				s.log.Warn("polled SET refused", "url", p.URL, "jti", jti, "err", se.Code, "description", se.Description)
			default:
				s.log.Warn("polled SET not acted on; the transmitter will send it again", "url", p.URL, "jti", jti, "err", err)
			}
		}
		if err := s.savePollState(ctx, p.URL, state); err != nil {
			s.log.Warn("poll position not saved; a restart may receive these SETs again", "url", p.URL, "err", err)
		}
		wait = 0
		if len(resp.Sets) == 0 && !resp.MoreAvailable {
			wait = pollIdle
		}
	}
}

// poll sends one poll request carrying state and returns the response.
func (s *Service) poll(ctx context.Context, client *http.Client, p SSFPoll, state pollState) (*pollResponse, error) {
	body, err := json.Marshal(pollRequest{MaxEvents: pollMaxEvents, ReturnImmediately: true, Ack: state.Ack, SetErrs: state.SetErrs})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.Token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, pollMaxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("read poll response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll answered %s", resp.Status)
	}
	if len(data) > pollMaxResponse {
		return nil, fmt.Errorf("poll response larger than %d bytes", pollMaxResponse)
	}
	var out pollResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("poll response: %w", err)
	}
	if len(out.Sets) > pollMaxEvents {
		return nil, fmt.Errorf("poll response has %d SETs, more than the %d asked for", len(out.Sets), pollMaxEvents)
	}
	return &out, nil
}

// loadPollState returns what the poller of url owed its transmitter when
// it stopped.
func (s *Service) loadPollState(ctx context.Context, url string) (pollState, error) {
	e, err := s.signalKV.Get(ctx, pollKey(url))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return pollState{}, nil
	}
	if err != nil {
		return pollState{}, fmt.Errorf("read poll state of %s: %w", url, err)
	}
	var st pollState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		s.log.Warn("poll state unreadable; starting afresh", "url", url, "err", err)
		return pollState{}, nil
	}
	return st, nil
}

// savePollState records what the poller of url owes its transmitter.
func (s *Service) savePollState(ctx context.Context, url string, st pollState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = s.signalKV.Put(ctx, pollKey(url), data)
	return err
}
