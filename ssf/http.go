package ssf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/heraldsec/herald/internal/httpserve"
	"github.com/heraldsec/herald/internal/jsonstrict"
)

// Scopes of the access tokens receivers call the management API with.
const (
	// ScopeManage allows every call: creating, changing and deleting
	// streams, their status and subjects, verification, and polling.
	ScopeManage = "ssf.manage"
	// ScopeRead allows reading stream configurations and statuses.
	ScopeRead = "ssf.read"
)

// Paths of the transmitter's endpoints, relative to the issuer URL.
const (
	ConfigurationPath = "/.well-known/ssf-configuration"
	JWKSPath          = "/ssf/jwks.json"
	StreamPath        = "/ssf/stream"
	StatusPath        = "/ssf/status"
	AddSubjectPath    = "/ssf/subjects:add"
	RemoveSubjectPath = "/ssf/subjects:remove"
	VerifyPath        = "/ssf/verify"
	// PollPath is followed by the stream id: the endpoint_url of a poll
	// stream (Transmitter.PollURL).
	PollPath = "/ssf/poll/"
)

// maxStreamIDLen bounds a stream id a request names; longer ones name no
// stream.
const maxStreamIDLen = 256

// maxJTILen bounds a jti a poll request acknowledges.
const maxJTILen = 256

// maxState bounds the state of a verification request, in bytes: it is
// echoed in a SET.
const maxState = 1024

// Configuration is the transmitter configuration metadata (SSF 1.0
// section 7.1) served at /.well-known/ssf-configuration.
type Configuration struct {
	SpecVersion              string                `json:"spec_version"`
	Issuer                   string                `json:"issuer"`
	JWKSURI                  string                `json:"jwks_uri"`
	DeliveryMethodsSupported []string              `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string                `json:"configuration_endpoint"`
	StatusEndpoint           string                `json:"status_endpoint"`
	AddSubjectEndpoint       string                `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint    string                `json:"remove_subject_endpoint"`
	VerificationEndpoint     string                `json:"verification_endpoint"`
	AuthorizationSchemes     []AuthorizationScheme `json:"authorization_schemes"`
	DefaultSubjects          string                `json:"default_subjects"`
}

// AuthorizationScheme is one member of authorization_schemes (SSF 1.0
// section 7.1.1).
type AuthorizationScheme struct {
	SpecURN string `json:"spec_urn"`
}

// Metadata returns the configuration metadata of the transmitter whose
// issuer URL is issuer, with default_subjects defaultSubjects
// (SubjectsAll when empty). Receivers authenticate with OAuth 2.0 access
// tokens (urn:ietf:rfc:6749) from the issuer's token endpoint.
func Metadata(issuer, defaultSubjects string) *Configuration {
	base := strings.TrimSuffix(issuer, "/")
	if defaultSubjects == "" {
		defaultSubjects = SubjectsAll
	}
	return &Configuration{
		SpecVersion:              "1_0",
		Issuer:                   issuer,
		JWKSURI:                  base + JWKSPath,
		DeliveryMethodsSupported: []string{MethodPush, MethodPoll},
		ConfigurationEndpoint:    base + StreamPath,
		StatusEndpoint:           base + StatusPath,
		AddSubjectEndpoint:       base + AddSubjectPath,
		RemoveSubjectEndpoint:    base + RemoveSubjectPath,
		VerificationEndpoint:     base + VerifyPath,
		AuthorizationSchemes:     []AuthorizationScheme{{SpecURN: "urn:ietf:rfc:6749"}},
		DefaultSubjects:          defaultSubjects,
	}
}

// Authenticator authenticates the caller of the management API and the
// poll endpoint: it returns the receiver (the client id of its access
// token) and the token's scopes. Its error is an *Error: 401 when the
// token is missing or not valid (Code "invalid_token" for a token that
// was sent, which WWW-Authenticate then names), 400 for a malformed
// request. Any other error is answered 503.
type Authenticator func(r *http.Request) (receiver string, scopes []string, err error)

// BearerToken returns the bearer token of r's Authorization header, for
// an Authenticator: a 401 *Error when there is none, a 400 one when the
// header is repeated or malformed.
func BearerToken(r *http.Request) (string, error) {
	h := r.Header.Values("Authorization")
	switch {
	case len(h) == 0:
		return "", &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Description: "a bearer access token is required"}
	case len(h) > 1:
		return "", badRequest("more than one Authorization header")
	}
	scheme, tok, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Description: "a bearer access token is required"}
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", badRequest("malformed bearer token")
	}
	return tok, nil
}

// handler serves the management API and the poll endpoint.
type handler struct {
	t      *Transmitter
	auth   Authenticator
	prefix string
	log    *slog.Logger
}

// NewHandler returns the HTTP face of t: the stream management API (SSF
// 1.0 section 8: StreamPath, StatusPath, AddSubjectPath,
// RemoveSubjectPath, VerifyPath) and the poll endpoint (PollPath + stream
// id, RFC 8936), served under the path of base (the issuer URL, or a path;
// "" serves them at the root). Every caller is authenticated by auth:
// reads need ScopeRead or ScopeManage, everything else ScopeManage. Every
// answer has Cache-Control: no-store; errors are JSON {"error",
// "error_description"}.
func NewHandler(t *Transmitter, auth Authenticator, base string) http.Handler {
	prefix := base
	if u, err := url.Parse(base); err == nil && u.Scheme != "" {
		prefix = u.Path
	}
	log := t.cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &handler{t: t, auth: auth, prefix: strings.TrimSuffix(prefix, "/"), log: log}
}

// route is one endpoint: what it answers for each method.
type route map[string]func(ctx context.Context, receiver string, r *http.Request, body []byte) (int, any, error)

func (h *handler) routes(path string) (route, string) {
	switch path {
	case StreamPath:
		return route{
			http.MethodGet:    h.getStream,
			http.MethodPost:   h.createStream,
			http.MethodPatch:  h.updateStream,
			http.MethodPut:    h.replaceStream,
			http.MethodDelete: h.deleteStream,
		}, ""
	case StatusPath:
		return route{http.MethodGet: h.getStatus, http.MethodPost: h.setStatus}, ""
	case AddSubjectPath:
		return route{http.MethodPost: h.addSubject}, ""
	case RemoveSubjectPath:
		return route{http.MethodPost: h.removeSubject}, ""
	case VerifyPath:
		return route{http.MethodPost: h.verify}, ""
	}
	if id, ok := strings.CutPrefix(path, PollPath); ok && id != "" && !strings.Contains(id, "/") {
		return route{http.MethodPost: h.poll}, id
	}
	return nil, ""
}

var errNoRoute = &Error{Status: http.StatusNotFound, Code: "not_found", Description: "no such endpoint"}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	path, ok := strings.CutPrefix(r.URL.Path, h.prefix)
	if !ok {
		h.writeError(w, r, errNoRoute)
		return
	}
	rt, pollID := h.routes(path)
	if rt == nil {
		h.writeError(w, r, errNoRoute)
		return
	}
	serve, ok := rt[r.Method]
	if !ok {
		w.Header().Set("Allow", allow(rt))
		h.writeError(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "invalid_request",
			Description: fmt.Sprintf("method %.16s is not allowed here", r.Method)})
		return
	}
	// An access token goes in the Authorization header only: in a URL it
	// ends up in logs and histories (RFC 6750 section 2.3 is a MAY; we
	// refuse), and bodies are JSON.
	if r.URL.Query().Has("access_token") {
		h.writeError(w, r, badRequest("access_token in the query string is refused; send it in the Authorization header"))
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data" {
		h.writeError(w, r, badRequest("form bodies are refused (an access_token goes in the Authorization header); bodies are JSON"))
		return
	}
	receiver, scopes, err := h.auth(r)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusUnauthorized {
			challenge := `Bearer realm="herald-ssf"`
			if e.Code == "invalid_token" {
				challenge += `, error="invalid_token"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
		}
		h.writeError(w, r, err)
		return
	}
	need := ScopeManage
	if r.Method == http.MethodGet {
		need = ScopeRead
	}
	if !hasScope(scopes, need) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="herald-ssf", error="insufficient_scope", scope="%s"`, need))
		h.writeError(w, r, &Error{Status: http.StatusForbidden, Code: "insufficient_scope",
			Description: fmt.Sprintf("the access token lacks the %s scope", need)})
		return
	}
	var body []byte
	if r.Method != http.MethodGet && r.Method != http.MethodDelete {
		create := path == StreamPath && r.Method == http.MethodPost
		if body, err = readBody(w, r, create); err != nil {
			h.writeError(w, r, err)
			return
		}
	}
	if pollID != "" {
		r.SetPathValue("stream_id", pollID)
	}
	status, out, err := serve(r.Context(), receiver, r, body)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if out == nil {
		w.WriteHeader(status)
		return
	}
	httpserve.WriteJSON(w, status, out)
}

// hasScope reports whether scopes allow need: ScopeManage allows reads.
func hasScope(scopes []string, need string) bool {
	for _, s := range scopes {
		if s == need || s == ScopeManage {
			return true
		}
	}
	return false
}

func allow(rt route) string {
	var ms []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete} {
		if _, ok := rt[m]; ok {
			ms = append(ms, m)
		}
	}
	return strings.Join(ms, ", ")
}

// readBody reads a JSON body of at most MaxBodyBytes. When emptyOK (a
// create request), no body at all stands for {}: a poll stream of every
// event.
func readBody(w http.ResponseWriter, r *http.Request, emptyOK bool) ([]byte, error) {
	ctype := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ctype); ctype != "" && (err != nil || mt != "application/json") {
		return nil, errMediaType
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request",
				Description: fmt.Sprintf("body larger than %d bytes", MaxBodyBytes)}
		}
		return nil, badRequest("the body could not be read")
	}
	switch {
	case ctype != "":
		return b, nil
	case emptyOK && len(b) == 0:
		return []byte("{}"), nil
	}
	return nil, errMediaType
}

var errMediaType = &Error{Status: http.StatusUnsupportedMediaType, Code: "invalid_request", Description: "the body must be application/json"}

// decodeStrict decodes the JSON object b into v, refusing unknown,
// duplicate and case-variant members and trailing data.
func decodeStrict(b []byte, v any) error {
	if err := jsonstrict.CheckObject(b, v); err != nil {
		return badRequest("the body is not valid JSON for this endpoint: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("the body is not valid JSON for this endpoint: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the body has data after the JSON object")
	}
	return nil
}

// queryStreamID returns the one stream_id query parameter of r; "" when
// absent.
func queryStreamID(r *http.Request) (string, error) {
	v := r.URL.Query()["stream_id"]
	switch {
	case len(v) > 1:
		return "", badRequest("stream_id is repeated")
	case len(v) == 0:
		return "", nil
	case v[0] == "":
		return "", badRequest("stream_id is empty")
	case len(v[0]) > maxStreamIDLen:
		return "", errNotFound
	}
	return v[0], nil
}

// requireStreamID is queryStreamID for a parameter that is required.
func requireStreamID(r *http.Request) (string, error) {
	id, err := queryStreamID(r)
	if err == nil && id == "" {
		err = badRequest("the stream_id query parameter is required")
	}
	return id, err
}

// checkStreamID checks a stream_id member of a body.
func checkStreamID(id string) error {
	switch {
	case id == "":
		return badRequest("stream_id is required")
	case len(id) > maxStreamIDLen:
		return errNotFound
	}
	return nil
}

func (h *handler) getStream(ctx context.Context, receiver string, r *http.Request, _ []byte) (int, any, error) {
	id, err := queryStreamID(r)
	if err != nil {
		return 0, nil, err
	}
	if id != "" {
		s, err := h.t.Get(ctx, receiver, id)
		return http.StatusOK, s, err
	}
	list, err := h.t.List(ctx, receiver)
	if list == nil {
		list = []Stream{}
	}
	return http.StatusOK, list, err
}

func (h *handler) parseStream(body []byte) (*StreamRequest, error) {
	req, err := ParseStreamRequest(body)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, badRequest("%v", err)
	}
	return req, nil
}

func (h *handler) createStream(ctx context.Context, receiver string, _ *http.Request, body []byte) (int, any, error) {
	req, err := h.parseStream(body)
	if err != nil {
		return 0, nil, err
	}
	if req.ID != "" {
		return 0, nil, badRequest("stream_id is supplied by the transmitter")
	}
	s, err := h.t.Create(ctx, receiver, req)
	return http.StatusCreated, s, err
}

func (h *handler) updateStream(ctx context.Context, receiver string, r *http.Request, body []byte) (int, any, error) {
	return h.changeStream(ctx, receiver, body, false)
}

func (h *handler) replaceStream(ctx context.Context, receiver string, r *http.Request, body []byte) (int, any, error) {
	return h.changeStream(ctx, receiver, body, true)
}

func (h *handler) changeStream(ctx context.Context, receiver string, body []byte, replace bool) (int, any, error) {
	req, err := h.parseStream(body)
	if err != nil {
		return 0, nil, err
	}
	if err := checkStreamID(req.ID); err != nil {
		return 0, nil, err
	}
	s, err := h.t.Update(ctx, receiver, req, replace)
	return http.StatusOK, s, err
}

func (h *handler) deleteStream(ctx context.Context, receiver string, r *http.Request, _ []byte) (int, any, error) {
	id, err := requireStreamID(r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, h.t.Delete(ctx, receiver, id)
}

func (h *handler) getStatus(ctx context.Context, receiver string, r *http.Request, _ []byte) (int, any, error) {
	id, err := requireStreamID(r)
	if err != nil {
		return 0, nil, err
	}
	st, err := h.t.Status(ctx, receiver, id)
	return http.StatusOK, st, err
}

func (h *handler) setStatus(ctx context.Context, receiver string, _ *http.Request, body []byte) (int, any, error) {
	var st StreamStatus
	if err := decodeStrict(body, &st); err != nil {
		return 0, nil, err
	}
	if err := checkStreamID(st.ID); err != nil {
		return 0, nil, err
	}
	if err := CheckStatus(st.Status, st.Reason); err != nil {
		return 0, nil, err
	}
	out, err := h.t.SetStatus(ctx, receiver, st)
	return http.StatusOK, out, err
}

// CheckStatus checks a status and reason asked for by a receiver or an
// operator: one of StatusEnabled, StatusPaused, StatusDisabled, and a
// reason of at most MaxDescription bytes.
func CheckStatus(status, reason string) error {
	switch status {
	case StatusEnabled, StatusPaused, StatusDisabled:
	case "":
		return badRequest("status is required")
	default:
		return badRequest("status %.32q is not enabled, paused or disabled", status)
	}
	if len(reason) > MaxDescription {
		return badRequest("reason is longer than %d bytes", MaxDescription)
	}
	return nil
}

// subjectRequest is the body of an add or remove subject request.
type subjectRequest struct {
	StreamID string          `json:"stream_id"`
	Subject  json.RawMessage `json:"subject"`
}

// addSubjectRequest is the body of an add subject request.
type addSubjectRequest struct {
	StreamID string          `json:"stream_id"`
	Subject  json.RawMessage `json:"subject"`
	Verified *bool           `json:"verified"`
}

func parseSubjectRequest(id string, raw json.RawMessage) (Subject, error) {
	if err := checkStreamID(id); err != nil {
		return Subject{}, err
	}
	if len(raw) == 0 || string(raw) == "null" {
		return Subject{}, badRequest("subject is required")
	}
	sub, err := ParseSubject(raw)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return Subject{}, e
		}
		return Subject{}, badRequest("subject: %v", err)
	}
	return sub, nil
}

func (h *handler) addSubject(ctx context.Context, receiver string, _ *http.Request, body []byte) (int, any, error) {
	var req addSubjectRequest
	if err := decodeStrict(body, &req); err != nil {
		return 0, nil, err
	}
	sub, err := parseSubjectRequest(req.StreamID, req.Subject)
	if err != nil {
		return 0, nil, err
	}
	// verified is read and not used: Herald matches subjects, it does
	// not look them up.
	return http.StatusOK, nil, h.t.AddSubject(ctx, receiver, req.StreamID, sub)
}

func (h *handler) removeSubject(ctx context.Context, receiver string, _ *http.Request, body []byte) (int, any, error) {
	var req subjectRequest
	if err := decodeStrict(body, &req); err != nil {
		return 0, nil, err
	}
	sub, err := parseSubjectRequest(req.StreamID, req.Subject)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, h.t.RemoveSubject(ctx, receiver, req.StreamID, sub)
}

// verifyRequest is the body of a verification request.
type verifyRequest struct {
	StreamID string `json:"stream_id"`
	State    string `json:"state"`
}

func (h *handler) verify(ctx context.Context, receiver string, _ *http.Request, body []byte) (int, any, error) {
	var req verifyRequest
	if err := decodeStrict(body, &req); err != nil {
		return 0, nil, err
	}
	if err := checkStreamID(req.StreamID); err != nil {
		return 0, nil, err
	}
	if len(req.State) > maxState {
		return 0, nil, badRequest("state is longer than %d bytes", maxState)
	}
	return http.StatusNoContent, nil, h.t.Verify(ctx, receiver, req.StreamID, req.State)
}

func (h *handler) poll(ctx context.Context, receiver string, r *http.Request, body []byte) (int, any, error) {
	id := r.PathValue("stream_id")
	if len(id) > maxStreamIDLen {
		return 0, nil, errNotFound
	}
	req, err := ParsePollRequest(body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := h.t.Poll(ctx, receiver, id, req)
	if err != nil {
		return 0, nil, err
	}
	if resp.Sets == nil {
		resp.Sets = map[string]string{}
	}
	return http.StatusOK, resp, nil
}

// ParsePollRequest reads an RFC 8936 poll request: duplicate and
// case-variant members are refused, other members ignored (RFC 8936
// leaves room for extensions); maxEvents must not be negative and is
// lowered to MaxPollEvents; ack and setErrs name non-empty jtis of at
// most 256 bytes.
func ParsePollRequest(body []byte) (*PollRequest, error) {
	var req PollRequest
	if err := jsonstrict.CheckObject(body, &req); err != nil {
		return nil, badRequest("the poll request is not valid JSON: %v", err)
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("the poll request is not valid JSON: %v", err)
	}
	if req.MaxEvents != nil {
		if *req.MaxEvents < 0 {
			return nil, badRequest("maxEvents must not be negative")
		}
		if *req.MaxEvents > MaxPollEvents {
			n := MaxPollEvents
			req.MaxEvents = &n
		}
	}
	for _, jti := range req.Ack {
		if jti == "" || len(jti) > maxJTILen {
			return nil, badRequest("ack holds an empty or over-long jti")
		}
	}
	for jti := range req.SetErrs {
		if jti == "" || len(jti) > maxJTILen {
			return nil, badRequest("setErrs holds an empty or over-long jti")
		}
	}
	return &req, nil
}

// writeError answers err: an *Error as it is, anything else as 503
// temporarily_unavailable, logged (never a token or a body).
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			return // the caller went away: nobody to answer
		}
		h.log.Error("ssf request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		e = &Error{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable",
			Description: "the transmitter could not serve the request; retry"}
	} else if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1") // starting, or catching up: soon
	} else if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
	}
	httpserve.WriteJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
}
