package ssf

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strings"

	"github.com/heraldsec/herald/internal/jsonstrict"
)

// MaxSubjectBytes bounds the JSON of one subject identifier.
const MaxSubjectBytes = 2048

// Bounds inside a subject identifier.
const (
	maxSubjectString = 1024 // one string member
	maxIPAddresses   = 16   // addresses of an ip-addresses subject
)

// Subject identifier formats ParseSubject reads (RFC 9493 section 3, SSF
// 1.0 sections 2.3 and 2.5), with their members: every one required, no
// other allowed. The aliases format (RFC 9493 section 3.2.1) is not
// read: Herald never sends it, and a subject standing for several would
// need matching rules SSF 1.0 does not give.
var subjectFormats = map[string][]string{
	"account":           {"uri"},
	"email":             {"email"},
	"iss_sub":           {"iss", "sub"},
	"opaque":            {"id"},
	"phone_number":      {"phone_number"},
	"did":               {"url"},
	"uri":               {"uri"},
	"jwt_id":            {"iss", "jti"},
	"saml_assertion_id": {"issuer", "assertion_id"},
	"ip-addresses":      {"ip-addresses"},
}

// complexMembers are the members a complex subject may hold (SSF 1.0
// section 2.3), each a simple subject identifier.
var complexMembers = []string{"user", "device", "session", "application", "tenant", "org_unit", "group"}

// Subject is a subject identifier (RFC 9493, SSF 1.0 section 2): a
// simple one (iss_sub, opaque, email, phone_number, account, did, uri,
// jwt_id, ...) or a complex one whose members are simple ones.
type Subject struct {
	m map[string]any // the decoded JSON object; complex members are Subjects' maps
}

// ParseSubject reads a subject identifier a receiver sent (add or
// remove subject), strictly: a JSON object with a known format and its
// members, at most MaxSubjectBytes. Every object is checked for invalid
// UTF-8 and duplicate member names; every format member is required and
// no other is allowed; string members are 1 to 1024 bytes. A complex
// subject holds one or more of user, device, session, application,
// tenant, org_unit and group (SSF 1.0 section 2.3 allows other names,
// which Herald would never match: they are refused rather than
// silently ignored), each a simple subject. Errors are *Error, 400
// invalid_request.
func ParseSubject(raw json.RawMessage) (Subject, error) {
	if len(raw) > MaxSubjectBytes {
		return Subject{}, badRequest("subject identifier is %d bytes, more than %d", len(raw), MaxSubjectBytes)
	}
	m, err := parseSubject(raw, false)
	if err != nil {
		return Subject{}, badRequest("subject identifier: %v", err)
	}
	return Subject{m: m}, nil
}

// parseSubject decodes a subject identifier; complex ones only at the top
// (nested is false).
func parseSubject(raw json.RawMessage, nested bool) (map[string]any, error) {
	if err := jsonstrict.CheckMembers(raw, nil); err != nil {
		return nil, err
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	fv, ok := members["format"]
	if !ok {
		return nil, fmt.Errorf("format is required")
	}
	var format string
	if decodeString(fv, &format) != nil {
		return nil, fmt.Errorf("format must be a string")
	}
	m := map[string]any{"format": format}
	if format == "complex" {
		if nested {
			return nil, fmt.Errorf("a member of a complex subject must be a simple subject")
		}
		for _, name := range slices.Sorted(maps.Keys(members)) { // the same error for the same subject
			v := members[name]
			if name == "format" {
				continue
			}
			if !slices.Contains(complexMembers, name) {
				return nil, fmt.Errorf("%q is not a member of a complex subject (known: %s)",
					truncate(name, 64), strings.Join(complexMembers, ", "))
			}
			sub, err := parseSubject(v, true)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			m[name] = sub
		}
		if len(m) == 1 {
			return nil, fmt.Errorf("a complex subject needs at least one member")
		}
		return m, nil
	}
	want, ok := subjectFormats[format]
	if !ok {
		return nil, fmt.Errorf("format %q is not supported", truncate(format, 64))
	}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		if name != "format" && !slices.Contains(want, name) {
			return nil, fmt.Errorf("%q is not a member of the %s format (want %s)", truncate(name, 64), format, strings.Join(want, ", "))
		}
	}
	for _, name := range want {
		v, ok := members[name]
		if !ok {
			return nil, fmt.Errorf("the %s format needs %s", format, name)
		}
		if format == "ip-addresses" {
			l, err := decodeAddresses(v)
			if err != nil {
				return nil, fmt.Errorf("%s %w", name, err)
			}
			m[name] = l
			continue
		}
		var s string
		if decodeString(v, &s) != nil || s == "" || len(s) > maxSubjectString {
			return nil, fmt.Errorf("%s must be a string of 1 to %d bytes", name, maxSubjectString)
		}
		if err := checkSubjectValue(format, s); err != nil {
			return nil, fmt.Errorf("%s %w", name, err)
		}
		m[name] = s
	}
	return m, nil
}

// checkSubjectValue checks the one-member formats whose value has a
// defined syntax (RFC 9493 section 3.2).
func checkSubjectValue(format, s string) error {
	switch format {
	case "account":
		if !strings.HasPrefix(s, "acct:") || len(s) == len("acct:") {
			return fmt.Errorf("must be an acct: URI")
		}
	case "did":
		if !strings.HasPrefix(s, "did:") || len(s) == len("did:") {
			return fmt.Errorf("must be a DID URL (did:...)")
		}
	case "uri":
		if u, err := url.Parse(s); err != nil || u.Scheme == "" {
			return fmt.Errorf("must be an absolute URI")
		}
	case "phone_number":
		digits := strings.TrimPrefix(s, "+")
		if len(digits) == len(s) || len(digits) == 0 || len(digits) > 15 ||
			strings.ContainsFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) {
			return fmt.Errorf("must be an E.164 number (+ and up to 15 digits)")
		}
	}
	return nil
}

// decodeAddresses decodes the addresses of an ip-addresses subject: 1 to
// maxIPAddresses IP addresses as strings, kept as sent.
func decodeAddresses(v json.RawMessage) ([]any, error) {
	var l []string
	if isNull(v) || json.Unmarshal(v, &l) != nil || len(l) == 0 || len(l) > maxIPAddresses {
		return nil, fmt.Errorf("must be an array of 1 to %d IP addresses", maxIPAddresses)
	}
	out := make([]any, len(l))
	for i, a := range l {
		if _, err := netip.ParseAddr(a); err != nil {
			return nil, fmt.Errorf("holds %q, not an IP address", truncate(a, 64))
		}
		out[i] = a
	}
	return out, nil
}

// IssSub returns an iss_sub subject identifier.
func IssSub(iss, sub string) Subject {
	return Subject{m: map[string]any{"format": "iss_sub", "iss": iss, "sub": sub}}
}

// Opaque returns an opaque subject identifier.
func Opaque(id string) Subject { return Subject{m: map[string]any{"format": "opaque", "id": id}} }

// Complex returns a complex subject identifier with the given members
// (user, session, tenant, application...). Zero members are left out.
func Complex(members map[string]Subject) Subject {
	m := map[string]any{"format": "complex"}
	for name, s := range members {
		if !s.IsZero() {
			m[name] = s.m
		}
	}
	return Subject{m: m}
}

// Format returns s's format ("iss_sub", "complex"...), "" for the zero
// Subject.
func (s Subject) Format() string {
	f, _ := s.m["format"].(string)
	return f
}

// isComplex reports whether s is a complex subject.
func (s Subject) isComplex() bool { return s.Format() == "complex" }

// equalValue reports whether the decoded JSON values a and b are
// identical: what comparing their keys tells, without encoding them (the
// transmitter compares every event with every subject of a stream).
func equalValue(a, b any) bool {
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !equalValue(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b) // numbers and booleans, in no subject Herald reads or makes
}

// hasMember reports whether complex subject s has a member identical to
// simple subject sub.
func (s Subject) hasMember(sub Subject) bool {
	for name, v := range s.m {
		if name != "format" && equalValue(v, sub.m) {
			return true
		}
	}
	return false
}

// Matches reports whether an event about subject ev concerns added
// subject s, by the rules of SSF 1.0 section 8.1.3.1: simple subjects
// match when identical; complex ones when every member defined in both
// is identical. Two choices the specification leaves open:
//
//   - complex subjects with no member in common do not match. The rule
//     read literally would match them (no member is defined in both), so
//     that a receiver that added its tenant would be sent the sessions of
//     every tenant;
//   - a simple subject and a complex one match when the simple one is
//     identical to one of the complex one's members, in either role: an
//     added iss_sub user matches an event whose complex subject has that
//     iss_sub as its user, and an added complex subject whose user is an
//     iss_sub matches an event about that iss_sub (which concerns the
//     user everywhere, so in the added subject's tenant too).
func (s Subject) Matches(ev Subject) bool {
	if s.IsZero() || ev.IsZero() {
		return false
	}
	switch sc, ec := s.isComplex(), ev.isComplex(); {
	case !sc && !ec:
		return equalValue(s.m, ev.m)
	case sc && ec:
		common := false
		for name, v := range s.m {
			if name == "format" {
				continue
			}
			if w, ok := ev.m[name]; ok {
				if !equalValue(v, w) {
					return false
				}
				common = true
			}
		}
		return common
	case sc:
		return s.hasMember(ev)
	default:
		return ev.hasMember(s)
	}
}

// Key returns a canonical form of s: equal subjects have equal keys. It
// is s's JSON with every object's members sorted by name; "" for the
// zero Subject.
func (s Subject) Key() string {
	if s.m == nil {
		return ""
	}
	b, err := json.Marshal(s.m) // encoding/json sorts map keys
	if err != nil {
		return "" // the map holds only strings, arrays of strings and maps of them
	}
	return string(b)
}

// IsZero reports whether s is the zero Subject.
func (s Subject) IsZero() bool { return s.m == nil }

// MarshalJSON encodes s as the JSON object it is.
func (s Subject) MarshalJSON() ([]byte, error) { return json.Marshal(s.m) }

// UnmarshalJSON decodes a Subject stored by MarshalJSON (trusted input;
// a receiver's subjects go through ParseSubject).
func (s *Subject) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &s.m) }
