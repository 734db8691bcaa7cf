package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultRedisServer is the Redis server the baseline starts: Debian's
// redis-server package.
const DefaultRedisServer = "redis-server"

// redisServer is a redis-server child process on a free loopback port,
// without persistence.
type redisServer struct {
	*child
	addr    string
	version string
}

var (
	redisReady   = regexp.MustCompile(`[Rr]eady to accept connections`)
	redisVersion = regexp.MustCompile(`v=(\S+)`)
)

// startRedis starts path (redis-server) on a free loopback port with its
// files in dir, and waits until it accepts connections. The caller must
// call stop.
func startRedis(ctx context.Context, path, dir string) (*redisServer, error) {
	bin, err := lookRedis(path)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	version := "unknown"
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		if m := redisVersion.FindStringSubmatch(string(out)); m != nil {
			version = m[1]
		}
	}
	var lastErr error
	for range 3 { // the free port may be taken between looking and listening
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		ch, err := Command{Path: bin}.start(childSpec{
			name: "redis-server",
			args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
				"--dir", dir, "--daemonize", "no", "--loglevel", "notice", "--logfile", ""},
			ready: redisReady,
		})
		if err != nil {
			return nil, err
		}
		if _, err := ch.waitReady(ctx, 30*time.Second); err != nil {
			lastErr = errors.Join(err, ch.stop())
			continue
		}
		return &redisServer{child: ch, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), version: version}, nil
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

// lookRedis finds the redis-server executable path names ("" for the default).
func lookRedis(path string) (string, error) {
	if path == "" {
		path = DefaultRedisServer
	}
	bin, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("redis baseline: %w (install Debian's redis-server package)", err)
	}
	return bin, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// redisConn is one connection to Redis speaking RESP2: enough of the
// protocol for GET, SET, MGET and MSET. It is not safe for concurrent use.
type redisConn struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

// redisError is an error reply from Redis.
type redisError string

// Error implements error.
func (e redisError) Error() string { return "redis: " + string(e) }

func dialRedis(ctx context.Context, addr string) (*redisConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial redis: %w", err)
	}
	return &redisConn{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}, nil
}

// Close closes the connection.
func (c *redisConn) Close() error { return c.conn.Close() }

// do sends one command and reads its reply: a string (simple or bulk),
// nil (a null bulk string or array), an int64, a []any, or a redisError
// as the error.
func (c *redisConn) do(args ...string) (any, error) {
	writeCommand(c.w, args)
	if err := c.w.Flush(); err != nil {
		return nil, fmt.Errorf("redis %s: %w", args[0], err)
	}
	v, err := readReply(c.r)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", args[0], err)
	}
	if e, ok := v.(redisError); ok {
		return nil, e
	}
	return v, nil
}

// writeCommand writes args as a RESP array of bulk strings.
func writeCommand(w *bufio.Writer, args []string) {
	w.WriteByte('*')
	w.WriteString(strconv.Itoa(len(args)))
	w.WriteString("\r\n")
	for _, a := range args {
		w.WriteByte('$')
		w.WriteString(strconv.Itoa(len(a)))
		w.WriteString("\r\n")
		w.WriteString(a)
		w.WriteString("\r\n")
	}
}

// maxBulk bounds a bulk string or array read from Redis.
const maxBulk = 64 << 20

// readReply reads one RESP2 reply. An error reply is returned as a
// redisError value, not as the error.
func readReply(r *bufio.Reader) (any, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return nil, fmt.Errorf("malformed reply line %q", line)
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+':
		return body, nil
	case '-':
		return redisError(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("malformed integer reply %q", body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxBulk {
			return nil, fmt.Errorf("malformed bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return nil, errors.New("bulk string not terminated by CRLF")
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > maxBulk {
			return nil, fmt.Errorf("malformed array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			if out[i], err = readReply(r); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", kind)
}

// redisPool is a fixed set of connections, one per concurrent user.
type redisPool struct {
	conns chan *redisConn
	all   []*redisConn
}

func newRedisPool(ctx context.Context, addr string, n int) (*redisPool, error) {
	p := &redisPool{conns: make(chan *redisConn, n)}
	for range n {
		c, err := dialRedis(ctx, addr)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.all = append(p.all, c)
		p.conns <- c
	}
	return p, nil
}

// do runs one command on a free connection. A connection whose command
// failed on the transport is not reused.
func (p *redisPool) do(ctx context.Context, args ...string) (any, error) {
	var c *redisConn
	select {
	case c = <-p.conns:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	v, err := c.do(args...)
	var re redisError
	if err != nil && !errors.As(err, &re) {
		c.Close()
		return nil, err
	}
	p.conns <- c
	return v, err
}

// Close closes every connection.
func (p *redisPool) Close() {
	for _, c := range p.all {
		c.Close()
	}
}
