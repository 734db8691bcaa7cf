package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldsec/herald/issuer"
	"github.com/heraldsec/herald/ssf"
)

const ssfSynopsis = "ssf streams [--json] | ssf streams pause|enable|disable ID [--reason R] | ssf streams delete ID"

// ssfStatusVerbs are the verbs of herald ssf streams that set a stream's
// status, and the status each sets.
var ssfStatusVerbs = map[string]string{"pause": ssf.StatusPaused, "enable": ssf.StatusEnabled, "disable": ssf.StatusDisabled}

// runSSF runs the ssf command: the streams receivers created on Herald's
// SSF transmitter, through the admin API.
func runSSF(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ssf", ssfSynopsis, stderr)
	var c clientFlags
	c.register(fs)
	asJSON := fs.Bool("json", false, "print the streams as JSON")
	reason := fs.String("reason", "", "why the status changes (shown to the receiver in its stream-updated SET)")
	if len(args) == 0 || isHelp(args[0]) {
		fs.Usage()
		if len(args) == 0 {
			return errors.New("ssf: want streams")
		}
		return flag.ErrHelp
	}
	if args[0] != "streams" {
		fs.Usage()
		return fmt.Errorf("ssf: unknown command %q (want streams)", args[0])
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return printSSFStreams(ctx, &c, *asJSON, stdout)
	case len(pos) == 2 && pos[0] == "delete":
		if err := c.call(ctx, http.MethodDelete, "/v1/ssf/streams/"+url.PathEscape(pos[1]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "stream %s deleted\n", pos[1])
		return nil
	case len(pos) == 2 && ssfStatusVerbs[pos[0]] != "":
		var st ssf.StreamStatus
		req := issuer.SSFStatusRequest{Status: ssfStatusVerbs[pos[0]], Reason: *reason}
		if err := c.post(ctx, "/v1/ssf/streams/"+url.PathEscape(pos[1])+"/status", req, &st); err != nil {
			return err
		}
		if st.Reason != "" {
			fmt.Fprintf(stdout, "stream %s %s (%s)\n", st.ID, st.Status, st.Reason)
		} else {
			fmt.Fprintf(stdout, "stream %s %s\n", st.ID, st.Status)
		}
		return nil
	}
	fs.Usage()
	return fmt.Errorf("ssf streams %s: wrong arguments", strings.Join(pos, " "))
}

// printSSFStreams lists the streams as a table, or as JSON.
func printSSFStreams(ctx context.Context, c *clientFlags, asJSON bool, stdout io.Writer) error {
	var list []ssf.Info
	if err := c.call(ctx, http.MethodGet, "/v1/ssf/streams", nil, &list); err != nil {
		return err
	}
	if asJSON {
		if list == nil {
			list = []ssf.Info{}
		}
		return printJSON(stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no SSF streams")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "STREAM\tRECEIVER\tMETHOD\tSTATUS\tLAG\tLAST DELIVERED\tLAST ERROR\n")
	for _, s := range list {
		status := s.Status
		if s.Reason != "" {
			status += " (" + s.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.ID, s.Receiver, methodName(s.Method), status, s.Lag,
			ago(now, s.LastDelivered), lastError(now, s))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range list {
		if s.Gap != "" {
			fmt.Fprintf(stdout, "stream %s missed events: %s\n", s.ID, s.Gap)
		}
	}
	return nil
}

// methodName shows a delivery method URI as push or poll.
func methodName(m string) string {
	switch m {
	case ssf.MethodPush:
		return "push"
	case ssf.MethodPoll:
		return "poll"
	}
	return m
}

// ago shows how long before now t was, or "-" for never.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}

// lastError shows a stream's last delivery error and its age, or "-".
func lastError(now time.Time, s ssf.Info) string {
	if s.LastError == "" {
		return "-"
	}
	if s.LastErrorAt.IsZero() {
		return s.LastError
	}
	return s.LastError + " (" + ago(now, s.LastErrorAt) + ")"
}
