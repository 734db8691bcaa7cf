package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heraldsec/herald/bus"
)

// runEvents runs the events command: it prints the issuer's event stream
// (revocations, issuance, sessions, keys, admin actions), or follows it.
func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("events", "events [--follow] [--type T,...] [--tenant T] [--json]", stderr)
	var c clientFlags
	c.register(fs)
	follow := fs.Bool("follow", false, "keep following new events (without it: print the retained ones and exit)")
	types := fs.String("type", "", "only these event types (comma-separated; a prefix ending in '.' matches a family, e.g. admin.)")
	tenant := fs.String("tenant", "", "only events of this tenant")
	from := fs.String("from", "", "start: 'start' (everything retained) or 'now' (default: start, or now with --follow)")
	lastID := fs.String("after", "", "resume after this event id (as printed with --json)")
	asJSON := fs.Bool("json", false, "one JSON object per line, for SIEM pipelines: {\"id\", \"event\"}")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	tok, err := c.adminToken()
	if err != nil {
		return err
	}
	q := url.Values{}
	q.Set("follow", fmt.Sprint(*follow))
	switch {
	case *from != "":
		q.Set("from", *from)
	case !*follow:
		q.Set("from", "start")
	}
	if *types != "" {
		q.Set("type", *types)
	}
	if *tenant != "" {
		q.Set("tenant", *tenant)
	}
	// The issuer ends a stream after its maximum lifetime (and when the
	// credential goes): with --follow, reconnect after the last event seen,
	// which authorizes the credential again.
	after := *lastID
	for {
		ended, err := streamEvents(ctx, c.issuerURL, tok, q, &after, stdout, *asJSON)
		if err != nil || !ended || !*follow || ctx.Err() != nil {
			return err
		}
	}
}

// streamEvents prints the events of one GET /v1/events after *after,
// keeping *after at the last one printed. It reports whether the issuer
// ended the stream.
func streamEvents(ctx context.Context, base, tok string, q url.Values, after *string, stdout io.Writer, asJSON bool) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/v1/events?"+q.Encode(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "text/event-stream")
	if *after != "" {
		req.Header.Set("Last-Event-ID", *after)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("events: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return false, fmt.Errorf("events: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	var id, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && data != "":
			if err := printEvent(stdout, id, data, asJSON); err != nil {
				return false, err
			}
			*after = id
			id, data = "", ""
		}
	}
	if err := sc.Err(); err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		return false, fmt.Errorf("events: %w", err)
	}
	return ctx.Err() == nil, nil
}

// printEvent writes one event as a JSON line or a human-readable line.
func printEvent(w io.Writer, id, data string, asJSON bool) error {
	if asJSON {
		_, err := fmt.Fprintf(w, "{\"id\":%q,\"event\":%s}\n", id, data)
		return err
	}
	e, err := bus.Decode([]byte(data))
	if err != nil {
		_, err = fmt.Fprintf(w, "%s  (undecodable event: %v)\n", id, err)
		return err
	}
	var what string
	switch {
	case e.Revocation != nil:
		r := e.Revocation
		what = fmt.Sprintf("%s %s", r.Kind, r.Value)
		if len(r.Values) > 0 {
			what = fmt.Sprintf("%s ×%d", r.Kind, len(r.Values))
		}
		if r.Issuer != "" {
			what += " iss=" + r.Issuer
		}
		if r.Reason != "" {
			what += fmt.Sprintf(" (%s)", r.Reason)
		}
	case e.Signal != nil:
		g := e.Signal
		what = fmt.Sprintf("%s iss=%s jti=%s %s", g.Format, g.Issuer, g.JTI, g.Outcome)
		if g.Kind.Valid() {
			what += fmt.Sprintf(" %s %s", g.Kind, g.Value)
		}
		if g.Note != "" {
			what += fmt.Sprintf(" (%s)", g.Note)
		}
		if g.Sender != "" {
			what += " via " + g.Sender
		}
	case e.Session != nil:
		what = fmt.Sprintf("sid=%s sub=%s tenant=%s %s", e.Session.ID, e.Session.Subject, e.Session.Tenant, e.Session.Reason)
	case e.Token != nil:
		what = fmt.Sprintf("jti=%s sub=%s client=%s kid=%s", e.Token.ID, e.Token.Subject, e.Token.ClientID, e.Token.KeyID)
	case e.Key != nil:
		what = fmt.Sprintf("kid=%s alg=%s", e.Key.ID, e.Key.Algorithm)
	case e.Admin != nil:
		what = fmt.Sprintf("%s %s %s from %s", e.Admin.Action, e.Admin.Kind, e.Admin.Value, e.Admin.Source)
	}
	_, err = fmt.Fprintf(w, "%s  %-16s %-18s actor=%s  %s\n", e.Time.Local().Format(time.DateTime), id, e.Type, e.Actor, strings.TrimSpace(what))
	return err
}
