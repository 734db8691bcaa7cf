package issuer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/signals"
)

// SSFPoll is a Shared Signals stream this issuer polls for SETs (RFC 8936).
type SSFPoll struct {
	// URL is the transmitter's poll endpoint.
	URL string
	// Token is the bearer token the transmitter gave Herald for it. Set
	// either Token or ClientID and ClientSecret.
	Token string
	// ClientID and ClientSecret are Herald's OAuth client at the
	// transmitter: the poller gets its bearer tokens from the
	// transmitter's token endpoint with the client credentials grant
	// (client_secret_basic), keeps each until shortly before it expires,
	// and replaces one the poll endpoint refuses.
	ClientID, ClientSecret string
	// Scope is the scope asked for. Default DefaultSSFPollScope.
	Scope string
	// TokenURL is the token endpoint. Default: the token_endpoint of the
	// OpenID configuration (or RFC 8414 metadata) of the trusted issuer
	// at URL's origin, which must then exist.
	TokenURL string
}

// credentials reports whether p authenticates with client credentials.
func (p SSFPoll) credentials() bool { return p.ClientID != "" || p.ClientSecret != "" }

// validate reports what is wrong with p, given the trusted issuers.
func (p SSFPoll) validate(trust []federation.Issuer) []error {
	var errs []error
	if err := federation.CheckURL(p.URL); err != nil {
		errs = append(errs, fmt.Errorf("SSF poll URL: %w", err))
	}
	switch {
	case p.Token != "" && p.credentials():
		errs = append(errs, fmt.Errorf("SSF poll %.128s: a bearer token or client credentials, not both", p.URL))
	case p.Token == "" && !p.credentials():
		errs = append(errs, fmt.Errorf("SSF poll %.128s: a bearer token or client credentials are required", p.URL))
	case p.Token != "" && (p.Scope != "" || p.TokenURL != ""):
		errs = append(errs, fmt.Errorf("SSF poll %.128s: a scope and token URL go with client credentials, not a bearer token", p.URL))
	case p.Token != "":
	case p.ClientID == "" || p.ClientSecret == "":
		errs = append(errs, fmt.Errorf("SSF poll %.128s: client credentials need both a client id and a secret", p.URL))
	case hasCtl(p.ClientID) || hasCtl(p.Scope) || strings.TrimSpace(p.Scope) != p.Scope:
		errs = append(errs, fmt.Errorf("SSF poll %.128s: client id or scope has control characters or surrounding spaces", p.URL))
	case p.TokenURL != "":
		if err := federation.CheckURL(p.TokenURL); err != nil {
			errs = append(errs, fmt.Errorf("SSF poll %.128s: token URL: %w", p.URL, err))
		}
	default:
		if _, ok := pollIssuer(trust, p.URL); !ok {
			errs = append(errs, fmt.Errorf("SSF poll %.128s: no trusted issuer at its origin to discover the token endpoint of: set the token URL", p.URL))
		}
	}
	return errs
}

// hasCtl reports whether s has an ASCII control character.
func hasCtl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
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
	auth := s.newPollAuth(p)
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
		resp, err := s.pollAuthorized(ctx, client, auth, state)
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

// pollAuthorized sends one poll request carrying state with auth's token.
// If the poll endpoint refuses a token that was not just obtained, a new
// one is obtained and the request sent again, once.
func (s *Service) pollAuthorized(ctx context.Context, client *http.Client, auth *pollAuth, state pollState) (*pollResponse, error) {
	token, fresh, err := auth.get(ctx, s.log)
	if err != nil {
		return nil, err
	}
	resp, err := s.poll(ctx, client, auth.p.URL, token, state)
	if !errors.Is(err, errPollUnauthorized) || !auth.renewable() {
		return resp, err
	}
	auth.drop()
	if fresh {
		return nil, fmt.Errorf("%w, with a token just obtained", err)
	}
	s.log.Debug("SSF poll token refused; obtaining another", "url", auth.p.URL)
	if token, _, err = auth.get(ctx, s.log); err != nil {
		return nil, err
	}
	resp, err = s.poll(ctx, client, auth.p.URL, token, state)
	if errors.Is(err, errPollUnauthorized) {
		auth.drop()
	}
	return resp, err
}

// poll sends one poll request to url carrying state, with token, and
// returns the response.
func (s *Service) poll(ctx context.Context, client *http.Client, url, token string, state pollState) (*pollResponse, error) {
	body, err := json.Marshal(pollRequest{MaxEvents: pollMaxEvents, ReturnImmediately: true, Ack: state.Ack, SetErrs: state.SetErrs})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, pollMaxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("read poll response: %w", err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return nil, errPollUnauthorized
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
