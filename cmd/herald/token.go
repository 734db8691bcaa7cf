package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/heraldsec/herald/issuer"
)

// runToken runs the token command: it opens a session for a subject and
// prints its access token, or the whole session as JSON.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("token", "token [flags] SUBJECT", stderr)
	var c clientFlags
	c.register(fs)
	var req issuer.SessionRequest
	fs.StringVar(&req.Tenant, "tenant", "", "tenant claim")
	fs.StringVar(&req.ClientID, "client-id", "", "client_id claim")
	fs.StringVar(&req.Scope, "scope", "", "scope claim (space-separated)")
	ttl := fs.Duration("ttl", 0, "access token lifetime (default: the issuer's)")
	asJSON := fs.Bool("json", false, "print the whole session as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("token: want exactly one SUBJECT")
	}
	req.Subject = fs.Arg(0)
	req.TTL = issuer.Duration(*ttl)
	var resp map[string]any
	if err := c.post(ctx, "/v1/sessions", req, &resp); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(resp)
	}
	fmt.Fprintln(stdout, resp["access_token"])
	return nil
}
