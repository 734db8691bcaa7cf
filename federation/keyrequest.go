package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/heraldsec/herald/bus"
)

// maxKeyRequest bounds a key request message, in bytes.
const maxKeyRequest = 1 << 10

// Outcomes of key requests, for the metrics.
const (
	requestRefresh   = "refresh"   // a refresh was prompted
	requestLimited   = "limited"   // the issuer was refreshed too recently
	requestKnown     = "known"     // the kid is in the last key set
	requestUntrusted = "untrusted" // not a trusted token issuer
	requestMalformed = "malformed" // not a KeyRequest
)

// subscribe answers key requests from verifiers, one replica each (queue
// group QueueGroup), until the subscription ends.
func (f *Federation) subscribe() (*nats.Subscription, error) {
	sub, err := f.cfg.Conn.NATS().QueueSubscribe(bus.SubjectKeyRequest, QueueGroup, func(m *nats.Msg) {
		f.keyRequest(m.Data)
	})
	if err != nil {
		return nil, fmt.Errorf("federation: subscribe to %s: %w", bus.SubjectKeyRequest, err)
	}
	// The server has the subscription once this returns; if the bus is
	// down, the client subscribes again when it reconnects.
	_ = f.cfg.Conn.NATS().FlushTimeout(5 * time.Second)
	return sub, nil
}

// keyRequest handles one key request: a verifier met a kid it does not
// hold for a trusted issuer. It prompts a refresh of that issuer unless
// the kid is known already or the issuer was refreshed too recently. Its
// state is the configured issuers' only, so requests naming others grow
// nothing.
func (f *Federation) keyRequest(data []byte) {
	f.requests.Add(1)
	outcome := f.keyRequestOutcome(data)
	f.metrics.keyRequest(context.Background(), outcome)
}

func (f *Federation) keyRequestOutcome(data []byte) string {
	if len(data) > maxKeyRequest {
		return requestMalformed
	}
	var r bus.KeyRequest
	if err := json.Unmarshal(data, &r); err != nil || r.Kid == "" || len(r.Kid) > bus.MaxValueLen {
		return requestMalformed
	}
	st, ok := f.byURL[r.Issuer]
	if !ok || !st.cfg.Tokens {
		return requestUntrusted
	}
	if _, ok := st.find(r.Kid); ok {
		return requestKnown
	}
	if !f.prompt(st) {
		return requestLimited
	}
	return requestRefresh
}
