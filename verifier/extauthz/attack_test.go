package extauthz_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/metadata"

	"github.com/heraldsec/herald/verifier/extauthz"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// bombFields is how many copies of one tiny header a hostile client puts
// in a call's metadata: HPACK sends each copy after the first as a
// one-byte index, but the server decodes every one into the call's
// metadata, kept until the call ends (a call whose request never comes
// stays open). With gRPC's default bound of 16 MiB a header list this
// size (about 150 KiB decoded) is accepted.
const bombFields = 4000

// TestServe_HeaderListBound: a call whose metadata decodes to more than
// extauthz.MaxHeaderListSize is refused, by a client that ignores the
// server's SETTINGS as by gRPC's own client, and the server goes on
// answering. Envoy's calls carry a few headers of metadata: the request's
// headers travel in the CheckRequest, bounded by MaxRequestSize.
func TestServe_HeaderListBound(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	tok, _ := f.token(t, nil)
	good := request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}

	t.Run("gRPC client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		md := metadata.MD{"x-pad": make([]string, bombFields)}
		for i := range md["x-pad"] {
			md["x-pad"][i] = "a"
		}
		if _, err := f.client.Check(metadata.NewOutgoingContext(ctx, md), good.checkRequest()); err == nil {
			t.Fatalf("Check with %d metadata headers answered, want refused", bombFields)
		}
		okAnswer(t, f.check(t, good))
	})

	t.Run("raw HTTP/2 client", func(t *testing.T) {
		pad := make([]hpack.HeaderField, bombFields)
		for i := range pad {
			pad[i] = hpack.HeaderField{Name: "x-pad", Value: "a"}
		}
		fr, blockLen := rawCall(t, f.addr, pad...)
		// An empty CheckRequest, as one gRPC message, ends the call.
		if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		for {
			frame, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("read: %v; want the call refused", err)
			}
			switch frame := frame.(type) {
			case *http2.RSTStreamFrame:
				if frame.StreamID == 1 {
					return // refused
				}
			case *http2.GoAwayFrame:
				return // refused with the whole connection
			case *http2.MetaHeadersFrame:
				if frame.StreamID == 1 && frame.StreamEnded() {
					if s := frame.PseudoValue("status"); s != "" && s != "200" {
						return // refused before gRPC
					}
					if gs := headerValue(frame, "grpc-status"); gs == "0" {
						t.Fatalf("a call with %d metadata headers (%d bytes sent) was answered OK, want refused", bombFields, blockLen)
					}
					return // refused with a gRPC status
				}
			case *http2.SettingsFrame:
				if !frame.IsAck() {
					if err := fr.WriteSettingsAck(); err != nil && !errors.Is(err, net.ErrClosed) {
						t.Fatal(err)
					}
				}
			}
		}
	})
	okAnswer(t, f.check(t, good))
	if extauthz.MaxHeaderListSize >= bombFields*(len("x-pad")+len("a")+32) {
		t.Errorf("MaxHeaderListSize = %d admits the test's header list", extauthz.MaxHeaderListSize)
	}
}

// headerValue returns the value of the regular header name in frame.
func headerValue(frame *http2.MetaHeadersFrame, name string) string {
	for _, hf := range frame.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// TestCheck_ClaimNotAHeaderValue: a signed token whose identity claim
// cannot travel as a header value unchanged (a line break, which Envoy
// passes on to the application unchecked unless validate_mutations is
// set, a NUL, or spaces around it, which a header parser trims: " alice"
// would reach the application as alice) is refused as malformed, over
// gRPC as over /v1/verify, and the application never sees it.
func TestCheck_ClaimNotAHeaderValue(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	for _, tc := range []struct{ claim, value string }{
		{"sub", "mallory\r\nx-herald-tenant: acme"},
		{"sub", " alice"},
		{"sub", "alice\t"},
		{"tenant", "acme\x00"},
		{"scope", "read\nadmin"},
		{"client_id", "web\x7f"},
		{"sid", "s\x1b[2J"},
	} {
		tok, _ := f.token(t, func(c map[string]any) { c[tc.claim] = tc.value })
		r := request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)}
		resp := f.check(t, r)
		if ok := resp.GetOkResponse(); ok != nil {
			t.Errorf("%s %q: admitted over gRPC with headers %v", tc.claim, tc.value, ok.GetHeaders())
			continue
		}
		if d := deniedAnswer(t, resp); d.status != http.StatusUnauthorized || !strings.Contains(d.headers.Get("www-authenticate"), "malformed") {
			t.Errorf("%s %q: gRPC answer %d %q, want 401 malformed", tc.claim, tc.value, d.status, d.headers.Get("www-authenticate"))
		}
		if h, body := f.verifyHTTP(t, r); h.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %q: /v1/verify %d %.80s, want 401", tc.claim, tc.value, h.StatusCode, body)
		}
	}
	// Spaces and tabs inside, and UTF-8, are values a header carries.
	tok, _ := f.token(t, func(c map[string]any) { c["sub"] = "José\tda Silva" })
	if u := okAnswer(t, f.check(t, request{method: "GET", scheme: "https", host: "app.example", path: "/", headers: bearer(tok)})); u.set["x-herald-subject"] != "José\tda Silva" {
		t.Errorf("x-herald-subject = %q, want the claim", u.set["x-herald-subject"])
	}
}

// TestServe_StalledCallEnded: a call whose request never arrives in full
// (its headers and part of its message, then nothing) is ended by the
// server after Config.CallTimeout: without a bound it held its buffers,
// up to MaxRequestSize, for as long as its connection lived, and a few
// connections of such calls (up to MaxConcurrentStreams each) exhausted
// the verifier's memory.
func TestServe_StalledCallEnded(t *testing.T) {
	f := newFixture(t, sidecar.Config{})
	addr := serveGRPCWith(t, extauthz.Config{Verifier: f.sc.Verifier(), CallTimeout: 300 * time.Millisecond})
	fr, _ := rawCall(t, addr)
	// A message of 64 KiB announced, 1 KiB of it sent.
	if err := fr.WriteData(1, false, append([]byte{0, 0, 1, 0, 0}, make([]byte, 1<<10)...)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		frame, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read: %v; want the stalled call ended", err)
		}
		switch frame := frame.(type) {
		case *http2.RSTStreamFrame:
			if frame.StreamID == 1 {
				t.Logf("stalled call reset after %s", time.Since(start).Round(time.Millisecond))
				return
			}
		case *http2.MetaHeadersFrame:
			if frame.StreamID == 1 && frame.StreamEnded() {
				if gs := headerValue(frame, "grpc-status"); gs == "0" {
					t.Fatal("a call without its request was answered OK")
				}
				t.Logf("stalled call ended with grpc-status %s after %s", headerValue(frame, "grpc-status"), time.Since(start).Round(time.Millisecond))
				return
			}
		case *http2.SettingsFrame:
			if !frame.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// rawCall connects to addr as an HTTP/2 client that obeys none of the
// server's limits and starts a Check call on stream 1: gRPC's request
// headers, then extra, in one header block. It returns the framer, which
// reads header blocks decoded, and the block's size. The connection
// closes when the test ends; a deadline makes a server that never answers
// fail the test instead of hanging it.
func rawCall(t *testing.T, addr string, extra ...hpack.HeaderField) (fr *http2.Framer, blockLen int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr = http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: "/envoy.service.auth.v3.Authorization/Check"}, {Name: ":authority", Value: addr},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...)
	for _, hf := range fields {
		_ = enc.WriteField(hf) // writes to a bytes.Buffer
	}
	if block.Len() > 16<<10 {
		t.Fatalf("header block of %d bytes does not fit one frame", block.Len())
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	return fr, block.Len()
}
