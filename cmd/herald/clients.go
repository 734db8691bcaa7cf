package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/heraldsec/herald/issuer"
)

func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("client", "client create NAME [--scope S] | list | rotate ID | delete ID", stderr)
	var c clientFlags
	c.register(fs)
	scope := fs.String("scope", "", "scopes the client may ask for (space-separated)")
	if len(args) == 0 {
		fs.Usage()
		return errors.New("client: want create, list, rotate or delete")
	}
	verb := args[0]
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	want := map[string]int{"create": 1, "list": 0, "rotate": 1, "delete": 1}
	n, ok := want[verb]
	if !ok || fs.NArg() != n {
		fs.Usage()
		return fmt.Errorf("client %s: wrong arguments", verb)
	}
	var out any
	var err error
	switch verb {
	case "create":
		var cl issuer.Client
		err = c.post(ctx, "/v1/clients", issuer.ClientRequest{Name: fs.Arg(0), Scope: *scope}, &cl)
		out = cl
		if err == nil {
			fmt.Fprintln(stderr, "The client secret is shown once; store it now.")
		}
	case "list":
		var list struct {
			Clients []issuer.Client `json:"clients"`
		}
		err = c.call(ctx, http.MethodGet, "/v1/clients", nil, &list)
		out = list.Clients
	case "rotate":
		var cl issuer.Client
		err = c.post(ctx, "/v1/clients/"+url.PathEscape(fs.Arg(0))+"/secret", nil, &cl)
		out = cl
	case "delete":
		var res issuer.RevocationResult
		err = c.call(ctx, http.MethodDelete, "/v1/clients/"+url.PathEscape(fs.Arg(0)), nil, &res)
		out = res
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := runRootKeys(ctx, args, stdout, stderr); !errors.Is(err, errNotRootKeys) {
		return err
	}
	fs := newFlagSet("keys", "keys rotate | keys event-key FILE | keys root create | keys event certify|revoke|publish", stderr)
	var c clientFlags
	c.register(fs)
	if len(args) == 2 && args[0] == "event-key" {
		// The event key shared by issuer replicas: print its kid,
		// creating the file first if needed. No issuer is involved.
		kid, created, err := issuer.EventKeyFile(args[1])
		if err != nil {
			return err
		}
		if created {
			fmt.Fprintf(stderr, "created %s (mode 0600); give it to every issuer replica with --event-key-file\n", args[1])
		}
		fmt.Fprintln(stdout, kid)
		return nil
	}
	if len(args) == 0 || args[0] != "rotate" {
		fs.Usage()
		return errors.New("keys: want rotate, event-key FILE, root create, or event certify|revoke|publish")
	}
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	var res issuer.KeyRotation
	if err := c.post(ctx, "/v1/keys/rotate", nil, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "signing with %s; retired %s; next %s\n", res.Current, res.Retired, res.Next)
	return nil
}
