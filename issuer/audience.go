package issuer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/metric/noop"

	"github.com/heraldsec/herald/verifier"
)

// maxAudienceVerifiers bounds the verifiers kept for audiences other than
// the issuer's own; past it, an arbitrary one is dropped and made again
// when needed.
const maxAudienceVerifiers = 256

// audienceVerifiers are verifiers like the introspection one, for the
// other audiences this issuer signs tokens for.
type audienceVerifiers struct {
	mu sync.Mutex
	m  map[string]*verifier.Verifier
}

// verifyAnyAudience checks tok as the verifiers do, against the same
// denylist, whatever service it is for: revocation and introspection judge
// every token this issuer signed; the audience check belongs to resource
// servers. A token whose signature and issuer are right but whose audience
// is not the issuer's is checked again by a verifier of its own audience.
func (s *Service) verifyAnyAudience(ctx context.Context, tok string) (*verifier.Claims, error) {
	c, err := s.intro.Verify(ctx, tok)
	if !errors.Is(err, verifier.ErrAudience) {
		return c, err
	}
	// Claims are checked only after the signature: the audiences read
	// here are ones this issuer signed.
	for _, aud := range tokenAudiences(tok) {
		if aud == s.cfg.Audience || aud == "" {
			continue
		}
		v, verr := s.audienceVerifier(aud)
		if verr != nil {
			return nil, verr
		}
		c, aerr := v.Verify(ctx, tok)
		if !errors.Is(aerr, verifier.ErrAudience) {
			return c, aerr
		}
	}
	return nil, err
}

// audienceVerifier returns the verifier of tokens for aud.
func (s *Service) audienceVerifier(aud string) (*verifier.Verifier, error) {
	a := &s.audiences
	a.mu.Lock()
	defer a.mu.Unlock()
	if v, ok := a.m[aud]; ok {
		return v, nil
	}
	v, err := newIntrospector(verifier.Config{Issuer: s.cfg.IssuerURL, Audience: aud, Leeway: s.cfg.Leeway,
		CacheSize: -1, MeterProvider: noop.NewMeterProvider()},
		s.trusted, s.deny, s.follow)
	if err != nil {
		return nil, err
	}
	if a.m == nil {
		a.m = make(map[string]*verifier.Verifier)
	}
	for k := range a.m {
		if len(a.m) < maxAudienceVerifiers {
			break
		}
		delete(a.m, k)
	}
	a.m[aud] = v
	return v, nil
}

// tokenAudiences reads the aud claim of a JWT without checking anything;
// at most eight values.
func tokenAudiences(tok string) []string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var c struct {
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return nil
	}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return []string{one}
	}
	var many []string
	if json.Unmarshal(c.Aud, &many) != nil {
		return nil
	}
	return many[:min(len(many), 8)]
}
