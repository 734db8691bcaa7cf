package ssf

import (
	"context"
	"errors"
)

// MaxPollEvents bounds maxEvents of a poll request.
const MaxPollEvents = 256

// PollRequest is an RFC 8936 poll request.
type PollRequest struct {
	// MaxEvents is the most SETs to return; nil: the transmitter's
	// choice; 0: none (an acknowledgement only).
	MaxEvents *int `json:"maxEvents,omitempty"`
	// ReturnImmediately: answer at once even with no SET.
	ReturnImmediately bool `json:"returnImmediately,omitempty"`
	// Ack lists the jtis of SETs the receiver processed.
	Ack []string `json:"ack,omitempty"`
	// SetErrs lists the SETs the receiver refused, by jti.
	SetErrs map[string]SetErr `json:"setErrs,omitempty"`
}

// SetErr is a receiver's refusal of one SET (RFC 8936 section 2.4.4).
type SetErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// PollResponse is an RFC 8936 poll response.
type PollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable,omitempty"`
}

// Poll answers a poll of receiver's poll stream id: it records the
// acknowledgements and errors, then returns up to MaxEvents SETs, waiting
// up to wait for one unless ReturnImmediately.
func (t *Transmitter) Poll(ctx context.Context, receiver Receiver, id string, req *PollRequest) (*PollResponse, error) {
	return nil, errors.New("ssf: not implemented")
}
