package main

import (
	"context"
	"flag"
	"io"

	"github.com/heraldsec/herald/issuer"
)

// runClient runs the client command: registered OAuth clients.
func runClient(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return resourceCommand[issuer.Client]{
		name:      "client",
		synopsis:  "client create NAME [--scope S] | list | rotate ID | delete ID",
		path:      "/v1/clients",
		listField: "clients",
		rotate:    "/secret",
		shownOnce: "The client secret is shown once; store it now.",
		flags: func(fs *flag.FlagSet) func(string) any {
			scope := fs.String("scope", "", "scopes the client may ask for (space-separated)")
			return func(name string) any { return issuer.ClientRequest{Name: name, Scope: *scope} }
		},
		deleted: func(string) (answer, printed any) {
			res := new(issuer.RevocationResult)
			return res, res
		},
	}.run(ctx, args, stdout, stderr)
}
