package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/internal/secretfile"
	"github.com/heraldsec/herald/issuer"
)

// runRootKeys runs the herald keys commands that use the offline root
// key: root create, event certify, event revoke, event publish. They
// talk to NATS (issuer role: they write HERALD_KEYS) only to publish, and
// never to an issuer's API: no admin scope can certify or revoke an event
// key, only the holder of a root key.
func runRootKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch {
	case len(args) >= 2 && args[0] == "root" && args[1] == "create":
		fs := newFlagSet("keys root create", "keys root create --out FILE", stderr)
		out := fs.String("out", "", "file to create (mode 0600); keep it offline, never on an issuer host")
		if err := parseFlags(fs, args[2:]); err != nil {
			return err
		}
		if *out == "" {
			fs.Usage()
			return errors.New("keys root create: --out is required")
		}
		kid, err := issuer.CreateRootKey(*out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "created %s (mode 0600); pin it on issuers and verifiers with --root-keys\n", *out)
		fmt.Fprintln(stdout, kid)
		return nil
	case len(args) >= 2 && args[0] == "event" && args[1] == "certify":
		fs := newFlagSet("keys event certify", "keys event certify --root FILE --issuer URL --event-key FILE [--expires D] (--out FILE | --nats URL)", stderr)
		root := fs.String("root", "", "the root key file")
		iss := fs.String("issuer", "", "the issuer identifier (iss) of the deployment the event key is for, as its tokens carry it (the issuer's --issuer-url, the verifiers' --issuer); verifiers of other issuers refuse the certificate")
		eventKey := fs.String("event-key", "", "PEM file of the event key to certify (its private key, or its PKIX public key)")
		expires := fs.Duration("expires", 0, "the certificate expires after this long (0: never; revoke it with keys event revoke)")
		pub := registerPublish(fs)
		if err := parseFlags(fs, args[2:]); err != nil {
			return err
		}
		if *root == "" || *eventKey == "" || *iss == "" {
			fs.Usage()
			return errors.New("keys event certify: --root, --issuer and --event-key are required")
		}
		now := time.Now()
		var exp time.Time
		if *expires > 0 {
			exp = now.Add(*expires)
		}
		name, value, err := issuer.CertifyEventKey(*root, *iss, *eventKey, now.Add(-time.Minute), exp)
		if err != nil {
			return err
		}
		return pub.emit(ctx, fs, name, value, stdout, stderr)
	case len(args) >= 2 && args[0] == "event" && args[1] == "revoke":
		fs := newFlagSet("keys event revoke", "keys event revoke --root FILE --kid KID [--reason R] (--out FILE | --nats URL)", stderr)
		root := fs.String("root", "", "the root key file")
		kid := fs.String("kid", "", "kid of the event key to revoke for good")
		reason := fs.String("reason", "", "why, recorded with the revocation")
		pub := registerPublish(fs)
		if err := parseFlags(fs, args[2:]); err != nil {
			return err
		}
		if *root == "" || *kid == "" {
			fs.Usage()
			return errors.New("keys event revoke: --root and --kid are required")
		}
		name, value, err := issuer.RevokeEventKey(*root, *kid, *reason)
		if err != nil {
			return err
		}
		return pub.emit(ctx, fs, name, value, stdout, stderr)
	case len(args) >= 2 && args[0] == "event" && args[1] == "publish":
		fs := newFlagSet("keys event publish", "keys event publish --nats URL FILE", stderr)
		pub := registerPublish(fs)
		if err := parseFlags(fs, args[2:]); err != nil {
			return err
		}
		if fs.NArg() != 1 || pub.url == "" {
			fs.Usage()
			return errors.New("keys event publish: want --nats URL and one FILE written by certify or revoke --out")
		}
		value, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return err
		}
		name, err := bus.StatementName(value)
		if err != nil {
			return fmt.Errorf("keys event publish: %s: %w", fs.Arg(0), err)
		}
		return pub.emit(ctx, fs, name, value, stdout, stderr)
	}
	return errNotRootKeys
}

// errNotRootKeys means the arguments name no root key command.
var errNotRootKeys = errors.New("not a root key command")

// publishFlags say where a root-signed statement goes: a file, for a root
// key kept on a machine without a network, or HERALD_KEYS.
type publishFlags struct {
	out, url string
	nats     natsFlags
}

func registerPublish(fs *flag.FlagSet) *publishFlags {
	p := &publishFlags{}
	fs.StringVar(&p.out, "out", "", "write the signed statement to this file (then: herald keys event publish FILE)")
	fs.StringVar(&p.url, "nats", "", "publish it to HERALD_KEYS on this NATS, with the issuer's credential")
	p.nats.register(fs)
	return p
}

// emit writes or publishes the statement value stored under name.
func (p *publishFlags) emit(ctx context.Context, fs *flag.FlagSet, name string, value []byte, stdout, stderr io.Writer) error {
	switch {
	case p.out != "" && p.url == "":
		if err := secretfile.Write(p.out, append(value, '\n')); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %s; publish it with: herald keys event publish --nats URL %s\n", name, p.out)
		return nil
	case p.url != "" && p.out == "":
		log, err := newLogger(stderr, "warn")
		if err != nil {
			return err
		}
		conn, err := bus.Connect(ctx, p.nats.config(p.url, "herald-keys", bus.RoleIssuer, log))
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := issuer.PublishRootStatement(ctx, conn, value); err != nil {
			return err
		}
		fmt.Fprintln(stdout, name)
		return nil
	}
	fs.Usage()
	return errors.New("give --out FILE or --nats URL")
}
