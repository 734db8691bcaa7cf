package issuer_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/verifier"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// TestSkew_FastIssuerClockRevokesMoreNotLess runs an issuer whose clock
// is 45 s ahead of its verifier's, more than the verifiers' leeway. A
// token issued just before a subject revocation is refused once the
// verifier has applied it: the revocation's time is not pulled back to
// the verifier's clock.
func TestSkew_FastIssuerClockRevokesMoreNotLess(t *testing.T) {
	srv := bustest.RunServer(t)
	const ahead = 45 * time.Second
	svc, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{Now: func() time.Time { return time.Now().Add(ahead) }})
	sc, err := sidecar.Open(sidecar.Config{
		// The verifier's clock catches up enough for the token's iat to be within leeway.
		Verifier: verifier.Config{Issuer: svc.IssuerURL(), Audience: issuer.DefaultAudience,
			Now: func() time.Time { return time.Now().Add(20 * time.Second) }},
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet,
	}, bustest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })
	waitReady(t, sc)

	sess := createSession(t, svc, issuer.SessionRequest{Subject: "mallory"})
	bustest.WaitFor(t, 5*time.Second, func() error { return wantVerdict(t, sc, sess.AccessToken, 200, "") })
	res := revoke(t, svc, "subject", "mallory")
	if err := sc.WaitApplied(t.Context(), res.Seq); err != nil {
		t.Fatal(err)
	}
	if code, reason := verify(t, sc, sess.AccessToken); code != 401 {
		t.Fatalf("token issued before the revocation by an issuer %s ahead: %d %s, want 401 revoked", ahead, code, reason)
	}
}

// TestSkew_SessionOfFastReplicaIsCovered: replica a's clock is 45 s ahead
// of replica b's. A session a creates and b's subject revocation then
// covers is refused on both, though a dated it after the revocation.
func TestSkew_SessionOfFastReplicaIsCovered(t *testing.T) {
	srv := bustest.RunServer(t)
	var offset atomic.Int64
	offset.Store(int64(45 * time.Second))
	a, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	b, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{})
	sess := createSession(t, a, issuer.SessionRequest{Subject: "mallory"})
	revoke(t, b, "subject", "mallory")
	for i, on := range []*issuer.Service{a, b} {
		if r := refreshAt(t, on, sess.RefreshToken, "", "", ""); r.code != 400 || r.err != "invalid_grant" {
			t.Errorf("refresh on %s of a session created by the fast replica before the revocation: %v, want invalid_grant",
				[]string{"a", "b"}[i], r)
		}
	}
	later := createSession(t, b, issuer.SessionRequest{Subject: "mallory"})
	if r := refreshAt(t, a, later.RefreshToken, "", "", ""); r.code != http.StatusOK {
		t.Fatalf("refresh of a session created after the revocation: %v", r)
	}
}

// TestSkew_MeasuredAndShown runs an issuer whose clock is 10 s ahead and
// a verifier whose clock is right: /v1/verifiers shows the verifier's
// clock 10 s behind the issuer's, and the issuer warns of it. A verifier
// whose clock is 10 s behind the NATS server's warns too.
func TestSkew_MeasuredAndShown(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out clock-skew reports: skipped under -short")
	}
	srv := bustest.RunServer(t)
	logs := &logRecords{}
	const ahead = 10 * time.Second
	svc, _ := runIssuerOn(t, bustest.Connect(t, srv), issuer.Config{Logger: slog.New(logs),
		Now: func() time.Time { return time.Now().Add(ahead) }})
	sc, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: svc.IssuerURL(), Audience: issuer.DefaultAudience},
		DataDir:  t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: quiet, HeartbeatEvery: 50 * time.Millisecond,
	}, bustest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, sc.Run, func() { sc.Close() })

	bustest.WaitFor(t, 10*time.Second, func() error {
		code, body := call(t, "GET", svc.URL()+"/v1/verifiers", adminToken, nil)
		var out struct {
			ClockOffsetMS *int64 `json:"clock_offset_ms"`
			Verifiers     []struct {
				ID          string `json:"id"`
				ClockSkewMS *int64 `json:"clock_skew_ms"`
			} `json:"verifiers"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
			return fmt.Errorf("GET /v1/verifiers: %d %s", code, body)
		}
		if out.ClockOffsetMS == nil || (time.Duration(*out.ClockOffsetMS)*time.Millisecond-ahead).Abs() > time.Second {
			return fmt.Errorf("issuer clock offset %v, want about %s: %s", out.ClockOffsetMS, ahead, body)
		}
		for _, v := range out.Verifiers {
			if v.ID == sc.ID() && v.ClockSkewMS != nil {
				if skew := time.Duration(*v.ClockSkewMS) * time.Millisecond; (skew + ahead).Abs() > time.Second {
					return fmt.Errorf("verifier skew %s, want about -%s", skew, ahead)
				}
				return nil
			}
		}
		return fmt.Errorf("verifier %s with a clock skew not listed: %s", sc.ID(), body)
	})
	bustest.WaitFor(t, 15*time.Second, func() error {
		if _, ok := logs.find(func(r map[string]any) bool {
			return strings.HasPrefix(r["msg"].(string), "CLOCK SKEW: verifiers'") && r["worst"] == sc.ID()
		}); !ok {
			return fmt.Errorf("no clock skew warning naming verifier %s", sc.ID())
		}
		return nil
	})

	vlogs := &logRecords{}
	slow, err := sidecar.Open(sidecar.Config{
		Verifier: verifier.Config{Issuer: svc.IssuerURL(), Audience: issuer.DefaultAudience,
			Now: func() time.Time { return time.Now().Add(-10 * time.Second) }},
		DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Logger: slog.New(vlogs), HeartbeatEvery: 50 * time.Millisecond,
	}, bustest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	bustest.RunUntilStopped(t, slow.Run, func() { slow.Close() })
	bustest.WaitFor(t, 10*time.Second, func() error {
		if _, ok := vlogs.find(func(r map[string]any) bool {
			return strings.HasPrefix(r["msg"].(string), "CLOCK SKEW: this verifier's clock")
		}); !ok {
			return fmt.Errorf("the slow verifier has not warned of its clock")
		}
		return nil
	})
}
