package bus_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
)

// TestRefreshRelay_BucketBounded: HERALD_BFF has byte, entry and value-size limits
// by default, and a verifier credential that fills it is refused once it
// is full, while revocations still flow through HERALD on the same store.
func TestRefreshRelay_BucketBounded(t *testing.T) {
	s, files := bustest.RunSecureServer(t)
	iss := bustest.ConnectAs(t, s, files, bus.RoleIssuer)
	if err := iss.EnsureStreams(t.Context(), bus.StreamConfig{RevocationMaxAge: bustest.RevocationMaxAge}); err != nil {
		t.Fatal(err)
	}
	if err := iss.EnsureRefreshRelay(t.Context(), bus.RefreshRelayConfig{}); err != nil {
		t.Fatal(err)
	}
	st, err := iss.JetStream().Stream(t.Context(), "KV_"+bus.BucketRefreshRelay)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxBytes != bus.DefaultRefreshRelayMaxBytes || cfg.MaxMsgs != bus.DefaultRefreshRelayMaxEntries || cfg.MaxMsgSize != bus.MaxRefreshRelayEntry || cfg.MaxMsgsPerSubject != 1 {
		t.Fatalf("HERALD_BFF limits: %d bytes, %d entries, %d bytes an entry, history %d; want %d, %d, %d, 1",
			cfg.MaxBytes, cfg.MaxMsgs, cfg.MaxMsgSize, cfg.MaxMsgsPerSubject, bus.DefaultRefreshRelayMaxBytes, bus.DefaultRefreshRelayMaxEntries, bus.MaxRefreshRelayEntry)
	}

	// Smaller limits, to fill it quickly.
	const maxBytes, maxEntries = 256 << 10, 1000
	if err := iss.EnsureRefreshRelay(t.Context(), bus.RefreshRelayConfig{MaxBytes: maxBytes, MaxEntries: maxEntries}); err != nil {
		t.Fatal(err)
	}
	v := bustest.ConnectAs(t, s, files, bus.RoleVerifier)
	kv, err := v.RefreshRelay(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), "too-large", make([]byte, bus.MaxRefreshRelayEntry+1)); err == nil {
		t.Fatal("an entry larger than MaxRefreshRelayEntry was stored")
	}
	junk := bytes.Repeat([]byte("j"), bus.MaxRefreshRelayEntry-512)
	written := 0
	for ; written < 10*maxBytes/len(junk); written++ {
		if _, err := kv.Create(t.Context(), fmt.Sprintf("junk-%d", written), junk); err != nil {
			t.Logf("refused after %d entries: %v", written, err)
			break
		}
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Bytes > maxBytes || written > maxBytes/len(junk) {
		t.Fatalf("the verifier stored %d entries, %d bytes, in a bucket of %d bytes", written, info.State.Bytes, maxBytes)
	}
	for i := range maxEntries + 10 {
		if _, err := kv.Create(t.Context(), fmt.Sprintf("tiny-%d", i), []byte("x")); err != nil {
			break
		}
	}
	if info, err = st.Info(t.Context()); err != nil || info.State.Msgs > maxEntries {
		t.Fatalf("the verifier stored %d entries in a bucket of %d: %v", info.State.Msgs, maxEntries, err)
	}

	// Revocations still flow.
	col, stop := bustest.Follow(t, v, 0)
	defer stop()
	seq := bustest.Publish(t, iss, bustest.Revocation("jti-after-the-flood"))[0]
	if got := col.WaitLen(t, int(seq)); got[len(got)-1].Seq != seq {
		t.Fatalf("the follower got up to %d, want %d", got[len(got)-1].Seq, seq)
	}
}
