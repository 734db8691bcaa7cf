package bus

import (
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
)

// refusalHandlers log why NATS refuses a connection (authorization, TLS,
// a server that is down) and the operations it denies (permissions
// violations), which nats.go otherwise reports to no one: a retrying
// client would only see its requests time out. Each distinct error is
// logged once in a row, so a server that stays down is not a log flood.
func (cfg *Config) refusalHandlers() []nats.Option {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "bus")
	var (
		mu   sync.Mutex
		last string
	)
	report := func(msg string, err error) {
		if err == nil {
			return
		}
		mu.Lock()
		repeated := err.Error() == last
		last = err.Error()
		mu.Unlock()
		if !repeated {
			log.Warn(msg, "err", err)
		}
	}
	return []nats.Option{
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { report("nats connection failed; retrying", err) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { report("nats error", err) }),
	}
}
