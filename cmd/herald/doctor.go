package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
	"github.com/heraldsec/herald/internal/doctor"
)

// Exit statuses of herald doctor.
const (
	// exitDoctorError: at least one finding is an error, or the doctor
	// could not run (bad flags).
	exitDoctorError = 1
	// exitDoctorWarning: no error, but at least one warning.
	exitDoctorWarning = 2
)

// exitError ends the process with its code and no further message: the
// command has printed what went wrong.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// runDoctor runs the doctor command: every check of internal/doctor,
// printed as a table or as JSON. It exits 0 when every finding is ok, 2
// when the worst is a warning, 1 when one is an error.
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", "doctor [flags]\n\n"+
		"Checks the deployment and prints each finding as ok, warning or error with the fix.\n"+
		"Exit status: 0 all ok, 2 warnings (no error), 1 an error or the check could not run.", stderr)
	natsURL := fs.String("nats", "nats://"+natsserver.DefaultListen, "NATS URL (comma-separated for a cluster)")
	var nf natsFlags
	nf.register(fs)
	var c clientFlags
	c.register(fs)
	monitor := fs.String("nats-monitor", "", "comma-separated monitoring URLs of the NATS servers (http://host:8222), to check their sync_interval")
	expect := fs.Int("expect-verifiers", 0, "how many verifiers should report; fewer is an error (0: any number)")
	maxLag := fs.Uint64("max-lag", doctor.DefaultMaxLag, "lag, in revocations, beyond which a verifier is reported lagging")
	asJSON := fs.Bool("json", false, "print the findings as a JSON array")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errors.New("doctor: takes no arguments")
	}
	if *expect < 0 {
		return fmt.Errorf("doctor: --expect-verifiers %d: want 0 or more", *expect)
	}
	// The doctor only reads: it uses the dashboard's credential that
	// herald dev made, when it finds one and none is given.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := doctor.Config{
		Bus:             nf.config(*natsURL, "herald-doctor", bus.RoleDashboard, log),
		IssuerURL:       c.issuerURL,
		MonitorURLs:     splitList(*monitor),
		EventKeys:       nf.pins(),
		RootKeys:        nf.roots(),
		ExpectVerifiers: *expect,
		MaxLag:          *maxLag,
		Timeout:         c.timeout,
	}
	if cfg.IssuerURL != "" {
		if tok, err := c.adminToken(); err == nil {
			cfg.AdminToken = tok
		}
	}
	findings, err := doctor.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(findings); err != nil {
			return err
		}
	} else if err := printFindings(stdout, findings); err != nil {
		return err
	}
	switch doctor.Worst(findings) {
	case doctor.Error:
		return &exitError{code: exitDoctorError, msg: "doctor: errors found"}
	case doctor.Warning:
		return &exitError{code: exitDoctorWarning, msg: "doctor: warnings found"}
	}
	return nil
}

// printFindings prints findings as a table: status, check, detail, and
// the fix on the line below.
func printFindings(w io.Writer, findings []doctor.Finding) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	counts := map[doctor.Status]int{}
	for _, f := range findings {
		counts[f.Status]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Status, f.Check, f.Detail)
		if f.Fix != "" {
			fmt.Fprintf(tw, "\t\t  fix: %s\n", f.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d ok, %d warnings, %d errors\n", counts[doctor.OK], counts[doctor.Warning], counts[doctor.Error])
	return err
}

// exitCode returns the exit status err asks for: an exitError's code, 1
// for any other error.
func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
