package signals

import (
	"crypto"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/heraldsec/herald/bus"
)

// KeyFunc returns the key named kid of the configured issuer or
// transmitter iss, with its JWK (whose Alg is the one algorithm the key
// signs with) and the decoded public key, or false when iss has no such
// key. Keys are looked up by iss: a key of one source never verifies a
// token whose iss is another.
type KeyFunc func(iss, kid string) (bus.JWK, crypto.PublicKey, bool)

// Defaults of Config and Source.
const (
	// DefaultClientID is Source.ClientID when unset: Herald's client id
	// at the identity provider.
	DefaultClientID = "herald"
	// DefaultMaxAge bounds how far in the past iat may be.
	DefaultMaxAge = 5 * time.Minute
	// DefaultLeeway bounds how far in the future iat may be, and how long
	// past exp a logout token is still accepted.
	DefaultLeeway = 30 * time.Second
	// DefaultMaxTokenSize bounds a token, in bytes, before any parsing:
	// what a bus.Signal records at most.
	DefaultMaxTokenSize = bus.MaxSignalToken
)

// Bounds of a Config.
const (
	maxAudiences = 16
	maxEvents    = 64
	maxLeeway    = 5 * time.Minute
	maxMaxAge    = 24 * time.Hour
)

// Source is an identity provider (logout tokens) or SSF transmitter
// (SETs) that Herald accepts signals from.
type Source struct {
	// Issuer is the iss of its tokens. Required.
	Issuer string
	// ClientID is Herald's client id at the provider: a logout token's
	// aud must contain it, and a SET's aud may. Default DefaultClientID.
	ClientID string
	// Audiences are further values a SET's aud may contain instead, such
	// as Herald's issuer URL or its push endpoint. At most 16.
	Audiences []string
	// EmailClaim names the claim of the issuer's access tokens carrying
	// the email address, which subject revocations from email subject
	// identifiers match. Empty: email subjects revoke nothing (recorded).
	EmailClaim string
	// Events maps event type URIs to the action they cause, overriding
	// DefaultEvents. At most 64 entries.
	Events map[string]Action
}

// clientID returns s.ClientID or its default.
func (s *Source) clientID() string {
	if s.ClientID == "" {
		return DefaultClientID
	}
	return s.ClientID
}

// Validate reports every problem with s.
func (s *Source) Validate() error {
	var errs []error
	if err := bus.CheckIssuer(s.Issuer); err != nil {
		errs = append(errs, err)
	}
	if len(s.ClientID) > bus.MaxValueLen || !utf8.ValidString(s.ClientID) {
		errs = append(errs, fmt.Errorf("client id must be at most %d bytes of UTF-8", bus.MaxValueLen))
	}
	if len(s.Audiences) > maxAudiences {
		errs = append(errs, fmt.Errorf("at most %d audiences", maxAudiences))
	}
	for _, a := range s.Audiences {
		if a == "" || len(a) > bus.MaxValueLen || !utf8.ValidString(a) {
			errs = append(errs, fmt.Errorf("audience %q must be 1 to %d bytes of UTF-8", short(a), bus.MaxValueLen))
		}
	}
	if len(s.EmailClaim) > 64 || !utf8.ValidString(s.EmailClaim) {
		errs = append(errs, errors.New("email claim name must be at most 64 bytes of UTF-8"))
	}
	if err := ValidateEvents(s.Events); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("source %q: %w", short(s.Issuer), errors.Join(errs...))
	}
	return nil
}

// Config says whose signals ParseLogoutToken and ParseSET accept and how
// fresh they must be. The zero value of each optional field means its
// default. A Config is read, never changed, by the parsers: one may be
// shared by concurrent calls.
type Config struct {
	// Sources are the issuers and transmitters whose tokens are accepted;
	// a token whose iss is none of theirs is refused (invalid_issuer).
	Sources []Source
	// Keys finds the signing keys of the sources. Required.
	Keys KeyFunc
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxAge bounds how old iat may be. Default DefaultMaxAge, at most 24h.
	// A poller that catches up after an outage may need more.
	MaxAge time.Duration
	// Leeway bounds how far in the future iat may be, and how long past
	// its exp a logout token still passes. Default DefaultLeeway, at most 5m.
	Leeway time.Duration
	// MaxTokenSize bounds a token in bytes. Default and at most
	// DefaultMaxTokenSize.
	MaxTokenSize int
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	if c.Keys == nil {
		errs = append(errs, errors.New("a key function is required"))
	}
	seen := make(map[string]bool, len(c.Sources))
	for i := range c.Sources {
		s := &c.Sources[i]
		if err := s.Validate(); err != nil {
			errs = append(errs, err)
		}
		if seen[s.Issuer] {
			errs = append(errs, fmt.Errorf("source %q is configured twice", short(s.Issuer)))
		}
		seen[s.Issuer] = true
	}
	if c.MaxAge < 0 || c.MaxAge > maxMaxAge {
		errs = append(errs, fmt.Errorf("max age must be 0 to %s", maxMaxAge))
	}
	if c.Leeway < 0 || c.Leeway > maxLeeway {
		errs = append(errs, fmt.Errorf("leeway must be 0 to %s", maxLeeway))
	}
	if c.MaxTokenSize < 0 || c.MaxTokenSize > DefaultMaxTokenSize {
		errs = append(errs, fmt.Errorf("max token size must be 0 to %d bytes", DefaultMaxTokenSize))
	}
	return errors.Join(errs...)
}

// Source returns the configured source whose issuer is iss.
func (c *Config) Source(iss string) (*Source, bool) {
	for i := range c.Sources {
		if c.Sources[i].Issuer == iss {
			return &c.Sources[i], true
		}
	}
	return nil, false
}

func (c *Config) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}

func (c *Config) maxAge() time.Duration {
	if c.MaxAge <= 0 || c.MaxAge > maxMaxAge {
		return DefaultMaxAge
	}
	return c.MaxAge
}

func (c *Config) leeway() time.Duration {
	if c.Leeway <= 0 || c.Leeway > maxLeeway {
		return DefaultLeeway
	}
	return c.Leeway
}

func (c *Config) maxTokenSize() int {
	if c.MaxTokenSize <= 0 || c.MaxTokenSize > DefaultMaxTokenSize {
		return DefaultMaxTokenSize
	}
	return c.MaxTokenSize
}
