package bench

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// progressEvery is the longest a running step stays silent.
const progressEvery = 2 * time.Second

// Progress writes what a scenario is doing, for a human watching a long
// run: a line per phase, and for loops a line every 10% or every two
// seconds, whichever comes first. A nil *Progress writes nothing. It is
// safe for concurrent use.
type Progress struct {
	w     io.Writer
	start time.Time

	mu      sync.Mutex
	last    time.Time
	lastPct map[string]int
}

// NewProgress returns a Progress writing to w, or nil (silence) when w is nil.
func NewProgress(w io.Writer) *Progress {
	if w == nil {
		return nil
	}
	return &Progress{w: w, start: time.Now(), lastPct: make(map[string]int)}
}

// Phasef reports the start of a phase.
func (p *Progress) Phasef(format string, args ...any) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = time.Now()
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// Step reports that done of total units of what are finished. It writes
// when another 10% is done or two seconds have passed since the last line.
func (p *Progress) Step(what string, done, total int) {
	if p == nil || total <= 0 {
		return
	}
	pct := done * 100 / total
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if pct/10 <= p.lastPct[what]/10 && now.Sub(p.last) < progressEvery && done != total {
		return
	}
	if done == total && p.lastPct[what] == 100 {
		return
	}
	p.lastPct[what] = pct
	p.last = now
	fmt.Fprintf(p.w, "[%6.1fs]   %s: %d/%d (%d%%)\n", time.Since(p.start).Seconds(), what, done, total, pct)
}

// Ticker reports every two seconds, until the returned stop is called,
// the line that status returns. stop waits for the reporting goroutine.
func (p *Progress) Ticker(status func() string) (stop func()) {
	if p == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.Phasef("  %s", status())
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}
