package signals

import (
	"encoding/json"
	"sort"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/jsonstrict"
)

// Subject identifier formats ParseSET accepts (RFC 9493 section 3, SSF 1.0
// sections 2.3 and 2.5.1).
const (
	FormatIssSub  = "iss_sub" // Issuer and Sub
	FormatOpaque  = "opaque"  // ID
	FormatEmail   = "email"   // Email
	FormatJWTID   = "jwt_id"  // Issuer and JTI of one token
	FormatComplex = "complex" // User and Session, and Others
)

// Subject is the subject identifier of a SET (its sub_id claim), or a
// member of a complex one.
type Subject struct {
	Format string
	// Issuer is the iss of an iss_sub or jwt_id subject.
	Issuer string
	// Sub is the sub of an iss_sub subject.
	Sub string
	// ID is the id of an opaque subject.
	ID string
	// Email is the address of an email subject.
	Email string
	// JTI is the jti of a jwt_id subject.
	JTI string
	// User and Session are the user and session members of a complex
	// subject, nil when absent or in a format this package does not read
	// (then their names are in Others too).
	User, Session *Subject
	// Others names the complex subject's other members (device, tenant,
	// application...), sorted. Herald matches none of them.
	Others []string
}

// maxComplexMembers bounds the members of a complex subject.
const maxComplexMembers = 16

// parseSubject decodes a subject identifier; complex ones only at the top
// (nested is false).
func parseSubject(raw json.RawMessage, nested bool) (*Subject, error) {
	if err := jsonstrict.CheckMembers(raw, nil); err != nil {
		return nil, invalid("subject identifier: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalid("subject identifier is not a JSON object")
	}
	format, err := subjectFormat(m)
	if err != nil {
		return nil, err
	}
	s := &Subject{Format: format}
	str := func(name string, dst *string) error {
		v, ok := m[name]
		if !ok {
			return invalid("%s subject identifier has no %s", format, name)
		}
		if err := json.Unmarshal(v, dst); err != nil || *dst == "" {
			return invalid("member %s of the %s subject identifier must be a non-empty string", name, format)
		}
		return checkString(format+" "+name, *dst)
	}
	switch format {
	case FormatIssSub:
		err = firstErr(str("iss", &s.Issuer), str("sub", &s.Sub))
		if err == nil && bus.CheckIssuer(s.Issuer) != nil {
			err = invalid("iss of an iss_sub subject identifier is not an issuer")
		}
	case FormatOpaque:
		err = str("id", &s.ID)
	case FormatEmail:
		err = str("email", &s.Email)
	case FormatJWTID:
		err = firstErr(str("iss", &s.Issuer), str("jti", &s.JTI))
		if err == nil && bus.CheckIssuer(s.Issuer) != nil {
			err = invalid("iss of a jwt_id subject identifier is not an issuer")
		}
	case FormatComplex:
		if nested {
			return nil, invalid("a complex subject cannot hold another")
		}
		err = s.parseComplex(m)
	default:
		return nil, invalid("unsupported subject identifier format %q", short(format))
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// subjectFormat returns the format member of a subject identifier; the
// subject_type member of Google's RISC transmitter (RISC 1.0 section 4.1)
// stands for it when format is absent.
func subjectFormat(m map[string]json.RawMessage) (string, error) {
	raw, ok := m["format"]
	if !ok {
		if raw, ok = m["subject_type"]; !ok {
			return "", invalid("subject identifier has no format")
		}
	}
	var f string
	if err := json.Unmarshal(raw, &f); err != nil || f == "" {
		return "", invalid("subject identifier format must be a non-empty string")
	}
	return f, nil
}

// parseComplex reads the members of a complex subject (SSF 1.0 section
// 2.3): user and session when in a format this package reads, the names
// of the others.
func (s *Subject) parseComplex(m map[string]json.RawMessage) error {
	if len(m) > maxComplexMembers+1 {
		return invalid("complex subject has more than %d members", maxComplexMembers)
	}
	for name, v := range m {
		if name == "format" || name == "subject_type" {
			continue
		}
		var member *Subject
		if name == "user" || name == "session" {
			sub, err := parseSubject(v, true)
			if err != nil && Code(err) == CodeInvalidRequest && !isUnsupported(v) {
				return err
			}
			member = sub
		}
		switch {
		case name == "user" && member != nil:
			s.User = member
		case name == "session" && member != nil:
			s.Session = member
		default:
			if checkObject(v) != nil {
				return invalid("complex subject member %q is not a JSON object", short(name))
			}
			s.Others = append(s.Others, name)
		}
	}
	if s.User == nil && s.Session == nil && len(s.Others) == 0 {
		return invalid("complex subject has no members")
	}
	sort.Strings(s.Others)
	return nil
}

// isUnsupported reports whether the subject identifier raw is well formed
// but in a format parseSubject does not read: a complex subject keeps such
// a member's name in Others instead of failing.
func isUnsupported(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	f, err := subjectFormat(m)
	if err != nil {
		return false
	}
	switch f {
	case FormatIssSub, FormatOpaque, FormatEmail, FormatJWTID, FormatComplex:
		return false
	}
	return true
}

// checkObject checks that b, already decoded as JSON, is an object
// without duplicate member names.
func checkObject(b json.RawMessage) error {
	return jsonstrict.CheckMembers(b, nil)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
