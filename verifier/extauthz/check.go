package extauthz

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/heraldsec/herald/verifier"
)

// Keys of the dynamic metadata of an admitted request, which Envoy keeps
// under the ext_authz filter's name (envoy.filters.http.ext_authz or
// envoy.filters.network.ext_authz) for the filters after it.
const (
	// MetadataClaims holds the admitted token's claims, as /v1/verify
	// returns them: iss, sub, aud, exp, jti, client_id, and sid, scope,
	// tenant, cnf when the token has them.
	MetadataClaims = "claims"
	// MetadataStale is true when the verdict came from a state cut off
	// from the bus for too long (on-stale allow).
	MetadataStale = "stale"
)

// Check answers Envoy's question about the request req describes with
// the verdict /v1/verify gives about it. The request's method and URL,
// which a DPoP proof must name, are believed only from a peer in the
// verifier's trusted proxies (verifier.Config.TrustedProxies), as
// /v1/verify believes forward-auth headers only from them: from anyone
// else a DPoP-bound token is refused. Check returns an error only when
// it cannot build its answer; Envoy then applies its failure mode.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	hr := req.GetAttributes().GetRequest().GetHttp()
	remote, trusted := s.peer(ctx)
	t := target(hr, trusted)
	d := s.v.Decide(ctx, t)
	if d.Err != nil {
		s.log.Debug("token refused", "reason", verifier.Reason(d.Err), "remote", remote)
		return denied(d.Err), nil
	}
	resp, err := admitted(d, t.Header)
	if err != nil {
		s.log.Error("answer an admitted request", "err", err)
		return nil, status.Error(codes.Internal, "ext_authz: cannot encode the verdict")
	}
	return resp, nil
}

// peer returns the caller's address and whether the verifier trusts it
// to describe requests.
func (s *Server) peer(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", false
	}
	ap, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return p.Addr.String(), false
	}
	return ap.String(), s.v.TrustsPeer(ap.Addr())
}

// target returns the request hr describes: its headers, and, when the
// caller is trusted, its method and URL. An attribute that cannot make
// an absolute http(s) URL leaves the URL unknown: a DPoP-bound token is
// then refused.
func target(hr *authv3.AttributeContext_HttpRequest, trusted bool) verifier.Target {
	h, pseudo := requestHeaders(hr)
	t := verifier.Target{Header: h}
	if !trusted {
		return t
	}
	or := func(v, def string) string {
		if v != "" {
			return v
		}
		return def
	}
	t.Method = or(hr.GetMethod(), pseudo[":method"])
	scheme := strings.ToLower(or(hr.GetScheme(), pseudo[":scheme"]))
	host := or(hr.GetHost(), pseudo[":authority"])
	// path is the request target as sent, query included (Envoy sends no
	// separate query); a DPoP htu is compared without it (RFC 9449
	// section 4.3), as on /v1/verify.
	path := or(hr.GetPath(), pseudo[":path"])
	if (scheme == "http" || scheme == "https") && validHost(host) && strings.HasPrefix(path, "/") {
		t.URL = scheme + "://" + host + path
	}
	return t
}

// validHost reports whether host is a host[:port] that cannot change
// which part of a URL the path lands in, nor be read as another host
// (percent-escapes, which URL parsing decodes).
func validHost(host string) bool {
	return host != "" && !strings.ContainsAny(host, "/?#@%\\ \t\r\n")
}

// requestHeaders returns the headers of hr (Envoy sends either the
// headers map, where repeated headers are joined, or, with
// encode_raw_headers, the header map), apart from its pseudo-headers.
func requestHeaders(hr *authv3.AttributeContext_HttpRequest) (http.Header, map[string]string) {
	h := http.Header{}
	pseudo := map[string]string{}
	add := func(name, value string) {
		if strings.HasPrefix(name, ":") {
			pseudo[strings.ToLower(name)] = value
			return
		}
		h.Add(name, value)
	}
	for _, hv := range hr.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		add(hv.GetKey(), v)
	}
	for name, v := range hr.GetHeaders() {
		add(name, v)
	}
	return h, pseudo
}

// headerOption sets name to value, replacing any value the request or
// response had.
func headerOption(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: strings.ToLower(name), Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// admitted is the OK answer for verdict d about a request with headers
// in: the identity headers /v1/verify answers with are set on the
// upstream request, and every other X-Herald-* header removed from it
// (an identity header the token has no claim for, the stale mark of a
// fresh verdict, and any the client sent), so that only the verifier's
// reach the application.
func admitted(d verifier.Verdict, in http.Header) (*authv3.CheckResponse, error) {
	ok := &authv3.OkHttpResponse{}
	id := d.Identity()
	named := map[string]bool{} // names set or removed, lower-case
	for _, name := range slices.Sorted(maps.Keys(id)) {
		if v := id.Get(name); v != "" {
			ok.Headers = append(ok.Headers, headerOption(name, v))
			named[strings.ToLower(name)] = true
		}
	}
	candidates := append(slices.Sorted(maps.Keys(id)), verifier.HeaderStale)
	for _, name := range slices.Sorted(maps.Keys(in)) {
		if verifier.IsHeraldHeader(name) {
			candidates = append(candidates, name)
		}
	}
	for _, name := range candidates {
		name = strings.ToLower(name)
		if !named[name] {
			named[name] = true // listed once: a request may hold thousands
			ok.HeadersToRemove = append(ok.HeadersToRemove, name)
		}
	}
	md, err := metadata(d)
	if err != nil {
		return nil, err
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: md,
	}, nil
}

// metadata returns the dynamic metadata of an admitted request.
func metadata(d verifier.Verdict) (*structpb.Struct, error) {
	b, err := json.Marshal(d.Claims)
	if err != nil {
		return nil, fmt.Errorf("encode claims: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		return nil, fmt.Errorf("decode claims: %w", err)
	}
	md, err := structpb.NewStruct(map[string]any{MetadataClaims: claims, MetadataStale: d.Stale})
	if err != nil {
		return nil, fmt.Errorf("claims as dynamic metadata: %w", err)
	}
	return md, nil
}

// denied is the answer to a request refused with err: the response
// /v1/verify gives (verifier.RefusalFor), with UNAUTHENTICATED for a 401
// and UNAVAILABLE for a 503 (no verdict).
func denied(err error) *authv3.CheckResponse {
	r := verifier.RefusalFor(err)
	code := codes.Unauthenticated
	if r.Status == http.StatusServiceUnavailable {
		code = codes.Unavailable
	}
	dr := &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode(r.Status)}, Body: string(r.Body)}
	for _, name := range slices.Sorted(maps.Keys(r.Header)) {
		for _, v := range r.Header[name] {
			dr.Headers = append(dr.Headers, headerOption(name, v))
		}
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code), Message: verifier.Reason(err)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: dr},
	}
}
