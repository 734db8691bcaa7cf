// Command herald runs Herald's issuer, verifier sidecar or both, and talks
// to a running issuer: get tokens, revoke, show status.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills the process
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ee *exitError
		if !errors.Is(err, flag.ErrHelp) && !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "herald:", err)
		}
		os.Exit(exitCode(err))
	}
}

const usage = `usage: herald <command> [flags]

Servers:
  dev        embedded NATS + issuer + one verifier in one process (data in ./herald-data)
  issuer     the issuer: tokens, revocations, keys (embeds NATS unless --nats is given)
  verifier   a verifier sidecar: local token checks with a denylist fed by NATS

Clients (talk to a running issuer or verifier):
  token      create a session for a subject and print its access token
  revoke     revoke: token JTI | session SID | subject SUB | client ID | tenant T | key KID | all
  client     machine clients: create NAME | list | rotate ID | delete ID
  keys       signing keys: rotate; event-key FILE (create or read the replicas' event key, print its kid);
             root create --out FILE; event certify|revoke|publish (the offline root key certifies and revokes event keys)
  credential named admin credentials: create NAME --scopes revoke | list | rotate NAME | delete NAME
  events     print or --follow the event stream (revocations, issuance, sessions, keys, admin actions)
  status     show a verifier's status
  doctor     check the deployment: NATS, streams, keys, fleet, clocks, trusted issuers; each finding with its fix
  ssf        the SSF streams receivers created: streams [--json] | streams pause|enable|disable|delete ID
  bench      measure Herald against its baselines: propagation | verify | baseline | scale | issue | all
  nats-permissions  print a bus role's NATS permissions as nsc flags: issuer | verifier [--id ID] | dashboard

  version    print the version

Every flag can also be set with an environment variable HERALD_<FLAG>,
for example --nats-listen as HERALD_NATS_LISTEN. Run 'herald <command> -h' for flags.
`

// run dispatches a subcommand. It is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(ctx, rest, stdout, stderr)
	case "issuer":
		return runIssuer(ctx, rest, stdout, stderr)
	case "verifier":
		return runVerifier(ctx, rest, stdout, stderr)
	case "token":
		return runToken(ctx, rest, stdout, stderr)
	case "revoke":
		return runRevoke(ctx, rest, stdout, stderr)
	case "client":
		return runClient(ctx, rest, stdout, stderr)
	case "keys":
		return runKeys(ctx, rest, stdout, stderr)
	case "credential", "credentials":
		return runCredential(ctx, rest, stdout, stderr)
	case "events":
		return runEvents(ctx, rest, stdout, stderr)
	case "status":
		return runStatus(ctx, rest, stdout, stderr)
	case "doctor":
		return runDoctor(ctx, rest, stdout, stderr)
	case "ssf":
		return runSSF(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "nats-permissions":
		return runNATSPermissions(rest, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "herald", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
