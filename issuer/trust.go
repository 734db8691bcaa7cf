package issuer

import (
	"context"
	"crypto"
	"fmt"
	"slices"
	"strings"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/signals"
	"github.com/heraldsec/herald/verifier"
)

// Trusted external issuers (Config.Trust): the federation publishes the
// keys of those whose access tokens verifiers accept, and finds the keys
// their logout tokens and SETs are checked with.

// openFederation starts trusting cfg.Trust: nil when it is empty.
func (s *Service) openFederation(signer *bus.Signer) error {
	sources := make([]signals.Source, 0, len(s.cfg.Trust))
	for _, is := range s.cfg.Trust {
		src := signals.Source{Issuer: is.URL, ClientID: is.ClientID, EmailClaim: is.Claims.Email,
			Audiences: []string{s.cfg.IssuerURL, s.cfg.IssuerURL + SSFPushPath}}
		if len(is.Events) > 0 {
			src.Events = make(map[string]signals.Action, len(is.Events))
			for typ, a := range is.Events {
				src.Events[typ] = signals.Action(a)
			}
		}
		sources = append(sources, src)
	}
	s.signalSources = sources
	if len(s.cfg.Trust) == 0 {
		return nil
	}
	fed, err := federation.New(federation.Config{Issuers: s.cfg.Trust, Conn: s.conn, Signer: signer,
		EventKeys: s.trusted.EventKey, Log: s.log.With("component", "federation"), Now: s.cfg.Now,
		Revoked: s.externalKeyRevoked, MeterProvider: s.cfg.MeterProvider})
	if err != nil {
		return fmt.Errorf("trusted issuers: %w", err)
	}
	s.fed = fed
	return nil
}

// externalKeyRevoked reports whether key kid of external issuer iss was
// revoked: for good (its record in HERALD_KEYS), or by a key revocation
// still in force, limited to iss or for every issuer.
func (s *Service) externalKeyRevoked(iss, kid string) bool {
	return s.trusted.Revoked(bus.RevokedExternalKid(iss, kid)) ||
		s.deny.Contains(verifier.DenyKey(bus.KindKey, kid)) ||
		s.deny.Contains(verifier.DenyKeyFor(bus.KindKey, iss, kid))
}

// revokedExternalKeys returns the names of the permanent records a key
// revocation of kids limited to iss makes: for each kid, the record of
// that key of iss, or, when iss is empty, of every trusted issuer whose
// key of that kid is in HERALD_KEYS now. It reads the issuer's own view
// of the bucket, so revoking a key asks no provider for anything.
func (s *Service) revokedExternalKeys(iss string, kids []string) []string {
	if s.fed == nil || iss == s.cfg.IssuerURL {
		return nil
	}
	var names []string
	for _, is := range s.cfg.Trust {
		if !is.Tokens || (iss != "" && is.URL != iss) {
			continue
		}
		for _, kid := range kids {
			if _, _, known := s.trusted.External(is.URL, kid); iss == "" && !known {
				continue
			}
			names = append(names, bus.RevokedExternalKid(is.URL, kid))
		}
	}
	return names
}

// signalConfig returns what checks the signals that arrive as format.
// A kid the issuer's last key set lacks makes it fetch the key set again
// before the token is refused (a provider's new key, or keys not fetched
// yet after a start), at the rate the federation allows each issuer.
func (s *Service) signalConfig(ctx context.Context, format string) *signals.Config {
	keys := func(iss, kid string) (bus.JWK, crypto.PublicKey, bool) {
		if s.fed == nil {
			return bus.JWK{}, nil, false
		}
		return s.fed.KeyOrRefresh(ctx, iss, kid)
	}
	return &signals.Config{Sources: s.signalSources, Keys: keys, Now: s.cfg.Now, MaxAge: signalMaxAge(format)}
}

// revocationFor returns req if verifiers can enforce it: limited to
// Herald's own issuer or to one whose tokens they accept. Otherwise it
// returns nil and says why in note: the signal is only recorded.
func (s *Service) revocationFor(req *RevocationRequest, note *string) *RevocationRequest {
	if req.Value == "" && req.Kind != bus.KindAll.String() {
		*note = "the signal names no value to revoke"
		return nil
	}
	if err := s.checkIssuer(req.Issuer); err != nil {
		*note = fmt.Sprintf("tokens of %.128s are not accepted here: nothing to revoke", req.Issuer)
		return nil
	}
	return req
}

// receiveSET checks a SET delivered as format (push or poll) by sender,
// and acts on it as receiveSignal does. A pushed SET's iss must name the
// pushing credential as its push_credential.
func (s *Service) receiveSET(ctx context.Context, raw, format, sender string) (*signalOutcome, error) {
	pre := s.prefetchSignal(ctx, raw)
	set, err := signals.ParseSET(raw, s.signalConfig(ctx, format))
	if err != nil {
		s.metrics.signal(ctx, format, signals.Code(err))
		return nil, err
	}
	if format == bus.SignalPush {
		is, ok := s.trustedIssuer(set.Issuer)
		if !ok || is.PushCredential == "" || is.PushCredential != sender {
			err := &signals.Error{Code: signals.CodeAccessDenied,
				Description: fmt.Sprintf("credential %s may not push SETs of %.128s (push_credential)", sender, set.Issuer)}
			s.metrics.signal(ctx, format, err.Code)
			return nil, err
		}
	}
	src, _ := s.signalSource(set.Issuer) // ParseSET found it
	o, err := set.Revocation(src.Events, src.EmailClaim)
	if err != nil {
		return nil, err
	}
	w := &signalWork{format: format, sender: sender, raw: raw, iss: set.Issuer, jti: set.JTI, lookup: pre,
		events: []string{set.EventType}, note: o.Note}
	if o.Revoke {
		w.revoke = s.revocationFor(&RevocationRequest{Kind: o.Kind.String(), Value: o.Value, Issuer: o.Issuer,
			Reason: reasonOf(set.EventType)}, &w.note)
		switch {
		case o.Kind == bus.KindAll:
			w.revoke = nil // no signal revokes every token of an issuer
			w.note = "a signal may not revoke every token of an issuer"
		case s.ownTokens(o.Issuer):
			// An iss_sub or jwt_id subject may name another issuer than
			// the SET's, but no transmitter speaks for Herald itself.
			w.revoke = nil
			w.note = "the subject names this issuer's own tokens, which a transmitter may not revoke"
		}
	}
	out, err := s.receiveSignal(ctx, w)
	s.metrics.signal(ctx, format, signals.Code(err))
	return out, err
}

// reasonOf names an event type URI briefly, for a revocation's reason:
// its last path segment.
func reasonOf(eventType string) string {
	return "signal " + eventType[strings.LastIndexByte(eventType, '/')+1:]
}

// trustedIssuer returns the trusted issuer iss.
func (s *Service) trustedIssuer(iss string) (federation.Issuer, bool) {
	i := slices.IndexFunc(s.cfg.Trust, func(is federation.Issuer) bool { return is.URL == iss })
	if i < 0 {
		return federation.Issuer{}, false
	}
	return s.cfg.Trust[i], true
}

// signalSource returns the signals source of iss.
func (s *Service) signalSource(iss string) (*signals.Source, bool) {
	for i := range s.signalSources {
		if s.signalSources[i].Issuer == iss {
			return &s.signalSources[i], true
		}
	}
	return nil, false
}

// TrustStatus returns the state of each trusted external issuer's keys:
// when they were last fetched, and the last error if the last fetch
// failed. Empty without trusted issuers.
func (s *Service) TrustStatus() []federation.IssuerStatus {
	if s.fed == nil {
		return nil
	}
	return s.fed.Status()
}
