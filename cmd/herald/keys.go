package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/heraldsec/herald/issuer"
)

// runKeys runs the keys command: signing key rotation, the event key
// file, and the root key commands of rootkeys.go.
func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := runRootKeys(ctx, args, stdout, stderr); !errors.Is(err, errNotRootKeys) {
		return err
	}
	fs := newFlagSet("keys", "keys rotate | keys event-key FILE | keys root create | keys event certify|revoke|publish", stderr)
	var c clientFlags
	c.register(fs)
	if len(args) > 0 && args[0] == "event-key" {
		// The event key shared by issuer replicas: print its kid,
		// creating the file first if needed. No issuer is involved.
		efs := newFlagSet("keys event-key", "keys event-key FILE", stderr)
		if err := parseFlags(efs, args[1:]); err != nil {
			return err
		}
		if efs.NArg() != 1 {
			efs.Usage()
			return errors.New("keys event-key: want FILE")
		}
		file := efs.Arg(0)
		kid, created, err := issuer.EventKeyFile(file)
		if err != nil {
			return err
		}
		if created {
			fmt.Fprintf(stderr, "created %s (mode 0600); give it to every issuer replica with --event-key-file\n", file)
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
