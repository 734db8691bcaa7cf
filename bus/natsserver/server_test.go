package natsserver_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
)

func TestServer_SyncAlways(t *testing.T) {
	s := bustest.RunServer(t)
	if !s.NATS().JetStreamEnabled() {
		t.Fatal("JetStream is not enabled")
	}
	jsc := s.NATS().JetStreamConfig()
	if jsc == nil {
		t.Fatal("JetStreamConfig() = nil")
	}
	if !jsc.SyncAlways {
		t.Fatalf("JetStream SyncAlways = false (sync interval %v), want true", jsc.SyncInterval)
	}
}

func TestStart(t *testing.T) {
	t.Run("port 0", func(t *testing.T) {
		s, err := natsserver.Start(t.Context(), natsserver.Config{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		defer s.Shutdown()
		addr, ok := s.Addr().(*net.TCPAddr)
		if !ok {
			t.Fatalf("Addr() = %T %v, want a *net.TCPAddr", s.Addr(), s.Addr())
		}
		if addr.Port == 0 {
			t.Fatalf("Addr() = %v, want a real port", addr)
		}
		if !addr.IP.IsLoopback() {
			t.Errorf("Addr() = %v, want loopback", addr)
		}
		if got, want := s.ClientURL(), fmt.Sprintf("nats://127.0.0.1:%d", addr.Port); got != want {
			t.Errorf("ClientURL() = %q, want %q", got, want)
		}
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatalf("dial %v: %v", addr, err)
		}
		conn.Close()
		s.Shutdown()
		s.Shutdown() // twice is fine
	})

	for _, listen := range []string{"localhost", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:65536", "127.0.0.1:-1", ":::1"} {
		t.Run("bad listen "+listen, func(t *testing.T) {
			s, err := natsserver.Start(t.Context(), natsserver.Config{Listen: listen, StoreDir: t.TempDir()})
			if err == nil {
				s.Shutdown()
				t.Fatalf("Start(%q) succeeded on %v, want an error", listen, s.Addr())
			}
			if !strings.Contains(err.Error(), listen) {
				t.Errorf("error %q does not name the address %q", err, listen)
			}
		})
	}

	t.Run("port in use", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		s, err := natsserver.Start(ctx, natsserver.Config{Listen: l.Addr().String(), StoreDir: t.TempDir()})
		if err == nil {
			s.Shutdown()
			t.Fatalf("Start on a port in use succeeded")
		}
	})

	t.Run("store dir required", func(t *testing.T) {
		s, err := natsserver.Start(t.Context(), natsserver.Config{Listen: "127.0.0.1:0"})
		if err == nil {
			s.Shutdown()
			t.Fatal("Start without StoreDir succeeded, want an error")
		}
	})
}
