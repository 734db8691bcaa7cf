package verifier

import (
	"testing"
	"time"
)

// TestVerifyDPoP_HTUPathEncoding: a proof's htu names the request's path
// as RFC 3986 compares paths: percent-encoded unreserved characters
// (%7E for ~) and the case of hex digits do not matter, but an encoded
// reserved character is not the character itself: /files/a%2Fb is one
// segment, which many applications (an encoded project or file name) read
// as another resource than /files/a/b, so a proof for one does not admit
// a request for the other.
func TestVerifyDPoP_HTUPathEncoding(t *testing.T) {
	k := newDPoPKey(t)
	for _, tc := range []struct {
		htu, request string
		same         bool
	}{
		{"https://api.example/files/a/b", "https://api.example/files/a/b", true},
		{"https://api.example/files/a/b", "https://api.example/files/a%2Fb", false},
		{"https://api.example/files/a%2Fb", "https://api.example/files/a/b", false},
		{"https://api.example/files/a%2fb", "https://api.example/files/a%2Fb", true},
		{"https://api.example/~alice/x", "https://api.example/%7Ealice/x", true},
		{"https://api.example/%41dmin", "https://api.example/Admin", true},
		{"https://api.example/a%3Fb", "https://api.example/a?b", false},
		{"https://api.example/a%20b", "https://api.example/a%20b", true},
		{"https://API.example/x?q=1", "https://api.example/x", true},
		{"https://api.example/x", "https://api.example/x/", false},
		{"https://api.example/a/./b", "https://api.example/a/b", false},
	} {
		_, err := VerifyDPoP(k.Proof(t, "GET", tc.htu, "", nil), "GET", tc.request, "", time.Now())
		if (err == nil) != tc.same {
			t.Errorf("proof for %s, request %s: %v, want accepted %v", tc.htu, tc.request, err, tc.same)
		}
	}
}
