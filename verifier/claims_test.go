package verifier

import (
	"encoding/json"
	"testing"
	"time"
)

func TestNumericDate_MarshalJSON(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"whole seconds", time.Unix(1795430832, 0), "1795430832"},
		{"milliseconds", time.UnixMilli(1795430832136), "1795430832.136"},
		{"leading zero milliseconds", time.UnixMilli(1795430832005), "1795430832.005"},
		{"sub-millisecond dropped", time.Unix(1795430832, 136_999_999), "1795430832.136"},
		{"epoch", time.Unix(0, 0), "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NumericDate{tt.t}.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(b); got != tt.want {
				t.Fatalf("MarshalJSON = %s, want %s", got, tt.want)
			}
			if !json.Valid(b) {
				t.Fatalf("MarshalJSON = %s, not valid JSON", b)
			}
		})
	}
}

func TestNumericDate_UnmarshalJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: "1795430832", want: time.Unix(1795430832, 0)},
		{in: "1795430832.136", want: time.UnixMilli(1795430832136)},
		{in: "1795430832.1", want: time.UnixMilli(1795430832100)},
		{in: "1795430832.000", want: time.Unix(1795430832, 0)},
		{in: "1795430832.123456789", want: time.Unix(1795430832, 123456789)},
		{in: "0", want: time.Unix(0, 0)},
		{in: "999999999999", want: time.Unix(999999999999, 0)},

		{in: "1795430832.1234567891", wantErr: true}, // ten fraction digits
		{in: "1e300", wantErr: true},
		{in: "1E3", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "+1", wantErr: true},
		{in: `"123"`, wantErr: true},
		{in: "1.2.3", wantErr: true},
		{in: "1.-5", wantErr: true},
		{in: "1.+5", wantErr: true},
		{in: "", wantErr: true},
		{in: ".5", wantErr: true},
		{in: "null", wantErr: true},
		{in: "true", wantErr: true},
		{in: "1000000000000", wantErr: true}, // thirteen integer digits
		{in: "99999999999999999999999", wantErr: true},
		{in: "0x10", wantErr: true},
		{in: "1_000", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d NumericDate
			err := d.UnmarshalJSON([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("UnmarshalJSON(%s) = %v, want error", tt.in, d.Time)
				}
				return
			}
			if err != nil {
				t.Fatalf("UnmarshalJSON(%s): %v", tt.in, err)
			}
			if !d.Equal(tt.want) {
				t.Fatalf("UnmarshalJSON(%s) = %v, want %v", tt.in, d.Time, tt.want)
			}
		})
	}
}

func TestNumericDate_RoundTrip(t *testing.T) {
	for _, ms := range []int64{0, 1, 999, 1000, 1795430832136, 1795430832005, 1795430832000} {
		in := NewNumericDate(time.UnixMilli(ms))
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out *NumericDate
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if !out.Equal(in.Time) {
			t.Errorf("round trip of %d ms: %s -> %v, want %v", ms, b, out.Time, in.Time)
		}
	}
}

// TestNumericDate_InClaims checks the decoder is used for every date claim
// of Claims and that a JSON null leaves the claim absent.
func TestNumericDate_InClaims(t *testing.T) {
	var c Claims
	if err := json.Unmarshal([]byte(`{"exp":1795431132,"nbf":1795430832,"iat":1795430832.136}`), &c); err != nil {
		t.Fatal(err)
	}
	if got, want := c.IssuedAt.UnixMilli(), int64(1795430832136); got != want {
		t.Errorf("iat = %d ms, want %d", got, want)
	}
	if got, want := c.ExpiresAt.Unix(), int64(1795431132); got != want {
		t.Errorf("exp = %d, want %d", got, want)
	}
	for _, in := range []string{`{"exp":"1795431132"}`, `{"nbf":1e9}`, `{"iat":-1}`} {
		if err := json.Unmarshal([]byte(in), &Claims{}); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", in)
		}
	}
	var n Claims
	if err := json.Unmarshal([]byte(`{"exp":null}`), &n); err != nil || n.ExpiresAt != nil {
		t.Errorf(`Unmarshal({"exp":null}) = %v, %v; want absent exp`, n.ExpiresAt, err)
	}
}

func FuzzNumericDate(f *testing.F) {
	for _, s := range []string{
		"0", "1795430832", "1795430832.136", "1795430832.123456789", "1795430832.1234567891",
		"1e300", "-1", `"123"`, "1.2.3", "", ".", "1.", "999999999999.999999999", "1.-0", "00001.5",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d NumericDate
		if err := d.UnmarshalJSON(b); err != nil {
			return
		}
		if d.Before(time.Unix(0, 0)) {
			t.Fatalf("UnmarshalJSON(%q) = %v, before the epoch", b, d.Time)
		}
		out, err := d.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON(%v) after UnmarshalJSON(%q): %v", d.Time, b, err)
		}
		if !json.Valid(out) {
			t.Fatalf("MarshalJSON(%v) = %q, not valid JSON", d.Time, out)
		}
		var again NumericDate
		if err := again.UnmarshalJSON(out); err != nil {
			t.Fatalf("UnmarshalJSON(%q), re-marshalled from %q: %v", out, b, err)
		}
		if want := d.Truncate(time.Millisecond); !again.Equal(want) {
			t.Fatalf("%q -> %q -> %v, want %v (same millisecond)", b, out, again.Time, want)
		}
	})
}
