package verifier

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/heraldsec/herald/internal/jsonstrict"
)

// Claims are the claims of a Herald access token (RFC 9068 section 2.2),
// or those of a trusted external issuer's access token mapped to them as
// its trust entry says (bus.TrustClaims).
type Claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt *NumericDate     `json:"exp,omitempty"`
	NotBefore *NumericDate     `json:"nbf,omitempty"`
	IssuedAt  *NumericDate     `json:"iat,omitempty"`
	ID        string           `json:"jti"`
	ClientID  string           `json:"client_id"`
	SessionID string           `json:"sid,omitempty"`
	Scope     string           `json:"scope,omitempty"`
	Tenant    string           `json:"tenant,omitempty"`
	// Email is, in a trusted external issuer's token whose trust entry
	// names an email claim, that claim: subject revocations match it as
	// well as sub. Empty in Herald's tokens.
	Email string `json:"email,omitempty"`
	// Confirmation binds the token to a DPoP key (RFC 9449 section 6).
	Confirmation *Confirmation `json:"cnf,omitempty"`
}

var _ jwt.Claims = (*Claims)(nil)

// GetExpirationTime implements jwt.Claims.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.jwt(), nil }

// GetNotBefore implements jwt.Claims.
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error) { return c.NotBefore.jwt(), nil }

// GetIssuedAt implements jwt.Claims.
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt.jwt(), nil }

// GetIssuer implements jwt.Claims.
func (c *Claims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *Claims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *Claims) GetAudience() (jwt.ClaimStrings, error) { return c.Audience, nil }

// NumericDate is an RFC 7519 NumericDate kept to the millisecond. Herald
// issues iat with milliseconds (RFC 7519 section 2 allows non-integer
// values) so that a revocation "of everything issued up to now" does not
// also reject tokens issued later in the same second. golang-jwt's own type
// truncates to its global TimePrecision, which a library must not change.
type NumericDate struct{ time.Time }

// NewNumericDate returns t as a NumericDate, truncated to the millisecond.
func NewNumericDate(t time.Time) *NumericDate {
	return &NumericDate{t.Truncate(time.Millisecond)}
}

func (d *NumericDate) jwt() *jwt.NumericDate {
	if d == nil {
		return nil
	}
	return &jwt.NumericDate{Time: d.Time}
}

// MarshalJSON writes whole seconds, with a three-digit fraction when there
// are milliseconds.
func (d NumericDate) MarshalJSON() ([]byte, error) {
	ms := d.UnixMilli()
	if ms%1000 == 0 || ms < 0 {
		return strconv.AppendInt(nil, d.Unix(), 10), nil
	}
	return fmt.Appendf(nil, "%d.%03d", ms/1000, ms%1000), nil
}

var errNumericDate = errors.New("NumericDate must be a non-negative decimal number of seconds")

// UnmarshalJSON accepts a plain non-negative decimal number with at most
// nine fraction digits. Strings, exponents and absurd magnitudes are
// refused rather than rounded through a float.
func (d *NumericDate) UnmarshalJSON(b []byte) error {
	s := string(b)
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" || len(intPart) > 12 || len(frac) > 9 || strings.HasPrefix(intPart, "-") {
		return errNumericDate
	}
	sec, err := strconv.ParseUint(intPart, 10, 64)
	if err != nil {
		return errNumericDate
	}
	var nsec uint64
	if frac != "" {
		n, err := strconv.ParseUint(frac, 10, 64)
		if err != nil || strings.ContainsAny(frac, "+-") {
			return errNumericDate
		}
		nsec = n
		for range 9 - len(frac) {
			nsec *= 10
		}
	}
	d.Time = time.Unix(int64(sec), int64(nsec))
	return nil
}

// Member names Herald reads from a token, from the json tags of Claims and
// header: jsonstrict.CheckMembers refuses names that encoding/json would match to them
// without being them.
var (
	claimNames  = jsonstrict.Names(reflect.TypeFor[Claims]())
	headerNames = jsonstrict.Names(reflect.TypeFor[header]())
)
