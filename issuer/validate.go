package issuer

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/heraldsec/herald/bus"
)

// validName is the set of names admins give credentials and clients: lower
// case ASCII letters and digits, then also '.', '_' and '-', 64 at most, so
// that no name looks like another (no case, Unicode or invisible
// variants) and every name is safe in a URL path, a shell and a log.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// checkName checks the name of a credential or client against validName.
func checkName(what, v string) error {
	if !validName.MatchString(v) {
		return badRequest(fmt.Sprintf("%s name %.64q: want 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", what, v))
	}
	return nil
}

// checkIdent checks an identifier: bounded, UTF-8, no control characters,
// and no space at either end, which header parsers trim: verifiers refuse
// a token whose identity a header would not carry unchanged.
func checkIdent(name, v string, required bool) error {
	if required && v == "" {
		return badRequest(name + " is required")
	}
	if v != strings.TrimSpace(v) {
		return badRequest(name + " has spaces at either end")
	}
	return checkText(name, v, bus.MaxValueLen)
}

// checkText checks free text: bounded, UTF-8, no control characters.
func checkText(name, v string, maxLen int) error {
	if len(v) > maxLen {
		return badRequest(fmt.Sprintf("%s is longer than %d bytes", name, maxLen))
	}
	if !utf8.ValidString(v) {
		return badRequest(name + " is not valid UTF-8")
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return badRequest(name + " contains control characters")
		}
	}
	return nil
}

// Duration is a JSON duration: a number of seconds or a Go duration string
// such as "90s" or "5m".
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		secs, err := n.Int64()
		if err != nil || secs < 0 || secs > int64(time.Duration(math.MaxInt64)/time.Second) {
			return fmt.Errorf("ttl %s: want whole non-negative seconds", n)
		}
		*d = Duration(time.Duration(secs) * time.Second)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("ttl: want seconds or a duration string")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("ttl %q: want a duration such as 90s or 5m", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes whole seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(int64(time.Duration(d) / time.Second))
}
