package ratelimit

import (
	"strconv"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:4242":                 "192.0.2.7",
		"[::ffff:192.0.2.7]:4242":        "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:4242":    "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:1":       "2001:db8:1:2::/64",
		"[fe80::1%eth0]:1":               "fe80::/64",
		"not an address":                 "not an address",
		"[2001:db8:1:3:3:4:5:6]:4242":    "2001:db8:1:3::/64",
		"@":                              "@",
		"[::1]:80":                       "::/64",
		"127.0.0.1:80":                   "127.0.0.1",
		"[2001:db8::]:80":                "2001:db8::/64",
		"[2001:db8:0:0:ffff:ffff::]:443": "2001:db8::/64",
	} {
		if got := Source(in); got != want {
			t.Errorf("Source(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLimiter_BucketsAndBound checks the buckets (burst, then the rate,
// Retry-After-style waits, reservations given back) and that the limiter
// never tracks more than its bound of keys however many it is shown,
// forgetting the least recently used.
func TestLimiter_BucketsAndBound(t *testing.T) {
	now := time.Unix(1795430832, 0)
	l := New(rate.Every(time.Second), 2, 100, func() time.Time { return now })
	for i := range 2 {
		if ok, _ := l.Allow("a"); !ok {
			t.Fatalf("request %d refused within the burst", i)
		}
	}
	if ok, wait := l.Allow("a"); ok || wait != time.Second {
		t.Fatalf("third request: allowed %v, wait %v; want refused, wait 1s", ok, wait)
	}
	if !l.Empty("a") || l.Empty("b") {
		t.Fatal("Empty: want a spent and b not")
	}
	now = now.Add(time.Second)
	r, _ := l.Reserve("a")
	if r == nil {
		t.Fatal("refused after a refill")
	}
	r.Cancel()
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("a cancelled reservation was not given back")
	}
	for i := range 100_000 {
		l.Allow("k" + strconv.Itoa(i))
	}
	if n := l.Len(); n != 100 {
		t.Fatalf("%d keys tracked, want the bound, 100", n)
	}
	var nilL *Limiter
	if ok, _ := nilL.Allow("x"); !ok {
		t.Fatal("a nil limiter refused")
	}
}
