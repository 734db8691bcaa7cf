// Package httpserve runs Herald's HTTP servers (the issuer's and the
// verifier sidecar's) with one set of bounds on slow clients and a
// graceful shutdown when the context ends.
package httpserve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Timeouts of Herald's HTTP servers: every server bounds slow clients.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 120 * time.Second
	shutdownTimeout   = 10 * time.Second
	// MaxHeaderBytes bounds request headers on Herald's HTTP servers.
	MaxHeaderBytes = 32 << 10
)

// Timeouts bound the slow clients of an HTTP server Serve runs. A zero
// field takes Herald's default: 5 s for the header, 15 s for the whole
// request, 30 s for the response, 120 s idle.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	pick := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d
	}
	return Timeouts{pick(t.ReadHeader, readHeaderTimeout), pick(t.Read, readTimeout), pick(t.Write, writeTimeout), pick(t.Idle, idleTimeout)}
}

// Serve serves h on ln until ctx ends, then shuts down gracefully, waiting
// up to ten seconds for requests in flight. The issuer and the sidecar
// both use it, so both servers share one set of timeouts. It returns the
// server's error, or nil after a clean shutdown.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	return ServeWith(ctx, ln, h, Timeouts{})
}

// ServeWith is Serve with other timeouts (zero fields keep the defaults).
// It returns as Serve does.
func ServeWith(ctx context.Context, ln net.Listener, h http.Handler, t Timeouts) error {
	t = t.withDefaults()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    MaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("shut down http on %s: %w", ln.Addr(), err)
	}
	return nil
}

// WriteJSON answers with status code and v encoded as JSON. An encoding
// error means the client went away: there is nothing left to tell it.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
