package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/heraldsec/herald/issuer"
)

// bulkChunk is how many values one bulk request carries.
const bulkChunk = 50000

func runRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("revoke", "revoke [flags] KIND [VALUE]\n\nKIND is token, session, subject, client, tenant, key (with a VALUE) or all", stderr)
	var c clientFlags
	c.register(fs)
	reason := fs.String("reason", "", "why; recorded in the audit trail")
	iss := fs.String("iss", "", "revoke only the tokens of this issuer (Herald's or a trusted one); default: every issuer's")
	fromFile := fs.String("from-file", "", "revoke every value in FILE, one per line ('-' reads standard input)")
	dryRun := fs.Bool("dry-run", false, "report the blast radius (live sessions, subjects, clients) without revoking")
	wait := fs.Duration("wait", 0, "wait until every live verifier has applied the revocation, at most this long")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(positional) < 1 || len(positional) > 2 || (*fromFile != "" && len(positional) != 1) {
		fs.Usage()
		return errors.New("revoke: want KIND [VALUE], or KIND --from-file FILE")
	}
	req := issuer.RevocationRequest{Kind: positional[0], Reason: *reason, Issuer: *iss}
	if len(positional) == 2 {
		req.Value = positional[1]
	}
	path := "/v1/revocations"
	q := url.Values{}
	if *dryRun {
		q.Set("dry_run", "true")
	}
	if *wait > 0 {
		q.Set("wait", wait.String())
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if *fromFile != "" {
		values, err := readValues(*fromFile)
		if err != nil {
			return err
		}
		return revokeBulk(ctx, &c, path, req, values, *dryRun, stdout, stderr)
	}
	if *wait > 0 && !*dryRun {
		c.timeout = max(c.timeout, *wait+10*time.Second)
		return revokeAndWait(ctx, &c, path, req, *asJSON, stdout, stderr)
	}
	var res map[string]any
	if err := c.post(ctx, path, req, &res); err != nil {
		return err
	}
	if *asJSON || *dryRun {
		return printJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "revoked %s %s: id %v, seq %v, at %v\n", req.Kind, req.Value, res["id"], res["seq"], res["at"])
	if k, ok := res["rotated_to"]; ok {
		fmt.Fprintf(stdout, "signing key rotated: new tokens are signed by %v\n", k)
	}
	return nil
}

// waitAnswer is the answer of POST /v1/revocations?wait=.
type waitAnswer struct {
	issuer.RevocationResult
	issuer.Confirmation
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// revokeAndWait revokes and reports the fleet's confirmation; it fails
// naming the verifiers that did not confirm in time.
func revokeAndWait(ctx context.Context, c *clientFlags, path string, req issuer.RevocationRequest, asJSON bool, stdout, stderr io.Writer) error {
	hreq, cancel, err := c.request(ctx, http.MethodPost, path, req)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	var a waitAnswer
	if json.Unmarshal(data, &a) != nil || (resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusGatewayTimeout) {
		return fmt.Errorf("revoke: %s: %s %s", resp.Status, a.Error, a.Description)
	}
	if asJSON {
		if err := printJSON(stdout, a); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "revoked %s %s: seq %d; confirmed by %d verifiers, the slowest in %.1f ms\n",
			req.Kind, req.Value, a.Seq, a.Confirmed, a.SlowestMS)
		if a.Rotated != "" {
			fmt.Fprintf(stdout, "signing key rotated: new tokens are signed by %s\n", a.Rotated)
		}
	}
	if resp.StatusCode == http.StatusGatewayTimeout {
		for _, m := range a.Missing {
			fmt.Fprintf(stderr, "not confirmed: verifier %s on %s (%s): applied %d, lag %d, last seen %d ms ago\n",
				m.ID, m.Host, m.URL, m.AppliedSeq, m.Lag, m.LastSeenMS)
		}
		return fmt.Errorf("revocation seq %d is in force, but %d live verifiers did not confirm it in time", a.Seq, len(a.Missing))
	}
	return nil
}

// revokeBulk sends values in chunks, showing progress on stderr.
func revokeBulk(ctx context.Context, c *clientFlags, path string, req issuer.RevocationRequest, values []string,
	dryRun bool, stdout, stderr io.Writer) error {
	if len(values) == 0 {
		return errors.New("revoke: the file holds no values")
	}
	c.timeout = max(c.timeout, 2*time.Minute)
	start := time.Now()
	bar := newProgress(stderr, fmt.Sprintf("revoking %d %s values", len(values), req.Kind), len(values))
	var events int
	var last map[string]any
	radius := map[string]float64{}
	for done := 0; done < len(values); {
		n := min(bulkChunk, len(values)-done)
		chunk := req
		chunk.Values = values[done : done+n]
		var res map[string]any
		if err := c.post(ctx, path, chunk, &res); err != nil {
			bar.finish()
			return fmt.Errorf("after %d of %d values: %w", done, len(values), err)
		}
		if dryRun {
			for _, k := range []string{"sessions", "values"} {
				f, _ := res[k].(float64)
				radius[k] += f
			}
		} else {
			e, _ := res["events"].(float64)
			events += int(e)
		}
		last = res
		done += n
		bar.set(done)
	}
	bar.finish()
	if dryRun {
		fmt.Fprintf(stdout, "dry run: %d %s values would cut off %d live sessions\n", int(radius["values"]), req.Kind, int(radius["sessions"]))
		return nil
	}
	fmt.Fprintf(stdout, "revoked %d %s values in %d events in %s; last seq %v\n",
		len(values), req.Kind, events, time.Since(start).Round(time.Millisecond), last["seq"])
	return nil
}

// readValues reads one value per line, skipping blank lines and # comments.
func readValues(path string) ([]string, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return out, nil
}

// parseInterleaved parses flags that may come before, between or after the
// positional arguments (herald revoke session SID --reason x). After the
// first positional argument (KIND), the next one is its VALUE taken
// verbatim even if it starts with '-' (kids are base64url), unless it names
// a flag of fs.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	pos := fs.Args()
	var positional []string
	for len(pos) > 0 {
		n := 1
		if len(positional) == 0 && pos[0] != "all" && len(pos) > 1 && !isFlag(fs, pos[1]) {
			n = 2
		}
		positional = append(positional, pos[:n]...)
		if err := fs.Parse(pos[n:]); err != nil {
			return nil, err
		}
		pos = fs.Args()
	}
	return positional, nil
}

func isFlag(fs *flag.FlagSet, arg string) bool {
	if !strings.HasPrefix(arg, "-") {
		return false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return fs.Lookup(name) != nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress draws a progress bar on a terminal-like writer.
type progress struct {
	w     io.Writer
	label string
	total int
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, label string, total int) *progress {
	p := &progress{w: w, label: label, total: total, start: time.Now()}
	p.draw(0)
	return p
}

func (p *progress) set(n int) {
	if time.Since(p.last) >= 100*time.Millisecond || n == p.total {
		p.draw(n)
	}
}

func (p *progress) draw(n int) {
	p.last = time.Now()
	const width = 30
	filled := width * n / max(p.total, 1)
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %d/%d %s", p.label, strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		100*n/max(p.total, 1), n, p.total, time.Since(p.start).Round(100*time.Millisecond))
}

func (p *progress) finish() { fmt.Fprintln(p.w) }
