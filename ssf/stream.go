package ssf

import "errors"

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
	MaxBodyBytes       = 64 << 10 // a management request body
	MaxDescription     = 1024     // bytes of a stream's description
	MaxEventsRequested = 64       // URIs in events_requested
	MaxURILen          = 2048     // an endpoint_url or event type URI
	MaxAuthorization   = 4096     // an authorization_header
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

// ParseStreamRequest reads a create, update or replace body.
func ParseStreamRequest(body []byte) (*StreamRequest, error) {
	return nil, errors.New("ssf: not implemented")
}

// CheckTransmitterSupplied reports an error if r repeats a
// transmitter-supplied member of cur (iss, aud, events_supported,
// events_delivered, min_verification_interval) with another value.
func (r *StreamRequest) CheckTransmitterSupplied(cur *Stream) error {
	return errors.New("ssf: not implemented")
}

// CheckDelivery checks a delivery a receiver asked for: a known method;
// for push an https endpoint_url (http only to a loopback host), without
// user info or fragment; for poll no endpoint_url (the transmitter
// supplies it).
func CheckDelivery(d *Delivery) error {
	return errors.New("ssf: not implemented")
}

// Delivered returns events_delivered for a stream requesting requested:
// the supported events it asked for, or every supported event when it
// asked for none.
func Delivered(requested []string) []string {
	return nil
}
