package deploy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	// The typed configs the Envoy examples name, for protojson to decode.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/extauthz"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// authorizationService is the gRPC service Envoy calls with
// transport_api_version V3, and Istio's envoyExtAuthzGrpc provider.
const authorizationService = "envoy.service.auth.v3.Authorization"

// loadEnvoy decodes an Envoy bootstrap file strictly into Envoy's own API
// types (an unknown or misspelt field is an error), typed configs
// included, and checks every message against the API's validation rules.
func loadEnvoy(t *testing.T, file string) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("%s does not decode as an Envoy bootstrap: %v", file, err)
	}
	validateTree(t, file, b.ProtoReflect())
	return &b
}

// validateTree runs the API's validation rules (ValidateAll) on m and on
// every message packed in an Any below it, which ValidateAll does not
// enter.
func validateTree(t *testing.T, file string, m protoreflect.Message) {
	t.Helper()
	if v, ok := m.Interface().(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Errorf("%s: %s: %v", file, m.Descriptor().FullName(), err)
		}
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			t.Errorf("%s: %s: %v", file, a.GetTypeUrl(), err)
			return
		}
		validateTree(t, file, inner.ProtoReflect())
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				validateTree(t, file, v.List().Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				validateTree(t, file, mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			validateTree(t, file, v.Message())
		}
		return true
	})
}

// unpack returns the message of a typed config.
func unpack[M proto.Message](t *testing.T, a *anypb.Any, m M) M {
	t.Helper()
	if err := a.UnmarshalTo(m); err != nil {
		t.Fatalf("typed config %s: %v", a.GetTypeUrl(), err)
	}
	return m
}

// TestEnvoy_ConfigsDecodeStrictly: both Envoy examples decode into
// Envoy's API types and pass its validation rules, and a misspelt field
// fails.
func TestEnvoy_ConfigsDecodeStrictly(t *testing.T) {
	for _, f := range []string{"envoy/envoy.yaml", "envoy/envoy-grpc.yaml"} {
		if b := loadEnvoy(t, f); len(b.GetStaticResources().GetListeners()) == 0 {
			t.Errorf("%s: no listener", f)
		}
	}
	bad := []byte(`{"static_resources": {"clusters": [{"name": "x", "conect_timeout": "1s"}]}}`)
	if err := protojson.Unmarshal(bad, &bootstrapv3.Bootstrap{}); err == nil {
		t.Fatal("protojson accepted a misspelt field")
	}
}

// matches reports whether name matches one of the patterns as Envoy
// matches header names (exact and prefix, with ignore_case).
func matches(patterns []*matcherv3.StringMatcher, name string) bool {
	for _, p := range patterns {
		s, v := name, ""
		switch {
		case p.GetExact() != "":
			v = p.GetExact()
		case p.GetPrefix() != "":
			v = p.GetPrefix()
			s = name[:min(len(name), len(v))]
		default:
			continue
		}
		if s == v || (p.GetIgnoreCase() && strings.EqualFold(s, v)) {
			return true
		}
	}
	return false
}

// envoyGRPCPort is the --grpc port the Envoy example's comment starts the
// verifier with.
func envoyGRPCPort(t *testing.T) uint32 {
	t.Helper()
	data, err := os.ReadFile("envoy/envoy-grpc.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^#\s+herald verifier --grpc (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatal("envoy-grpc.yaml does not say how to start the verifier (herald verifier --grpc ADDR)")
	}
	ap, err := netip.ParseAddrPort(string(m[1]))
	if err != nil || !ap.Addr().IsLoopback() {
		t.Fatalf("--grpc %s: want a loopback address and port (%v)", m[1], err)
	}
	return uint32(ap.Port())
}

// TestEnvoy_GRPCExtAuthz: the gRPC example calls the verifier's
// Authorization service (V3) on the port the verifier is started with,
// over HTTP/2, fails closed, sends no body, and lets through to the
// verifier the headers it reads and every X-Herald-* header it must have
// removed.
func TestEnvoy_GRPCExtAuthz(t *testing.T) {
	b := loadEnvoy(t, "envoy/envoy-grpc.yaml")
	var ea *extauthzv3.ExtAuthz
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if f.GetName() != "envoy.filters.network.http_connection_manager" {
					continue
				}
				hcm := unpack(t, f.GetTypedConfig(), &hcmv3.HttpConnectionManager{})
				for i, hf := range hcm.GetHttpFilters() {
					if hf.GetName() == "envoy.filters.http.ext_authz" {
						ea = unpack(t, hf.GetTypedConfig(), &extauthzv3.ExtAuthz{})
						if last := hcm.GetHttpFilters()[len(hcm.GetHttpFilters())-1].GetName(); i == len(hcm.GetHttpFilters())-1 || last != "envoy.filters.http.router" {
							t.Errorf("ext_authz is not before the router (last filter %s)", last)
						}
					}
				}
			}
		}
	}
	if ea == nil {
		t.Fatal("no ext_authz filter")
	}
	if ea.GetTransportApiVersion().String() != "V3" {
		t.Errorf("transport_api_version %s: want V3 (%s)", ea.GetTransportApiVersion(), authorizationService)
	}
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow: an unreachable verifier would let every request through")
	}
	if ea.GetWithRequestBody() != nil {
		t.Error("with_request_body: the verifier needs no body and bounds its requests")
	}
	if allowed := ea.GetAllowedHeaders(); allowed != nil {
		for _, h := range []string{"authorization", "dpop", "x-herald-subject", "x_herald_subject", "x-herald_subject", "x_herald-subject", "X-HERALD-TENANT"} {
			if !matches(allowed.GetPatterns(), h) {
				t.Errorf("allowed_headers keep %s from the verifier", h)
			}
		}
	}
	cluster := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if cluster == "" {
		t.Fatal("ext_authz has no envoy_grpc cluster")
	}
	var c *clusterv3.Cluster
	for _, cl := range b.GetStaticResources().GetClusters() {
		if cl.GetName() == cluster {
			c = cl
		}
	}
	if c == nil {
		t.Fatalf("no cluster %s", cluster)
	}
	opts := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if opts == nil || unpack(t, opts, &upstreamhttpv3.HttpProtocolOptions{}).GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %s does not speak HTTP/2, which gRPC needs", cluster)
	}
	want := envoyGRPCPort(t)
	var ports []uint32
	for _, e := range c.GetLoadAssignment().GetEndpoints() {
		for _, le := range e.GetLbEndpoints() {
			sa := le.GetEndpoint().GetAddress().GetSocketAddress()
			ports = append(ports, sa.GetPortValue())
			if a, err := netip.ParseAddr(sa.GetAddress()); err != nil || !a.IsLoopback() {
				t.Errorf("cluster %s endpoint %s: want the verifier on loopback", cluster, sa.GetAddress())
			}
		}
	}
	if !slices.Equal(ports, []uint32{want}) {
		t.Errorf("cluster %s ports %v, want the verifier's --grpc port %d", cluster, ports, want)
	}
}

// The Istio resources the examples use, with only the fields they may
// set: decoded strictly, a misspelt field is an error.
type (
	istioMesh struct {
		MeshConfig struct {
			ExtensionProviders []struct {
				Name              string `json:"name"`
				EnvoyExtAuthzGrpc *struct {
					Service                   string `json:"service"`
					Port                      uint32 `json:"port"`
					Timeout                   string `json:"timeout"`
					FailOpen                  bool   `json:"failOpen"`
					StatusOnError             string `json:"statusOnError"`
					IncludeRequestBodyInCheck any    `json:"includeRequestBodyInCheck"`
				} `json:"envoyExtAuthzGrpc"`
			} `json:"extensionProviders"`
		} `json:"meshConfig"`
	}
	istioMeta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
	}
	istioServiceEntry struct {
		istioMeta
		Spec struct {
			Hosts     []string `json:"hosts"`
			Endpoints []struct {
				Address string `json:"address"`
			} `json:"endpoints"`
			Ports []struct {
				Name     string `json:"name"`
				Number   uint32 `json:"number"`
				Protocol string `json:"protocol"`
			} `json:"ports"`
			Resolution string `json:"resolution"`
		} `json:"spec"`
	}
	istioAuthorizationPolicy struct {
		istioMeta
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Action   string `json:"action"`
			Provider struct {
				Name string `json:"name"`
			} `json:"provider"`
			Rules []map[string]any `json:"rules"`
		} `json:"spec"`
	}
)

// istioFiles decodes the Istio example strictly.
func istioFiles(t *testing.T) (istioMesh, *istioServiceEntry, *istioAuthorizationPolicy, *appsv1.Deployment) {
	t.Helper()
	strict := func(file string, doc []byte, v any) {
		t.Helper()
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	read := func(file string) []byte {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("istio", file))
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	var mesh istioMesh
	strict("extension-provider.yaml", read("extension-provider.yaml"), &mesh)
	var (
		se *istioServiceEntry
		ap *istioAuthorizationPolicy
	)
	for _, doc := range yamlDocs(read("authorization-policy.yaml")) {
		var m istioMeta
		strict("authorization-policy.yaml", doc, &struct {
			*istioMeta `json:",inline"`
			Spec       any `json:"spec"`
		}{istioMeta: &m})
		switch m.APIVersion + " " + m.Kind {
		case "networking.istio.io/v1 ServiceEntry":
			se = &istioServiceEntry{}
			strict("authorization-policy.yaml", doc, se)
		case "security.istio.io/v1 AuthorizationPolicy":
			ap = &istioAuthorizationPolicy{}
			strict("authorization-policy.yaml", doc, ap)
		default:
			t.Fatalf("authorization-policy.yaml: unexpected %s %s", m.APIVersion, m.Kind)
		}
	}
	if se == nil || ap == nil {
		t.Fatal("authorization-policy.yaml needs a ServiceEntry and an AuthorizationPolicy")
	}
	var dep appsv1.Deployment
	docs := yamlDocs(read("app-with-verifier.yaml"))
	if len(docs) != 1 {
		t.Fatalf("app-with-verifier.yaml: %d documents, want one Deployment", len(docs))
	}
	strict("app-with-verifier.yaml", docs[0], &dep)
	return mesh, se, ap, &dep
}

// TestIstio_ExtAuthzProvider: the mesh's extension provider, the
// ServiceEntry, the AuthorizationPolicy and the verifier container name
// one another: the policy's CUSTOM provider is the mesh's gRPC ext_authz
// provider, whose service and port are the ServiceEntry's, which points
// at the loopback port the pod's verifier serves gRPC on.
func TestIstio_ExtAuthzProvider(t *testing.T) {
	mesh, se, ap, dep := istioFiles(t)
	if ap.Spec.Action != "CUSTOM" {
		t.Errorf("AuthorizationPolicy action %q, want CUSTOM", ap.Spec.Action)
	}
	if len(ap.Spec.Rules) == 0 {
		t.Error("AuthorizationPolicy has no rule: CUSTOM applies to no request")
	}
	var found bool
	for _, p := range mesh.MeshConfig.ExtensionProviders {
		if p.Name != ap.Spec.Provider.Name {
			continue
		}
		found = true
		g := p.EnvoyExtAuthzGrpc
		if g == nil {
			t.Fatalf("extension provider %s is not envoyExtAuthzGrpc", p.Name)
		}
		if g.FailOpen {
			t.Error("failOpen: an unreachable verifier would let every request through")
		}
		if g.IncludeRequestBodyInCheck != nil {
			t.Error("includeRequestBodyInCheck: the verifier needs no body and bounds its requests")
		}
		if d, err := time.ParseDuration(g.Timeout); err != nil || d <= 0 || d > 5*time.Second {
			t.Errorf("timeout %q: want a short positive duration", g.Timeout)
		}
		if !slices.Contains(se.Spec.Hosts, g.Service) {
			t.Errorf("provider service %s is not the ServiceEntry's host %v", g.Service, se.Spec.Hosts)
		}
		if len(se.Spec.Ports) != 1 || se.Spec.Ports[0].Number != g.Port || se.Spec.Ports[0].Protocol != "GRPC" {
			t.Errorf("ServiceEntry ports %+v, want one GRPC port %d", se.Spec.Ports, g.Port)
		}
		if len(se.Spec.Endpoints) != 1 || se.Spec.Endpoints[0].Address != "127.0.0.1" || se.Spec.Resolution != "STATIC" {
			t.Errorf("ServiceEntry endpoints %+v resolution %s: want the pod's loopback, STATIC", se.Spec.Endpoints, se.Spec.Resolution)
		}
		grpcAddr := ""
		for _, c := range dep.Spec.Template.Spec.Containers {
			if len(c.Args) > 0 && c.Args[0] == "verifier" {
				for _, a := range c.Args {
					if v, ok := strings.CutPrefix(a, "--grpc="); ok {
						grpcAddr = v
					}
				}
			}
		}
		addr, err := netip.ParseAddrPort(grpcAddr)
		if err != nil || addr.Addr().String() != "127.0.0.1" || uint32(addr.Port()) != g.Port {
			t.Errorf("verifier --grpc=%q: want 127.0.0.1:%d, the provider's port on the pod's loopback", grpcAddr, g.Port)
		}
	}
	if !found {
		t.Fatalf("no extension provider %q in the mesh config", ap.Spec.Provider.Name)
	}
	labels := dep.Spec.Template.Labels
	for k, v := range ap.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("AuthorizationPolicy selects %s=%s, which the pods do not carry (%v)", k, v, labels)
		}
	}
	if len(ap.Spec.Selector.MatchLabels) == 0 {
		t.Error("AuthorizationPolicy selects no workload")
	}
	if ap.Metadata.Namespace != dep.Namespace || se.Metadata.Namespace != dep.Namespace {
		t.Errorf("namespaces: policy %s, service entry %s, deployment %s", ap.Metadata.Namespace, se.Metadata.Namespace, dep.Namespace)
	}
	bad := []byte("meshConfig:\n  extensionProviders:\n    - name: x\n      envoyExtAuthzGrpc: {service: a, port: 1, fail_open: true}\n")
	if err := yaml.UnmarshalStrict(bad, &istioMesh{}); err == nil {
		t.Fatal("strict decoding accepted a misspelt field")
	}
}

// TestIstio_VerifierFlagsExist: every flag the Istio example passes the
// verifier is one it has.
func TestIstio_VerifierFlagsExist(t *testing.T) {
	_, _, _, dep := istioFiles(t)
	known := flagsOf(t, "verifier")
	for _, c := range dep.Spec.Template.Spec.Containers {
		if !strings.Contains(c.Image, "herald") {
			continue
		}
		for _, a := range c.Args[1:] {
			name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !known[name] {
				t.Errorf("%s: herald verifier has no flag --%s", c.Name, name)
			}
		}
		for _, e := range c.Env {
			name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(e.Name, "HERALD_"), "_", "-"))
			if strings.HasPrefix(e.Name, "HERALD_") && !known[name] {
				t.Errorf("%s: %s names no flag of herald verifier", c.Name, e.Name)
			}
		}
	}
}

// TestExtAuthz_ServesTheConfiguredService: a real verifier's ext_authz
// server answers the method Envoy and Istio call by name,
// /envoy.service.auth.v3.Authorization/Check, and refuses a request
// without a token as the examples expect (401 with a challenge).
func TestExtAuthz_ServesTheConfiguredService(t *testing.T) {
	s := bustest.RunServer(t)
	conn := bustest.Setup(t, s, 20*time.Minute)
	sc, err := sidecar.Open(sidecar.Config{DataDir: t.TempDir(), NoListen: true, HeartbeatEvery: -1, Logger: quiet,
		Verifier: verifier.Config{Issuer: "https://auth.example.com", Audience: "herald"}}, conn)
	if err != nil {
		t.Fatal(err)
	}
	run(t, sc.Run, func() { sc.Close() })
	srv, err := extauthz.New(extauthz.Config{Verifier: sc.Verifier(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	run(t, func(ctx context.Context) error { return srv.Serve(ctx, ln) }, func() {})
	bustest.WaitFor(t, 10*time.Second, func() error {
		if !sc.Status().Verdicts {
			return fmt.Errorf("verifier gives no verdicts yet")
		}
		return nil
	})

	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Scheme: "https", Host: "app.example", Path: "/"}}}}
	var resp authv3.CheckResponse
	if err := cc.Invoke(t.Context(), "/"+authorizationService+"/Check", req, &resp); err != nil {
		t.Fatalf("call /%s/Check: %v", authorizationService, err)
	}
	d := resp.GetDeniedResponse()
	if codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated || d.GetStatus().GetCode() != 401 {
		t.Fatalf("no token: %v, want UNAUTHENTICATED and 401", &resp)
	}
	var challenge string
	for _, h := range d.GetHeaders() {
		if h.GetHeader().GetKey() == "www-authenticate" {
			challenge = h.GetHeader().GetValue()
		}
	}
	if challenge != `Bearer realm="herald"` {
		t.Errorf("www-authenticate %q, want the challenge of a request without a token", challenge)
	}
}
