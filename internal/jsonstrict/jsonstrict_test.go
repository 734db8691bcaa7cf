package jsonstrict

import (
	"reflect"
	"strings"
	"testing"
)

// claims are the member names of a token's claims set, as the verifier
// knows them.
var claims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "sid", "scope", "tenant"}

// TestCheckMembers covers the member scanner on its own, including input
// that is not JSON, which encoding/json refuses after it.
func TestCheckMembers(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{`{}`, true},
		{` { } `, true},
		{`{"sub":"a","aud":["x","y"],"exp":1,"z":{"sub":1,"sub":2}}`, true}, // nested duplicates are not ours to read
		{`{"a":"}\"{[","b":[{"]":"["}]}`, true},
		{`{"sub":"\\","x":"\"sub\":1"}`, true},
		{`{"x":"\ud83d\ude00"}`, true},
		{`{"x":-1.5e+3,"y":true,"z":null}`, true},
		{`{"sub":1,"sub":2}`, false},
		{`{"sub":1,"SUB":2}`, false},
		{`{"SUB":2}`, false},
		{`{"client_ID":"x"}`, false},
		{`{"x":"\ud800"}`, false},
		{`{"x":"\udc00\ud800"}`, false},
		{`{"x":"\ud800\u0041"}`, false},
		{`{"x":"\u12"}`, false},
		{"{\"x\":\"\xff\"}", false},
		{"{\"x\":\"a\x01\"}", true}, // control characters are encoding/json's to refuse
		{`[]`, false},
		{``, false},
		{`{`, false},
		{`{"a"`, false},
		{`{"a":`, false},
		{`{"a":1`, false},
		{`{"a":1,}`, false},
		{`{"a" 1}`, false},
		{`{a:1}`, false},
		{`{"a":[1,2}`, false},
		{`{"a":"b`, false},
	}
	for _, tt := range tests {
		err := CheckMembers([]byte(tt.in), claims)
		if (err == nil) != tt.ok {
			t.Errorf("CheckMembers(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}

// TestCheckMembers_Bounded: an object with more members than MaxMembers is
// refused, one with MaxMembers is not.
func TestCheckMembers_Bounded(t *testing.T) {
	object := func(n int) []byte {
		var b strings.Builder
		b.WriteString("{")
		for i := range n {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`"m` + strings.Repeat("x", i) + `":1`)
		}
		b.WriteString("}")
		return []byte(b.String())
	}
	if err := CheckMembers(object(MaxMembers), nil); err != nil {
		t.Errorf("%d members: %v", MaxMembers, err)
	}
	if err := CheckMembers(object(MaxMembers+1), nil); err == nil {
		t.Errorf("%d members accepted", MaxMembers+1)
	}
}

// TestCheckObject: the names CheckObject checks against are the struct's
// json names, so a case-folded twin of one is refused and other members
// pass.
func TestCheckObject(t *testing.T) {
	type request struct {
		Kind   string `json:"kind"`
		Value  string `json:"value,omitempty"`
		Hidden string `json:"-"`
		Plain  string
	}
	if got := Names(reflect.TypeFor[request]()); strings.Join(got, ",") != "kind,value" {
		t.Errorf("Names = %v, want kind, value", got)
	}
	for in, ok := range map[string]bool{
		`{"kind":"token","value":"x"}`: true,
		`{"kind":"token","extra":1}`:   true,
		`{"Kind":"token"}`:             false,
		`{"kind":"a","kind":"b"}`:      false,
		`{"VALUE":"x"}`:                false,
	} {
		if err := CheckObject([]byte(in), &request{}); (err == nil) != ok {
			t.Errorf("CheckObject(%s) = %v, want ok %v", in, err, ok)
		}
	}
}
