package bus_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/heraldsec/herald/bus"
)

func TestKind_RoundTrip(t *testing.T) {
	names := []string{"token", "session", "subject", "client", "tenant", "key", "all"}
	kinds := bus.Kinds()
	if got, want := len(kinds), len(names); got != want {
		t.Fatalf("len(Kinds()) = %d, want %d", got, want)
	}
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			k, err := bus.ParseKind(name)
			if err != nil {
				t.Fatalf("ParseKind(%q): %v", name, err)
			}
			if got, want := k, kinds[i]; got != want {
				t.Fatalf("ParseKind(%q) = %d, want Kinds()[%d] = %d", name, got, i, want)
			}
			if !k.Valid() {
				t.Fatalf("%s.Valid() = false", name)
			}
			if got := k.String(); got != name {
				t.Fatalf("ParseKind(%q).String() = %q", name, got)
			}
		})
	}
}

func TestParseKind_Unknown(t *testing.T) {
	for _, s := range []string{"", "Token", "TOKEN", " token", "token ", "tokens", "kind(1)", "1", "revoke", "all\x00"} {
		t.Run(s, func(t *testing.T) {
			k, err := bus.ParseKind(s)
			if err == nil {
				t.Fatalf("ParseKind(%q) = %v, want an error", s, k)
			}
			if k != 0 {
				t.Errorf("ParseKind(%q) returned kind %d with its error, want 0", s, k)
			}
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Errorf("ParseKind(%q) error %q does not name the input", s, err)
			}
		})
	}
}

func TestKind_Invalid(t *testing.T) {
	for _, k := range []bus.Kind{0, bus.KindAll + 1, 255} {
		if k.Valid() {
			t.Errorf("Kind(%d).Valid() = true", uint8(k))
		}
		if k.NeedsValue() {
			t.Errorf("Kind(%d).NeedsValue() = true", uint8(k))
		}
		if k.ByIssuedAt() {
			t.Errorf("Kind(%d).ByIssuedAt() = true", uint8(k))
		}
		if got := k.String(); !strings.HasPrefix(got, "kind(") {
			t.Errorf("Kind(%d).String() = %q, want kind(N)", uint8(k), got)
		}
		if b, err := k.MarshalText(); err == nil {
			t.Errorf("Kind(%d).MarshalText() = %q, want an error", uint8(k), b)
		}
	}
}

func TestKind_Properties(t *testing.T) {
	// The README's table of revocation kinds: all takes no value; subject, client,
	// tenant and all reject only tokens issued up to the revocation.
	tests := []struct {
		kind       bus.Kind
		needsValue bool
		byIssuedAt bool
	}{
		{bus.KindToken, true, false},
		{bus.KindSession, true, false},
		{bus.KindSubject, true, true},
		{bus.KindClient, true, true},
		{bus.KindTenant, true, true},
		{bus.KindKey, true, false},
		{bus.KindAll, false, true},
	}
	if got, want := len(tests), len(bus.Kinds()); got != want {
		t.Fatalf("table covers %d kinds, Kinds() has %d", got, want)
	}
	for _, tt := range tests {
		t.Run(tt.kind.String(), func(t *testing.T) {
			if got := tt.kind.NeedsValue(); got != tt.needsValue {
				t.Errorf("NeedsValue() = %v, want %v", got, tt.needsValue)
			}
			if got := tt.kind.ByIssuedAt(); got != tt.byIssuedAt {
				t.Errorf("ByIssuedAt() = %v, want %v", got, tt.byIssuedAt)
			}
		})
	}
}

func TestKind_JSON(t *testing.T) {
	type doc struct {
		Kind bus.Kind `json:"kind"`
	}
	for _, k := range bus.Kinds() {
		t.Run(k.String(), func(t *testing.T) {
			b, err := json.Marshal(doc{k})
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			if got, want := string(b), `{"kind":"`+k.String()+`"}`; got != want {
				t.Fatalf("Marshal = %s, want %s", got, want)
			}
			var d doc
			if err := json.Unmarshal(b, &d); err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if d.Kind != k {
				t.Fatalf("Unmarshal(%s) = %v, want %v", b, d.Kind, k)
			}
		})
	}

	t.Run("marshal invalid", func(t *testing.T) {
		if b, err := json.Marshal(doc{}); err == nil {
			t.Fatalf("Marshal of the zero kind = %s, want an error", b)
		}
	})
	for _, in := range []string{`{"kind":"nope"}`, `{"kind":""}`, `{"kind":"Session"}`, `{"kind":2}`} {
		t.Run("unmarshal "+in, func(t *testing.T) {
			var d doc
			err := json.Unmarshal([]byte(in), &d)
			if err == nil {
				t.Fatalf("Unmarshal(%s) = %v, want an error", in, d.Kind)
			}
		})
	}
	t.Run("unmarshal error names input", func(t *testing.T) {
		var d doc
		err := json.Unmarshal([]byte(`{"kind":"nope"}`), &d)
		if err == nil || !strings.Contains(err.Error(), `"nope"`) {
			t.Fatalf("Unmarshal error = %v, want it to name \"nope\"", err)
		}
	})
}
