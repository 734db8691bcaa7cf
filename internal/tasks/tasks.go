// Package tasks runs the long-running loops of a Herald component
// together, each under a name: the first to fail stops the others, and
// its error says which one it was.
//
// # Usage
//
//	g := tasks.New(ctx)
//	g.Go("outbox", o.Run)
//	g.Go("http", func(ctx context.Context) error { return serve(ctx, ln) })
//	return g.Wait()
//
// # Concurrency
//
// Go and Wait are safe for concurrent use, but every Go must happen before
// Wait is called, as with sync.WaitGroup.
package tasks

import (
	"context"
	"fmt"
	"sync"
)

// Group is a set of named tasks that run together. The first task that
// returns an error cancels the context every task runs with; a task that
// returns nil leaves the others running. Make one with New.
type Group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	once sync.Once
	err  error
}

// New returns an empty Group whose tasks run with a context derived from
// ctx: ending ctx stops them all.
func New(ctx context.Context) *Group {
	ctx, cancel := context.WithCancel(ctx)
	return &Group{ctx: ctx, cancel: cancel}
}

// Go starts fn in a goroutine of its own with the group's context. If fn
// returns an error and no task failed before, the error, prefixed with
// name ("name: err"), becomes the group's and the other tasks are told to
// stop.
func (g *Group) Go(name string, fn func(context.Context) error) {
	g.wg.Go(func() {
		if err := fn(g.ctx); err != nil {
			g.once.Do(func() {
				g.err = fmt.Errorf("%s: %w", name, err)
				g.cancel()
			})
		}
	})
}

// Wait waits until every task has returned and returns the first error,
// or nil if none failed. It releases the group's context.
func (g *Group) Wait() error {
	g.wg.Wait()
	g.cancel()
	return g.err
}
