package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
)

// runNATSPermissions prints the NATS permissions of a bus role as nsc
// flags, one a line, for `xargs nsc add user`: the same permissions the
// embedded server gives its nkey users.
func runNATSPermissions(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("nats-permissions", "nats-permissions [--id VERIFIER_ID] issuer|verifier|dashboard\n\n"+
		"Prints the role's NATS permissions as nsc flags, one a line:\n"+
		"  herald nats-permissions verifier --id edge-1 | xargs nsc add user --account HERALD --name verifier-edge-1", stderr)
	id := fs.String("id", "", "verifier only: allow the heartbeat and announcements of this verifier id alone (run it with --id)")
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") { // the role, then flags
		name, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if name == "" || fs.NArg() != 0 {
		fs.Usage()
		return errors.New("nats-permissions: want exactly one role")
	}
	role, err := bus.ParseRole(name)
	if err != nil {
		return err
	}
	perms := natsserver.Permissions(role)
	switch {
	case *id != "" && role != bus.RoleVerifier:
		return errors.New("nats-permissions: --id is for the verifier role")
	case *id != "" && !bus.ValidVerifierID(*id):
		return fmt.Errorf("nats-permissions: invalid verifier id %q", *id)
	case *id != "":
		perms = natsserver.VerifierPermissions(*id)
	}
	if perms == nil {
		fmt.Fprintf(stderr, "the %s role has no restriction\n", role)
		return nil
	}
	for _, p := range []struct {
		flag     string
		subjects []string
	}{{"--allow-pub", perms.Publish.Allow}, {"--allow-sub", perms.Subscribe.Allow}} {
		fmt.Fprintf(stdout, "%s=%s\n", p.flag, strings.Join(p.subjects, ","))
	}
	return nil
}
