package bus

import "fmt"

// Kind is what a revocation targets. The zero Kind is invalid.
type Kind uint8

// The seven revocation kinds (the README's "Revocation" table). The numeric values are internal;
// the wire format uses the names.
const (
	KindToken   Kind = iota + 1 // one access token, by jti
	KindSession                 // every token of a session, by sid
	KindSubject                 // tokens of a subject issued up to the revocation
	KindClient                  // tokens of a client issued up to the revocation
	KindTenant                  // tokens of a tenant issued up to the revocation
	KindKey                     // every token signed with a key, by kid
	KindAll                     // every token issued up to the revocation
)

var kindNames = [...]string{
	KindToken:   "token",
	KindSession: "session",
	KindSubject: "subject",
	KindClient:  "client",
	KindTenant:  "tenant",
	KindKey:     "key",
	KindAll:     "all",
}

// Kinds lists every valid kind in wire order.
func Kinds() []Kind {
	return []Kind{KindToken, KindSession, KindSubject, KindClient, KindTenant, KindKey, KindAll}
}

// String returns the wire name of k, or "kind(N)" for an invalid kind.
func (k Kind) String() string {
	if k.Valid() {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is one of the seven kinds.
func (k Kind) Valid() bool { return k >= KindToken && k <= KindAll }

// NeedsValue reports whether a revocation of kind k names a value (a jti, sid,
// sub, client_id, tenant or kid). Only KindAll takes none.
func (k Kind) NeedsValue() bool { return k.Valid() && k != KindAll }

// ByIssuedAt reports whether k rejects only tokens issued at or before the
// revocation time, rather than every matching token.
func (k Kind) ByIssuedAt() bool {
	switch k {
	case KindSubject, KindClient, KindTenant, KindAll:
		return true
	}
	return false
}

// ParseKind returns the Kind named s. It fails with an error naming s and the
// valid kinds when s is not one of them.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("bus: unknown revocation kind %q (want token, session, subject, client, tenant, key or all)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("bus: invalid revocation kind %d", uint8(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	parsed, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = parsed
	return nil
}
