// Package jsonstrict checks JSON objects for what encoding/json accepts
// silently: invalid UTF-8, lone surrogates, duplicate member names and
// names that match a known one only under case folding. The verifier
// checks tokens with it and the issuer request bodies, so a fix lands in
// both at once.
package jsonstrict

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// MaxMembers bounds the members of an object CheckMembers accepts. Herald
// writes at most eleven claims in a token; the bound keeps the duplicate
// search cheap on hostile input.
const MaxMembers = 64

// CheckObject checks the JSON object b before encoding/json decodes it
// into v, a pointer to a struct, for what encoding/json would let through
// silently: invalid UTF-8 and lone surrogates, duplicate member names, and
// names that are not one of v's json names but equal one under Unicode
// case folding ("Kind" for "kind"). Only the top level is checked. The
// issuer checks admin request bodies with it, as the verifier checks
// tokens. It is safe for concurrent use.
func CheckObject(b []byte, v any) error {
	return CheckMembers(b, Names(reflect.TypeOf(v)))
}

// Names returns the json member names of the struct type t (or of the
// struct t points to); none for other types.
func Names(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// CheckMembers checks the JSON object b (a token's header or claims, a
// request body) for what encoding/json would let through silently, before
// it decodes it:
//
//   - invalid UTF-8, and escaped lone surrogates (\ud800), which it
//     replaces with U+FFFD;
//   - duplicate member names, of which it keeps the last (RFC 7515
//     section 5.2 and RFC 7519 section 4 allow refusing them; we do);
//   - names that are not one of known but equal one under Unicode case
//     folding ("EXP", "Sub", "ſub" with U+017F), which it decodes into the
//     known field: JWT member names are case-sensitive (RFC 7519 section
//     4), so "EXP" is not "exp" and must not set or override it.
//
// Names are compared after unescaping ("\u0073ub" is "sub"). Only the top
// level is read; nested values are skipped without recursion. Syntax is
// checked only as far as the scan needs: encoding/json checks the rest.
// It allocates nothing unless a member name is escaped.
func CheckMembers(b []byte, known []string) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errors.New("not a JSON object")
	}
	if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
		return nil
	}
	var seen [MaxMembers][]byte
	n := 0
	for {
		if i >= len(b) || b[i] != '"' {
			return errSyntax
		}
		end, escaped, err := scanString(b, i)
		if err != nil {
			return err
		}
		name := b[i+1 : end-1]
		if escaped {
			var s string
			if err := json.Unmarshal(b[i:end], &s); err != nil {
				return errSyntax
			}
			name = []byte(s)
		}
		if n == MaxMembers {
			return fmt.Errorf("more than %d members", MaxMembers)
		}
		for _, prev := range seen[:n] {
			if bytes.Equal(prev, name) {
				return fmt.Errorf("duplicate member %q", truncate(string(name), 64))
			}
		}
		seen[n] = name
		n++
		if !isKnown(name, known) {
			for _, k := range known {
				// Folding at most triples a name's length (K, U+212A).
				if len(name) <= 3*len(k) && strings.EqualFold(string(name), k) {
					return fmt.Errorf("member %q is not %q: names are case-sensitive", truncate(string(name), 64), k)
				}
			}
		}
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return errSyntax
		}
		if i, err = skipValue(b, skipSpace(b, i+1)); err != nil {
			return err
		}
		switch i = skipSpace(b, i); {
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		case i < len(b) && b[i] == '}':
			return nil
		default:
			return errSyntax
		}
	}
}

var errSyntax = errors.New("not a valid JSON object")

func isKnown(name []byte, known []string) bool {
	for _, k := range known {
		if string(name) == k {
			return true
		}
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString scans the JSON string starting at b[i], a quote, and returns
// the index after its closing quote and whether it holds escapes. It
// refuses \u escapes of lone surrogates. Control characters are left to
// encoding/json, which refuses them.
func scanString(b []byte, i int) (end int, escaped bool, err error) {
	for j := i + 1; ; {
		q := bytes.IndexByte(b[j:], '"')
		if q < 0 {
			return 0, false, errSyntax
		}
		e := bytes.IndexByte(b[j:j+q], '\\')
		if e < 0 {
			return j + q + 1, escaped, nil
		}
		j += e
		escaped = true
		if j+1 >= len(b) {
			return 0, false, errSyntax
		}
		if b[j+1] != 'u' {
			j += 2
			continue
		}
		r, ok := hex4(b, j+2)
		switch {
		case !ok:
			return 0, false, errSyntax
		case r >= 0xd800 && r < 0xdc00: // a high surrogate needs a low one next
			if lo, ok := hex4(b, j+8); !ok || b[j+6] != '\\' || b[j+7] != 'u' || lo < 0xdc00 || lo > 0xdfff {
				return 0, false, errors.New("escaped lone surrogate: not valid UTF-16")
			}
			j += 12
		case r >= 0xdc00 && r <= 0xdfff:
			return 0, false, errors.New("escaped lone surrogate: not valid UTF-16")
		default:
			j += 6
		}
	}
}

// hex4 decodes the four hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// skipValue returns the index after the JSON value starting at b[i].
// Containers are skipped by counting brackets outside strings.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		end, _, err := scanString(b, i)
		return end, err
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				end, _, err := scanString(b, j)
				if err != nil {
					return 0, err
				}
				j = end
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, nil
				}
			}
			j++
		}
		return 0, errSyntax
	}
	j := i
scan: // a number, true, false or null: up to the next delimiter
	for ; j < len(b); j++ {
		switch b[j] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			break scan
		}
	}
	if j == i {
		return 0, errSyntax
	}
	return j, nil
}

// truncate shortens s to n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
