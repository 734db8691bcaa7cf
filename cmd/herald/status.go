package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/federation"
	"github.com/heraldsec/herald/verifier/sidecar"
)

// runStatus runs the status command: one verifier's status, or the
// fleet's from the issuer.
func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "status [flags]\n\nWithout --issuer-url or --fleet: one verifier's status (--verifier-url).\nWith either: every live verifier of the fleet, from the issuer (admin).", stderr)
	url := fs.String("verifier-url", "http://"+sidecar.DefaultHTTPAddr, "base URL of the verifier's endpoints (in proxy mode its --admin-http, by default http://"+sidecar.DefaultAdminAddr+")")
	var c clientFlags
	c.register(fs)
	fleet := fs.Bool("fleet", false, "list the fleet from the issuer (implied by --issuer-url)")
	asJSON := fs.Bool("json", false, "print the fleet as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errors.New("status: takes no arguments")
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "issuer-url" {
			*fleet = true
		}
	})
	if *fleet {
		return printFleet(ctx, &c, *asJSON, stdout)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*url, "/")+"/v1/status", nil)
	if err != nil {
		return err
	}
	var st map[string]any
	if err := doJSON(req, &st); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

// fleetList is the answer of GET /v1/verifiers.
type fleetList struct {
	StreamHead uint64 `json:"stream_head"`
	Verifiers  []struct {
		bus.Heartbeat
		Live  bool  `json:"live"`
		AgeMS int64 `json:"age_ms"`
	} `json:"verifiers"`
	TrustedIssuers []federation.IssuerStatus `json:"trusted_issuers,omitempty"`
}

// printFleet lists the verifiers the issuer knows of, with their lag.
func printFleet(ctx context.Context, c *clientFlags, asJSON bool, stdout io.Writer) error {
	tok, err := c.adminToken()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.issuerURL, "/")+"/v1/verifiers", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	var list fleetList
	if err := doJSON(req, &list); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tHOST\tVERSION\tAPPLIED\tHEAD\tLAG\tSTATE\tSEEN\n")
	for _, h := range list.Verifiers {
		// The issuer reports each lag against the stream head as it sees
		// it now, and whether the verifier is still reporting.
		state := "ready"
		switch {
		case !h.Live:
			state = "silent"
		case h.Stale:
			state = "stale"
		case !h.Ready:
			state = "catching-up"
		}
		version := h.Version
		if version == "" {
			version = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s ago\n", h.ID, h.Host, version, h.AppliedSeq, h.StreamHead, h.Lag, state,
			(time.Duration(h.AgeMS) * time.Millisecond).Round(100*time.Millisecond))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d verifiers; stream head %d\n", len(list.Verifiers), list.StreamHead)
	for _, is := range list.TrustedIssuers {
		state := "ok"
		switch {
		case is.LastError != "":
			state = fmt.Sprintf("failing since %s: %s", is.ErrorSince.Local().Format(time.DateTime), is.LastError)
		case is.LastRefresh.IsZero():
			state = "not fetched yet"
		}
		fmt.Fprintf(stdout, "trusted issuer %s: %d keys; %s\n", is.Issuer, is.Keys, state)
	}
	return nil
}
