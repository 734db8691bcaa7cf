package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/bustest"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/internal/doctor"
)

// TestDoctor_Dev runs herald doctor against herald dev with the
// dashboard's credential: every finding is ok but the servers' sync
// setting, which only their monitoring endpoint shows, so it exits 2; its
// --json output parses. A credential NATS refuses exits 1 with the fix.
func TestDoctor_Dev(t *testing.T) {
	dir := t.TempDir()
	issuerURL, _, logs := startDev(t, dir)
	m := regexp.MustCompile(`nats=(\S+) admin_token=(\S+)`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no nats URL and admin token file in:\n%s", logs)
	}
	files := natsserver.AuthFiles{Dir: filepath.Join(dir, natsserver.AuthDir)}
	args := []string{"doctor", "--nats", m[1], "--nats-nkey", files.SeedFile(bus.RoleDashboard), "--nats-ca", files.CAFile(),
		"--issuer-url", issuerURL, "--admin-token-file", m[2], "--expect-verifiers", "1"}

	var findings []doctor.Finding
	bustest.WaitFor(t, 20*time.Second, func() error {
		var out, errOut bytes.Buffer
		err := run(t.Context(), append(args, "--json"), &out, &errOut)
		findings = nil
		if jerr := json.Unmarshal(out.Bytes(), &findings); jerr != nil {
			t.Fatalf("--json output does not parse: %v\n%s", jerr, out.String())
		}
		var notOK []string
		for _, f := range findings {
			if f.Status != doctor.OK && f.Check != doctor.CheckSync {
				notOK = append(notOK, fmt.Sprintf("%+v", f))
			}
		}
		if len(notOK) > 0 {
			return fmt.Errorf("not ok: %s", strings.Join(notOK, "\n"))
		}
		if got := exitCode(err); err == nil || got != exitDoctorWarning {
			return fmt.Errorf("exit status %d (%v), want %d", got, err, exitDoctorWarning)
		}
		return nil
	})
	for _, check := range []string{doctor.CheckNATS, doctor.CheckJetStream, doctor.CheckIssuerAPI, "stream HERALD", doctor.CheckEventKeys,
		doctor.CheckTokenKeys, doctor.CheckFleet, doctor.CheckPins, doctor.CheckClock} {
		if !hasFinding(findings, check, doctor.OK) {
			t.Errorf("no ok finding %q in %+v", check, findings)
		}
	}
	if !hasFinding(findings, doctor.CheckSync, doctor.Warning) {
		t.Errorf("no warning %q in %+v", doctor.CheckSync, findings)
	}

	// The table names each finding and its fix.
	var out, errOut bytes.Buffer
	err := run(t.Context(), args, &out, &errOut)
	if exitCode(err) != exitDoctorWarning || !strings.Contains(out.String(), "warning  nats sync") ||
		!strings.Contains(out.String(), "fix: give each server's monitoring URL with --nats-monitor") {
		t.Fatalf("herald doctor: %v\n%s", err, out.String())
	}

	t.Run("refused credential", func(t *testing.T) {
		seedFile := bustest.StrangerSeedFile(t)
		var out, errOut bytes.Buffer
		err = run(t.Context(), []string{"doctor", "--nats", m[1], "--nats-nkey", seedFile, "--nats-ca", files.CAFile(), "--issuer-url", ""}, &out, &errOut)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitDoctorError {
			t.Fatalf("exit: %v, want status %d", err, exitDoctorError)
		}
		if !strings.Contains(out.String(), "error  nats") || !strings.Contains(out.String(), "fix: NATS refused the credentials") {
			t.Fatalf("output:\n%s", out.String())
		}
	})
}

func hasFinding(findings []doctor.Finding, check string, st doctor.Status) bool {
	for _, f := range findings {
		if f.Check == check && f.Status == st {
			return true
		}
	}
	return false
}
