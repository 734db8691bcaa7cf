package ssf

import (
	"encoding/json"
	"errors"
)

// MaxSubjectBytes bounds the JSON of one subject identifier.
const MaxSubjectBytes = 2048

// Subject is a subject identifier (RFC 9493, SSF 1.0 section 2): a
// simple one (iss_sub, opaque, email, phone_number, account, did, uri,
// jwt_id, ...) or a complex one whose members are simple ones.
type Subject struct {
	m map[string]any // the decoded JSON object; complex members are Subjects' maps
}

// ParseSubject reads a subject identifier a receiver sent (add or
// remove subject), strictly: a JSON object with a known format and its
// members, at most MaxSubjectBytes.
func ParseSubject(raw json.RawMessage) (Subject, error) {
	return Subject{}, errors.New("ssf: not implemented")
}

// IssSub returns an iss_sub subject identifier.
func IssSub(iss, sub string) Subject { return Subject{} }

// Opaque returns an opaque subject identifier.
func Opaque(id string) Subject { return Subject{} }

// Complex returns a complex subject identifier with the given members
// (user, session, tenant, application...).
func Complex(members map[string]Subject) Subject { return Subject{} }

// Matches reports whether an event about subject ev concerns added
// subject s, by the rules of SSF 1.0 section 8.1.3.1: simple subjects
// match when identical; complex ones when every member defined in both
// is identical.
func (s Subject) Matches(ev Subject) bool { return false }

// Key returns a canonical form of s: equal subjects have equal keys.
func (s Subject) Key() string { return "" }

// IsZero reports whether s is the zero Subject.
func (s Subject) IsZero() bool { return s.m == nil }

// MarshalJSON encodes s as the JSON object it is.
func (s Subject) MarshalJSON() ([]byte, error) { return json.Marshal(s.m) }

// UnmarshalJSON decodes a Subject stored by MarshalJSON (trusted input;
// a receiver's subjects go through ParseSubject).
func (s *Subject) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &s.m) }
