package main

import (
	"context"
	"flag"
	"io"

	"github.com/heraldsec/herald/issuer"
)

// runCredential runs the credential command: admin API credentials.
func runCredential(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return resourceCommand[issuer.Credential]{
		name:      "credential",
		synopsis:  "credential create NAME --scopes S,... | list | rotate NAME | delete NAME",
		path:      "/v1/credentials",
		listField: "credentials",
		rotate:    "/rotate",
		shownOnce: "The token is shown once; store it now.",
		flags: func(fs *flag.FlagSet) func(string) any {
			scopes := fs.String("scopes", "", "comma-separated: admin, revoke, sessions, read, signals")
			return func(name string) any { return issuer.CredentialRequest{Name: name, Scopes: splitList(*scopes)} }
		},
		deleted: func(name string) (answer, printed any) {
			return nil, map[string]string{"deleted": name}
		},
	}.run(ctx, args, stdout, stderr)
}
