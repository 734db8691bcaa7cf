package federation

import "time"

// IssuerStatus is the state of one trusted issuer, for readiness detail,
// metrics and the dashboard.
type IssuerStatus struct {
	// Issuer is the issuer URL.
	Issuer string `json:"issuer"`
	// Tokens and SSF repeat the issuer's configuration.
	Tokens bool `json:"tokens"`
	SSF    bool `json:"ssf"`
	// Keys is how many keys its last good key sets hold.
	Keys int `json:"keys"`
	// Skipped lists the keys of its key sets left out, and why.
	Skipped []string `json:"skipped,omitempty"`
	// LastRefresh is when its keys were last fetched (and, for a token
	// issuer, published); zero if never.
	LastRefresh time.Time `json:"last_refresh,omitzero"`
	// NextRefresh is when its keys are fetched next, unless prompted.
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	// LastError is the error of the last refresh, empty if it succeeded;
	// ErrorSince is when refreshes started failing.
	LastError  string    `json:"last_error,omitempty"`
	ErrorSince time.Time `json:"error_since,omitzero"`
}

// Status returns the state of every configured issuer, in configuration
// order.
func (f *Federation) Status() []IssuerStatus {
	out := make([]IssuerStatus, 0, len(f.issuers))
	for _, st := range f.issuers {
		st.mu.Lock()
		out = append(out, IssuerStatus{
			Issuer: st.cfg.URL, Tokens: st.cfg.Tokens, SSF: st.cfg.SSF,
			Keys:        len(st.tokenKeys) + len(st.signalKeys),
			Skipped:     append([]string(nil), st.skipped...),
			LastRefresh: st.lastRefresh, NextRefresh: st.next,
			LastError: st.lastErr, ErrorSince: st.errorSince,
		})
		st.mu.Unlock()
	}
	return out
}

// Healthy reports whether every issuer's keys have been fetched and its
// last refresh succeeded. It is detail for /readyz and the dashboard, not
// a readiness condition: an unreachable identity provider leaves its last
// good keys in use and must not take Herald's own issuer out of service,
// so callers show it rather than fail on it.
func (f *Federation) Healthy() bool {
	for _, st := range f.issuers {
		st.mu.Lock()
		bad := st.lastErr != "" || st.lastRefresh.IsZero()
		st.mu.Unlock()
		if bad {
			return false
		}
	}
	return true
}
