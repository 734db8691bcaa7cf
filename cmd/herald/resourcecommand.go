package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// resourceCommand is the command of an issuer resource that the admin API
// creates, lists, rotates the secret of and deletes, items of type T:
//
//	herald NAME create [flags] NAME | list | rotate ID | delete ID
//
// Each verb prints the issuer's answer as indented JSON on stdout.
// Registered clients and admin credentials are resources.
type resourceCommand[T any] struct {
	name      string // the command, as "client"
	synopsis  string // its usage after "herald "
	path      string // the collection in the admin API, as "/v1/clients"
	listField string // the field of the list answer that holds the items
	rotate    string // appended to an item's path to rotate its secret, as "/secret"
	shownOnce string // printed on stderr after create: the secret is not shown again
	// flags registers the flags of create on fs and returns the function
	// that makes the body of the create request for an item's name.
	flags func(fs *flag.FlagSet) func(name string) any
	// deleted returns, for the item id, what the answer to delete is
	// decoded into (nil: it is not read) and what delete prints.
	deleted func(id string) (answer, printed any)
}

// resourceVerbs maps each verb of a resource command to its number of arguments.
var resourceVerbs = map[string]int{"create": 1, "list": 0, "rotate": 1, "delete": 1}

// run runs the command with args, the verb first.
func (r resourceCommand[T]) run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet(r.name, r.synopsis, stderr)
	var c clientFlags
	c.register(fs)
	createBody := r.flags(fs)
	if len(args) == 0 {
		fs.Usage()
		return fmt.Errorf("%s: want create, list, rotate or delete", r.name)
	}
	verb := args[0]
	if isHelp(verb) {
		fs.Usage()
		return flag.ErrHelp
	}
	positional, err := parseFlagsAround(fs, args[1:])
	if err != nil {
		return err
	}
	if n, ok := resourceVerbs[verb]; !ok || len(positional) != n {
		fs.Usage()
		return fmt.Errorf("%s %s: wrong arguments", r.name, verb)
	}
	var out any
	switch verb {
	case "create":
		out, err = r.create(ctx, &c, createBody(positional[0]), stderr)
	case "list":
		out, err = r.list(ctx, &c)
	case "rotate":
		var item T
		err = c.post(ctx, r.itemPath(positional[0])+r.rotate, nil, &item)
		out = item
	case "delete":
		answer, printed := r.deleted(positional[0])
		err = c.call(ctx, http.MethodDelete, r.itemPath(positional[0]), nil, answer)
		out = printed
	}
	if err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// create sends the create request and, once it succeeded, tells on
// stderr that the secret in the answer is shown once.
func (r resourceCommand[T]) create(ctx context.Context, c *clientFlags, body any, stderr io.Writer) (T, error) {
	var item T
	if err := c.post(ctx, r.path, body, &item); err != nil {
		return item, err
	}
	fmt.Fprintln(stderr, r.shownOnce)
	return item, nil
}

// list returns the items of the list answer, nil when it holds none.
func (r resourceCommand[T]) list(ctx context.Context, c *clientFlags) ([]T, error) {
	var answer map[string]json.RawMessage
	if err := c.call(ctx, http.MethodGet, r.path, nil, &answer); err != nil {
		return nil, err
	}
	var items []T
	if raw, ok := answer[r.listField]; ok {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("%s %s: decode answer: %w", http.MethodGet, r.path, err)
		}
	}
	return items, nil
}

// parseFlagsAround parses flags that come before or after the positional
// arguments (herald credential create NAME --scopes signals, as well as
// herald credential create --scopes signals NAME) and returns the
// positional ones.
func parseFlagsAround(fs *flag.FlagSet, args []string) ([]string, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	var positional []string
	for fs.NArg() > 0 {
		rest := fs.Args()
		positional = append(positional, rest[0])
		if err := fs.Parse(rest[1:]); err != nil {
			return nil, err
		}
	}
	return positional, nil
}

// itemPath is the admin API path of the item id.
func (r resourceCommand[T]) itemPath(id string) string {
	return r.path + "/" + url.PathEscape(id)
}
