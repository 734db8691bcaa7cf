package ssf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/heraldsec/herald/internal/jsonstrict"
)

// Delivery method URIs (SSF 1.0 section 6.1).
const (
	MethodPush = "urn:ietf:rfc:8935"
	MethodPoll = "urn:ietf:rfc:8936"
)

// Event type URIs Herald transmits.
const (
	EventSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	EventVerification   = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	EventStreamUpdated  = "https://schemas.openid.net/secevent/ssf/event-type/stream-updated"
)

// Stream statuses (SSF 1.0 section 8.1.2).
const (
	StatusEnabled  = "enabled"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

// Bounds on what a receiver may send.
const (
	MaxBodyBytes       = 64 << 10  // a management request body
	MaxDescription     = 1024      // bytes of a stream's description
	MaxEventsRequested = 64        // URIs in events_requested
	MaxURILen          = 2048      // an endpoint_url or event type URI
	MaxAuthorization   = 4096      // an authorization_header
	MaxStreamIDLen     = 64        // a stream_id
	MaxSubjectsBytes   = 256 << 10 // the subjects a stream lists, encoded
)

// EventsSupported is what Herald transmits, for every stream.
var EventsSupported = []string{EventSessionRevoked}

// Delivery is a stream's delivery method and its parameters.
type Delivery struct {
	Method      string `json:"method"`
	EndpointURL string `json:"endpoint_url,omitempty"`
	// AuthorizationHeader is sent with every push (Authorization). It is
	// a secret: kept, never shown again.
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// Stream is a stream's configuration as SSF 1.0 shows it (section 8.1.1).
type Stream struct {
	ID                      string   `json:"stream_id"`
	Issuer                  string   `json:"iss"`
	Audience                []string `json:"aud"`
	EventsSupported         []string `json:"events_supported"`
	EventsRequested         []string `json:"events_requested,omitempty"`
	EventsDelivered         []string `json:"events_delivered"`
	Delivery                Delivery `json:"delivery"`
	MinVerificationInterval int      `json:"min_verification_interval,omitempty"`
	Description             string   `json:"description,omitempty"`
}

// StreamRequest is what a receiver sent to create (POST), update (PATCH)
// or replace (PUT) a stream, read strictly. A nil member was absent.
type StreamRequest struct {
	ID              string
	EventsRequested *[]string
	Delivery        *Delivery
	Description     *string
	// transmitter-supplied members the receiver repeated, which must
	// match the stream's (CheckTransmitterSupplied)
	given map[string][]byte
}

// Members of a stream configuration a receiver may send. The
// receiver-supplied ones change the stream; the transmitter-supplied ones
// are only compared with the stream's (CheckTransmitterSupplied).
var (
	receiverMembers    = []string{"stream_id", "events_requested", "delivery", "description"}
	transmitterMembers = []string{"iss", "aud", "events_supported", "events_delivered", "min_verification_interval"}
	deliveryMembers    = []string{"method", "endpoint_url", "authorization_header"}
)

// ParseStreamRequest reads a create, update or replace body. It refuses,
// with an *Error (400 invalid_request) whose description names the
// member:
//
//   - a body over MaxBodyBytes, not a JSON object, with invalid UTF-8,
//     duplicate member names or names differing from a known one only
//     in case;
//   - a member that is not part of a stream configuration. SSF 1.0 asks
//     a transmitter to ignore unknown values inside events_requested
//     (they are kept, and never delivered), but says nothing of unknown
//     members: refusing them tells a receiver at once that Herald does
//     not do what it asked for (inactivity_timeout, another delivery
//     parameter) instead of leaving it to find out later;
//   - stream_id that is not 1 to MaxStreamIDLen letters, digits, '-'
//     or '_' (CheckStreamID);
//   - events_requested that is not an array of at most
//     MaxEventsRequested strings of 1 to MaxURILen bytes;
//   - delivery that is not an object with a string method and, as
//     strings, endpoint_url (at most MaxURILen bytes) and
//     authorization_header (at most MaxAuthorization bytes), and nothing
//     else (whether the method and endpoint are acceptable is
//     CheckDelivery's);
//   - description that is not a string of at most MaxDescription bytes;
//   - transmitter-supplied members of the wrong type: iss a string, aud
//     a string or an array of strings, events_supported and
//     events_delivered arrays of strings, min_verification_interval an
//     integer. Their values are compared by CheckTransmitterSupplied.
//
// A null value is refused like any other value of the wrong type.
func ParseStreamRequest(body []byte) (*StreamRequest, error) {
	if len(body) > MaxBodyBytes {
		return nil, badRequest("the body is %d bytes, more than %d", len(body), MaxBodyBytes)
	}
	known := append(slices.Clone(receiverMembers), transmitterMembers...)
	if err := jsonstrict.CheckMembers(body, known); err != nil {
		return nil, badRequest("stream configuration: %v", err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, badRequest("stream configuration is not a JSON object")
	}
	r := &StreamRequest{}
	for _, name := range slices.Sorted(maps.Keys(m)) { // the same error for the same body
		v := m[name]
		var err error
		switch name {
		case "stream_id":
			if err = decodeString(v, &r.ID); err == nil {
				err = CheckStreamID(r.ID)
			}
		case "events_requested":
			var l []string
			if l, err = decodeURIs(v); err == nil {
				r.EventsRequested = &l
			}
		case "delivery":
			r.Delivery, err = parseDelivery(v)
		case "description":
			var d string
			if err = decodeString(v, &d); err == nil && len(d) > MaxDescription {
				err = fmt.Errorf("is %d bytes, more than %d", len(d), MaxDescription)
			}
			r.Description = &d
		case "iss":
			var s string
			err = decodeString(v, &s)
		case "aud":
			_, err = decodeAudience(v)
		case "events_supported", "events_delivered":
			_, err = decodeURIs(v)
		case "min_verification_interval":
			var n int
			if isNull(v) || json.Unmarshal(v, &n) != nil {
				err = fmt.Errorf("must be an integer")
			}
		default:
			err = fmt.Errorf("is not a member of a stream configuration (known: %s)", strings.Join(known, ", "))
			name = strconv.Quote(truncate(name, 64))
		}
		if err != nil {
			return nil, badRequest("%s %v", name, err)
		}
		if slices.Contains(transmitterMembers, name) {
			if r.given == nil {
				r.given = make(map[string][]byte, len(transmitterMembers))
			}
			r.given[name] = v
		}
	}
	return r, nil
}

// CheckStreamID reports an error unless id can be a stream id: 1 to
// MaxStreamIDLen ASCII letters, digits, '-' or '_' (what a NATS subject
// token and a bucket key accept, RFC 3986 unreserved characters).
func CheckStreamID(id string) error {
	if id == "" || len(id) > MaxStreamIDLen {
		return fmt.Errorf("must be 1 to %d characters", MaxStreamIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("must hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// parseDelivery reads a delivery object: its members' types and sizes.
func parseDelivery(v json.RawMessage) (*Delivery, error) {
	if err := jsonstrict.CheckMembers(v, deliveryMembers); err != nil {
		return nil, fmt.Errorf("is invalid: %w", err)
	}
	var m map[string]json.RawMessage
	if isNull(v) || json.Unmarshal(v, &m) != nil {
		return nil, fmt.Errorf("must be an object")
	}
	d := &Delivery{}
	if _, ok := m["method"]; !ok {
		return nil, fmt.Errorf("method is required")
	}
	for _, name := range slices.Sorted(maps.Keys(m)) {
		v := m[name]
		var err error
		switch name {
		case "method":
			if err = decodeString(v, &d.Method); err == nil && (d.Method == "" || len(d.Method) > MaxURILen) {
				err = fmt.Errorf("must be 1 to %d bytes", MaxURILen)
			}
		case "endpoint_url":
			if err = decodeString(v, &d.EndpointURL); err == nil && len(d.EndpointURL) > MaxURILen {
				err = fmt.Errorf("is longer than %d bytes", MaxURILen)
			}
		case "authorization_header":
			if err = decodeString(v, &d.AuthorizationHeader); err == nil && len(d.AuthorizationHeader) > MaxAuthorization {
				err = fmt.Errorf("is longer than %d bytes", MaxAuthorization)
			}
		default:
			err = fmt.Errorf("is not a delivery parameter (known: %s)", strings.Join(deliveryMembers, ", "))
			name = strconv.Quote(truncate(name, 64))
		}
		if err != nil {
			return nil, fmt.Errorf("%s %w", name, err)
		}
	}
	return d, nil
}

// decodeString decodes the JSON string v into s.
func decodeString(v json.RawMessage, s *string) error {
	if isNull(v) || json.Unmarshal(v, s) != nil {
		return fmt.Errorf("must be a string")
	}
	return nil
}

// decodeURIs decodes an array of at most MaxEventsRequested event type
// URIs of 1 to MaxURILen bytes.
func decodeURIs(v json.RawMessage) ([]string, error) {
	var l []string
	if isNull(v) || json.Unmarshal(v, &l) != nil {
		return nil, fmt.Errorf("must be an array of strings")
	}
	if len(l) > MaxEventsRequested {
		return nil, fmt.Errorf("holds %d URIs, more than %d", len(l), MaxEventsRequested)
	}
	for _, u := range l {
		if u == "" || len(u) > MaxURILen {
			return nil, fmt.Errorf("must hold URIs of 1 to %d bytes", MaxURILen)
		}
	}
	if l == nil {
		l = []string{}
	}
	return l, nil
}

// decodeAudience decodes an aud: a string or an array of strings.
func decodeAudience(v json.RawMessage) ([]string, error) {
	var s string
	if !isNull(v) && json.Unmarshal(v, &s) == nil {
		return []string{s}, nil
	}
	var l []string
	if isNull(v) || json.Unmarshal(v, &l) != nil {
		return nil, fmt.Errorf("must be a string or an array of strings")
	}
	return l, nil
}

func isNull(v json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(v), []byte("null")) }

// truncate shortens s, which a receiver sent, to n bytes of valid UTF-8
// for an error description.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// CheckTransmitterSupplied reports an error if r repeats a
// transmitter-supplied member of cur (iss, aud, events_supported,
// events_delivered, min_verification_interval) with another value. The
// arrays are compared as sets; aud may be a string for a one-value
// audience. events_delivered is compared with cur as it is before the
// update (SSF 1.0 section 8.1.1.3).
//
// A poll delivery's endpoint_url is supplied by the transmitter too: when
// r's delivery is poll, its method cur's, and its endpoint_url cur's, the
// endpoint_url is removed from r.Delivery, so that a receiver may send
// back the configuration it read (SSF 1.0 section 8.1.1.4) and
// CheckDelivery, called next, accepts it. Any other endpoint_url on a poll
// delivery is left for CheckDelivery to refuse.
//
// cur nil stands for a stream being created: then any
// transmitter-supplied member is refused, there being nothing yet to
// match.
func (r *StreamRequest) CheckTransmitterSupplied(cur *Stream) error {
	for _, name := range transmitterMembers {
		v, ok := r.given[name]
		if !ok {
			continue
		}
		if cur == nil {
			return badRequest("%s is supplied by the transmitter: a request to create a stream cannot give it", name)
		}
		var same bool
		switch name {
		case "iss":
			var s string
			same = json.Unmarshal(v, &s) == nil && s == cur.Issuer
		case "aud":
			l, err := decodeAudience(v)
			same = err == nil && sameSet(l, cur.Audience)
		case "events_supported":
			var l []string
			same = json.Unmarshal(v, &l) == nil && sameSet(l, cur.EventsSupported)
		case "events_delivered":
			var l []string
			same = json.Unmarshal(v, &l) == nil && sameSet(l, cur.EventsDelivered)
		case "min_verification_interval":
			var n int
			same = json.Unmarshal(v, &n) == nil && n == cur.MinVerificationInterval
		}
		if !same {
			return badRequest("%s does not match the stream's: it is supplied by the transmitter and cannot be changed", name)
		}
	}
	if d := r.Delivery; d != nil && cur != nil && d.Method == MethodPoll && d.EndpointURL != "" &&
		cur.Delivery.Method == MethodPoll && d.EndpointURL == cur.Delivery.EndpointURL {
		d.EndpointURL = ""
	}
	return nil
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// CheckDelivery checks a delivery a receiver asked for: a known method;
// for push an https endpoint_url (http only to a loopback host), without
// user info or fragment; for poll no endpoint_url (the transmitter
// supplies it). It returns an *Error (400 invalid_request).
func CheckDelivery(d *Delivery) error {
	if d == nil {
		return badRequest("delivery is required")
	}
	switch d.Method {
	case MethodPush:
		if d.EndpointURL == "" {
			return badRequest("delivery endpoint_url is required for push delivery (%s)", MethodPush)
		}
		if err := checkEndpoint(d.EndpointURL); err != nil {
			return badRequest("delivery endpoint_url %v", err)
		}
	case MethodPoll:
		if d.EndpointURL != "" {
			return badRequest("delivery endpoint_url must not be given for poll delivery (%s): the transmitter supplies it", MethodPoll)
		}
		if d.AuthorizationHeader != "" {
			return badRequest("delivery authorization_header is only for push delivery (%s)", MethodPush)
		}
	default:
		return badRequest("delivery method %q is not supported (want %s or %s)", truncate(d.Method, 64), MethodPush, MethodPoll)
	}
	if !utf8.ValidString(d.AuthorizationHeader) || strings.ContainsFunc(d.AuthorizationHeader, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return badRequest("delivery authorization_header must not hold control characters")
	}
	return nil
}

// checkDelivery is CheckDelivery, and refuses a push endpoint on a
// loopback host unless Config.LoopbackPush.
func (t *Transmitter) checkDelivery(d *Delivery) error {
	if err := CheckDelivery(d); err != nil {
		return err
	}
	if d.Method != MethodPush || t.cfg.LoopbackPush {
		return nil
	}
	if u, err := url.Parse(d.EndpointURL); err == nil && isLoopback(u.Hostname()) {
		return badRequest("delivery endpoint_url must not be on a loopback host: this transmitter is not a development one")
	}
	return nil
}

// checkEndpoint checks a push endpoint_url: an absolute https URL, or
// http to a loopback host, without user info or fragment.
func checkEndpoint(raw string) error {
	if len(raw) > MaxURILen {
		return fmt.Errorf("is longer than %d bytes", MaxURILen)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("is not a URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("must be an https URL")
	case u.Host == "" || u.Hostname() == "" || u.Opaque != "":
		return fmt.Errorf("must be an absolute URL with a host")
	case u.User != nil:
		return fmt.Errorf("must not hold user information: send credentials in authorization_header")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("must not hold a fragment")
	case !validPort(u.Port()):
		return fmt.Errorf("port must be 1 to 65535")
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return fmt.Errorf("must be an https URL (http only to a loopback host)")
	}
	return nil
}

// validPort reports whether port, a URL's (digits, url.Parse checked),
// can be dialled: none (the scheme's), or 1 to 65535. Any other would
// fail every push, for ever.
func validPort(port string) bool {
	if port == "" {
		return true
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 1 && n <= 65535
}

// isLoopback reports whether host is localhost or a loopback address
// (127.0.0.0/8, ::1).
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Delivered returns events_delivered for a stream requesting requested:
// the supported events it asked for, or every supported event when it
// asked for none. The order is EventsSupported's; URIs Herald does not
// know are left out (SSF 1.0 section 8.1.1: a transmitter ignores them).
func Delivered(requested []string) []string {
	if len(requested) == 0 {
		return slices.Clone(EventsSupported)
	}
	out := []string{}
	for _, e := range EventsSupported {
		if slices.Contains(requested, e) {
			out = append(out, e)
		}
	}
	return out
}
