package federation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/jsonstrict"
)

// Defaults of an Issuer.
const (
	// DefaultClientID is Herald's client id at a trusted identity
	// provider: the aud of its logout tokens and SETs.
	DefaultClientID = "herald"
	// DefaultMaxTokenLifetime bounds the lifetime (exp - iat) of an
	// external issuer's access tokens when its configuration states none.
	DefaultMaxTokenLifetime = time.Hour
)

// Bounds of a trust file.
const (
	// MaxIssuers bounds the issuers one deployment trusts.
	MaxIssuers = 64
	// MaxEvents bounds the event types an issuer's Events overrides.
	MaxEvents = 64
	// maxTrustFile bounds a trust file, in bytes.
	maxTrustFile = 1 << 20
)

// Actions a signal's event type can be mapped to (Issuer.Events).
const (
	// ActionSession revokes the session the signal names.
	ActionSession = "session"
	// ActionSubject revokes every token of the subject the signal names.
	ActionSubject = "subject"
	// ActionRecord records the signal in the audit stream and revokes
	// nothing.
	ActionRecord = "record"
)

// Issuer is one trusted external issuer: an OpenID Connect provider whose
// access tokens verifiers accept (Tokens), or whose logout tokens and
// Security Event Tokens Herald turns into revocations, or both.
//
// LoadFile and FromURLs return issuers with their defaults filled in;
// an Issuer built in Go gets the same defaults from WithDefaults, except
// Tokens, whose zero value (false) is a meaningful choice.
type Issuer struct {
	// URL is the issuer identifier: the iss of its tokens, and the URL
	// its discovery document is found under. It must be https; http is
	// accepted only on a loopback host (127.0.0.0/8, ::1, localhost), for
	// tests and local development.
	URL string
	// Audience lists the aud values accepted in its access tokens; empty:
	// each verifier's own audience.
	Audience []string
	// ClientID is Herald's client id at the provider: the aud of its
	// logout tokens and SETs. Default DefaultClientID.
	ClientID string
	// Claims names the claims of its tokens that carry the session, the
	// client, the tenant and the email.
	Claims bus.TrustClaims
	// Algorithms lists the signing algorithms accepted from it. Default
	// bus.ExternalAlgorithms().
	Algorithms []string
	// MaxTokenLifetime bounds exp - iat of its access tokens, 1 s to
	// bus.MaxExternalTTL. It is also the grace period before a key the
	// provider dropped leaves HERALD_KEYS. Default DefaultMaxTokenLifetime.
	MaxTokenLifetime time.Duration
	// Tokens makes verifiers accept its access tokens: its keys and trust
	// entry are published in HERALD_KEYS. False for a Shared Signals
	// transmitter that only sends signals. A trust file's default is true.
	Tokens bool
	// SSF makes Herald read its Shared Signals configuration
	// (/.well-known/ssf-configuration) for the keys of its SETs; false:
	// SET keys come from its OpenID discovery document.
	SSF bool
	// Events maps SET event type URIs to the action they cause
	// (ActionSession, ActionSubject or ActionRecord), overriding the
	// signals receiver's defaults.
	Events map[string]string
	// PushCredential names the Herald admin credential allowed to push
	// its SETs (RFC 8935); empty: none may.
	PushCredential string
}

// issuerFile is the JSON form of an Issuer in a trust file.
type issuerFile struct {
	URL              string          `json:"issuer"`
	Audience         []string        `json:"audience"`
	ClientID         string          `json:"client_id"`
	Claims           json.RawMessage `json:"claims"`
	Algorithms       []string        `json:"algorithms"`
	MaxTokenLifetime string          `json:"max_token_lifetime"`
	Tokens           *bool           `json:"tokens"`
	SSF              bool            `json:"ssf"`
	Events           json.RawMessage `json:"events"`
	PushCredential   string          `json:"push_credential"`
}

// trustFile is the JSON form of a trust file.
type trustFile struct {
	Issuers []json.RawMessage `json:"issuers"`
}

// MarshalJSON returns the trust file form of is.
func (is Issuer) MarshalJSON() ([]byte, error) {
	tokens := is.Tokens
	claims, err := json.Marshal(is.Claims)
	if err != nil {
		return nil, err
	}
	events, err := json.Marshal(is.Events)
	if err != nil {
		return nil, err
	}
	f := issuerFile{URL: is.URL, Audience: is.Audience, ClientID: is.ClientID, Claims: claims,
		Algorithms: is.Algorithms, Tokens: &tokens, SSF: is.SSF, Events: events, PushCredential: is.PushCredential}
	if is.MaxTokenLifetime != 0 {
		f.MaxTokenLifetime = is.MaxTokenLifetime.String()
	}
	return json.Marshal(f)
}

// UnmarshalJSON reads the trust file form of an issuer strictly: unknown
// or duplicate members are refused. Defaults are filled in.
func (is *Issuer) UnmarshalJSON(b []byte) error {
	if err := jsonstrict.CheckObject(b, &issuerFile{}); err != nil {
		return err
	}
	var f issuerFile
	if err := decodeStrict(b, &f); err != nil {
		return err
	}
	out := Issuer{URL: f.URL, Audience: f.Audience, ClientID: f.ClientID, Algorithms: f.Algorithms,
		Tokens: f.Tokens == nil || *f.Tokens, SSF: f.SSF, PushCredential: f.PushCredential}
	if len(f.Claims) > 0 && string(f.Claims) != "null" {
		if err := jsonstrict.CheckObject(f.Claims, &bus.TrustClaims{}); err != nil {
			return fmt.Errorf("claims: %w", err)
		}
		if err := decodeStrict(f.Claims, &out.Claims); err != nil {
			return fmt.Errorf("claims: %w", err)
		}
	}
	if len(f.Events) > 0 && string(f.Events) != "null" {
		if err := jsonstrict.CheckMembers(f.Events, nil); err != nil {
			return fmt.Errorf("events: %w", err)
		}
		if err := json.Unmarshal(f.Events, &out.Events); err != nil {
			return fmt.Errorf("events: %w", err)
		}
	}
	if f.MaxTokenLifetime != "" {
		d, err := time.ParseDuration(f.MaxTokenLifetime)
		if err != nil {
			return fmt.Errorf("max_token_lifetime: %w", err)
		}
		if d <= 0 {
			return fmt.Errorf("max_token_lifetime %s: must be positive", f.MaxTokenLifetime)
		}
		out.MaxTokenLifetime = d
	}
	*is = out.WithDefaults()
	return nil
}

// decodeStrict decodes the single JSON value b into v, refusing unknown
// members and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON value")
	}
	return nil
}

// WithDefaults returns is with its zero fields set to their defaults
// (Tokens excepted).
func (is Issuer) WithDefaults() Issuer {
	if is.ClientID == "" {
		is.ClientID = DefaultClientID
	}
	if len(is.Algorithms) == 0 {
		is.Algorithms = bus.ExternalAlgorithms()
	}
	if is.MaxTokenLifetime == 0 {
		is.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	return is
}

// clone returns is with its own copies of its slices and map.
func (is Issuer) clone() Issuer {
	is.Audience = slices.Clone(is.Audience)
	is.Algorithms = slices.Clone(is.Algorithms)
	is.Claims.Client = slices.Clone(is.Claims.Client)
	is.Events = maps.Clone(is.Events)
	return is
}

// Trust returns the trust entry body verifiers read for is.
func (is Issuer) Trust() bus.Trust {
	return bus.Trust{Issuer: is.URL, Audiences: is.Audience, Algorithms: is.Algorithms,
		MaxTTL: int64((is.MaxTokenLifetime + time.Second - 1) / time.Second), Claims: is.Claims}
}

// validCredential is the form of Herald admin credential names.
var validCredential = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Validate reports every problem with is, which must have its defaults
// (WithDefaults).
func (is Issuer) Validate() error {
	var errs []error
	if err := CheckURL(is.URL); err != nil {
		errs = append(errs, fmt.Errorf("issuer: %w", err))
	}
	if is.MaxTokenLifetime < time.Second || is.MaxTokenLifetime > bus.MaxExternalTTL {
		errs = append(errs, fmt.Errorf("max_token_lifetime %s: must be 1s to %s", is.MaxTokenLifetime, bus.MaxExternalTTL))
	}
	t := is.Trust()
	t.Issuer = "x" // checked above, with the URL rules
	if t.MaxTTL <= 0 || t.MaxTTL > int64(bus.MaxExternalTTL/time.Second) {
		t.MaxTTL = 1 // reported above
	}
	if err := t.Validate(); err != nil {
		errs = append(errs, err)
	}
	if is.ClientID == "" || len(is.ClientID) > bus.MaxValueLen || !utf8.ValidString(is.ClientID) || hasControl(is.ClientID) {
		errs = append(errs, fmt.Errorf("client_id %.64q: must be 1 to %d bytes of UTF-8 without control characters", is.ClientID, bus.MaxValueLen))
	}
	if len(is.Events) > MaxEvents {
		errs = append(errs, fmt.Errorf("at most %d events", MaxEvents))
	}
	for _, uri := range sortedKeys(is.Events) {
		if uri == "" || len(uri) > bus.MaxValueLen || !utf8.ValidString(uri) || hasControl(uri) || strings.ContainsRune(uri, ' ') {
			errs = append(errs, fmt.Errorf("event type %.64q: must be 1 to %d bytes of UTF-8 without spaces or control characters", uri, bus.MaxValueLen))
		}
		switch a := is.Events[uri]; a {
		case ActionSession, ActionSubject, ActionRecord:
		default:
			errs = append(errs, fmt.Errorf("event %.64q: action %.64q is not session, subject or record", uri, a))
		}
	}
	if is.PushCredential != "" && !validCredential.MatchString(is.PushCredential) {
		errs = append(errs, fmt.Errorf("push_credential %.64q: want 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", is.PushCredential))
	}
	return errors.Join(errs...)
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) })
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// CheckURL reports whether u can identify a trusted issuer or locate one
// of its documents: an absolute https URL without user information, query
// or fragment, that bus.CheckIssuer accepts. http is accepted only on a
// loopback host (127.0.0.0/8, ::1 or localhost), for tests and local
// development: elsewhere, anyone on the path could substitute the keys.
func CheckURL(u string) error {
	if err := bus.CheckIssuer(u); err != nil {
		return err
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("url %.64q: %w", u, err)
	}
	switch {
	case p.Host == "" || p.Opaque != "":
		return fmt.Errorf("url %.64q: must be absolute, with a host", u)
	case p.User != nil || p.RawQuery != "" || p.ForceQuery || p.Fragment != "" || strings.Contains(u, "#"):
		return fmt.Errorf("url %.64q: must have no user information, query or fragment", u)
	case p.Scheme == "https":
		return nil
	case p.Scheme == "http" && isLoopback(p.Hostname()):
		return nil
	case p.Scheme == "http":
		return fmt.Errorf("url %.64q: must be https (http only on a loopback host)", u)
	}
	return fmt.Errorf("url %.64q: scheme %q is not https", u, p.Scheme)
}

// isLoopback reports whether host names the loopback interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// LoadFile reads a trust file: a JSON object {"issuers": [...]} of
// issuers in their JSON form: issuer, audience, client_id, claims
// (session, client, tenant, email), algorithms, max_token_lifetime (a Go
// duration such as "1h"), tokens (default true), ssf, events and
// push_credential, as Issuer's fields describe them. Unknown and
// duplicate members, and an issuer listed twice, are refused with an
// error naming the entry. The issuers are returned with their defaults,
// validated.
func LoadFile(path string) ([]Issuer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load trust file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTrustFile+1))
	if err != nil {
		return nil, fmt.Errorf("load trust file %s: %w", path, err)
	}
	if len(b) > maxTrustFile {
		return nil, fmt.Errorf("load trust file %s: larger than %d bytes", path, maxTrustFile)
	}
	issuers, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("load trust file %s: %w", path, err)
	}
	return issuers, nil
}

// Parse reads the content of a trust file, as LoadFile does.
func Parse(b []byte) ([]Issuer, error) {
	if err := jsonstrict.CheckObject(b, &trustFile{}); err != nil {
		return nil, err
	}
	var tf trustFile
	if err := decodeStrict(b, &tf); err != nil {
		return nil, err
	}
	if len(tf.Issuers) > MaxIssuers {
		return nil, fmt.Errorf("%d issuers, at most %d", len(tf.Issuers), MaxIssuers)
	}
	out := make([]Issuer, 0, len(tf.Issuers))
	for i, raw := range tf.Issuers {
		var is Issuer
		if err := json.Unmarshal(raw, &is); err != nil {
			return nil, fmt.Errorf("issuers[%d]%s: %w", i, nameOf(raw), err)
		}
		if err := is.Validate(); err != nil {
			return nil, fmt.Errorf("issuers[%d] (%.128s): %w", i, is.URL, err)
		}
		out = append(out, is)
	}
	return Merge(out)
}

// nameOf returns " (url)" for the raw issuer entry, when its issuer
// member can be read, for error messages.
func nameOf(raw json.RawMessage) string {
	var v struct {
		URL string `json:"issuer"`
	}
	if json.Unmarshal(raw, &v) != nil || v.URL == "" {
		return ""
	}
	return fmt.Sprintf(" (%.128s)", v.URL)
}

// FromURLs returns issuers trusted with every default (Tokens true), one
// per URL, validated. An URL listed twice is refused.
func FromURLs(urls []string) ([]Issuer, error) {
	out := make([]Issuer, 0, len(urls))
	for _, u := range urls {
		is := Issuer{URL: u, Tokens: true}.WithDefaults()
		if err := is.Validate(); err != nil {
			return nil, fmt.Errorf("trusted issuer %.128s: %w", u, err)
		}
		out = append(out, is)
	}
	return Merge(out)
}

// Merge returns the issuers of every list, in order, and refuses an
// issuer URL that appears twice, or more than MaxIssuers issuers.
func Merge(lists ...[]Issuer) ([]Issuer, error) {
	var out []Issuer
	seen := make(map[string]bool)
	for _, l := range lists {
		for _, is := range l {
			if seen[is.URL] {
				return nil, fmt.Errorf("issuer %.128s is configured twice", is.URL)
			}
			seen[is.URL] = true
			out = append(out, is)
		}
	}
	if len(out) > MaxIssuers {
		return nil, fmt.Errorf("%d trusted issuers, at most %d", len(out), MaxIssuers)
	}
	return out, nil
}
