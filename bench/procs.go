package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command is how the bench starts Herald as a child process: `herald
// verifier ...` for verifiers in their own processes, `herald bench
// fanout-consumer ...` for the raw JetStream consumers they are compared
// with. The herald command passes its own executable.
type Command struct {
	// Path is the herald executable. Required.
	Path string
	// Args come before the subcommand, e.g. none for the herald binary.
	Args []string
	// Env is added to the bench's own environment.
	Env []string
}

// stopTimeout is how long a child gets to exit after SIGTERM before it is killed.
const stopTimeout = 10 * time.Second

// tailLines is how many lines of a child's output are kept for error messages.
const tailLines = 20

// child is a running child process. Its output is read until it exits;
// every line is kept in a short tail and matched against its ready pattern.
type child struct {
	name string
	cmd  *exec.Cmd

	ready   chan []string // receives the ready line's submatches, once
	done    chan struct{} // closed once the process has exited and its output is read
	waitErr error         // set before done is closed

	mu   sync.Mutex
	tail []string
}

// childSpec describes a child to start.
type childSpec struct {
	name string
	args []string // after Command.Args
	// ready matches the line (on stdout or stderr) that says the child is
	// ready; its submatches are what waitReady returns.
	ready *regexp.Regexp
	// stdout, if not nil, receives every line of standard output after the
	// ready line, on the reading goroutine.
	stdout func(line string)
}

// start starts a child. The caller must call stop on every path.
func (c Command) start(spec childSpec) (*child, error) {
	if c.Path == "" {
		return nil, errors.New("start child: no herald executable given")
	}
	cmd := exec.Command(c.Path, append(append([]string(nil), c.Args...), spec.args...)...)
	// The bench's NATS servers are plain: a child verifier must not pick
	// up herald dev's credential from the working directory.
	cmd.Env = append(append(os.Environ(), "HERALD_NATS_DISCOVER=false"), c.Env...)
	setDeathSignal(cmd)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	ch := &child{name: spec.name, cmd: cmd, ready: make(chan []string, 1), done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	var once sync.Once
	read := func(r io.Reader, handle func(string)) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		isReady := false
		for sc.Scan() {
			line := sc.Text()
			if isReady && handle != nil {
				handle(line)
				continue
			}
			ch.keep(line)
			if m := spec.ready.FindStringSubmatch(line); m != nil {
				once.Do(func() { ch.ready <- m })
				isReady = true
			}
		}
		_, _ = io.Copy(io.Discard, r) // a line over the limit: keep the child from blocking
	}
	go func() {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); read(stdout, spec.stdout) }()
		go func() { defer wg.Done(); read(stderr, nil) }()
		wg.Wait() // every read before Wait, which closes the pipes
		ch.waitErr = cmd.Wait()
		close(ch.done)
	}()
	return ch, nil
}

func (ch *child) keep(line string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.tail = append(ch.tail, line)
	if len(ch.tail) > tailLines {
		ch.tail = ch.tail[len(ch.tail)-tailLines:]
	}
}

// output returns the last lines the child wrote, for error messages.
func (ch *child) output() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return strings.Join(ch.tail, "\n")
}

// pid returns the child's process id.
func (ch *child) pid() int { return ch.cmd.Process.Pid }

// waitReady returns the submatches of the child's ready line once it has
// written it, or an error if it exits first, ctx ends or timeout passes.
func (ch *child) waitReady(ctx context.Context, timeout time.Duration) ([]string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-ch.ready:
		return m, nil
	case <-ch.done:
		return nil, fmt.Errorf("%s exited before it was ready (%v):\n%s", ch.name, ch.waitErr, ch.output())
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, fmt.Errorf("%s not ready within %s:\n%s", ch.name, timeout, ch.output())
	}
}

// stop asks the child to shut down (SIGTERM), kills it if it has not
// exited within stopTimeout, and waits for it. It reports a child that
// had to be killed or exited with an error. It is safe to call more than
// once.
func (ch *child) stop() error {
	select {
	case <-ch.done:
	default:
		_ = ch.cmd.Process.Signal(syscall.SIGTERM) // fails only if it has exited already
		select {
		case <-ch.done:
		case <-time.After(stopTimeout):
			_ = ch.cmd.Process.Kill()
			<-ch.done
			return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", ch.name, stopTimeout)
		}
	}
	if ch.waitErr != nil {
		return fmt.Errorf("%s: %w:\n%s", ch.name, ch.waitErr, ch.output())
	}
	return nil
}

// stopAll stops children concurrently and returns every error.
func stopAll(children []*child) error {
	errs := make([]error, len(children))
	var wg sync.WaitGroup
	for i, ch := range children {
		if ch == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = ch.stop()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// verifierReady matches the ready line of `herald verifier` and captures
// its HTTP address.
var verifierReady = regexp.MustCompile(`msg="verifier ready".* http=(\S+)`)

// verifierSpec describes a `herald verifier` child on a free loopback port
// with its data under dir, following natsURL. upstream, if not empty,
// runs it in proxy mode.
func verifierSpec(name, dir, natsURL, upstream string) childSpec {
	args := []string{"verifier", "--http", "127.0.0.1:0", "--data", dir, "--nats", natsURL,
		"--issuer", benchIssuer, "--audience", benchAudience, "--id", name, "--log-level", "info"}
	if upstream != "" {
		args = append(args, "--upstream", upstream)
	}
	return childSpec{name: name, args: args, ready: verifierReady}
}

// memory is what /proc/PID/status says of a process's memory.
type memory struct {
	// RSS is the resident set size (VmRSS).
	RSS uint64 `json:"rss_bytes"`
	// Peak is the largest RSS so far (VmHWM).
	Peak uint64 `json:"peak_rss_bytes"`
}

// readMemory reads the memory of process pid (0: this process) from /proc.
func readMemory(pid int) (memory, error) {
	p := "self"
	if pid != 0 {
		p = strconv.Itoa(pid)
	}
	data, err := os.ReadFile(filepath.Join("/proc", p, "status"))
	if err != nil {
		return memory{}, fmt.Errorf("read memory of process %s: %w", p, err)
	}
	var m memory
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			m.RSS = kb << 10
		case "VmHWM:":
			m.Peak = kb << 10
		}
	}
	return m, nil
}
