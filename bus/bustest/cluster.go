package bustest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldsec/herald/bus"
	"github.com/heraldsec/herald/bus/natsserver"
)

// ClusterReadyTimeout bounds how long RunCluster waits for the cluster to
// elect its JetStream meta leader. Elections take 4 to 9 s with
// nats-server's default timeouts, more on a loaded machine.
const ClusterReadyTimeout = 60 * time.Second

// ClusterDomain is the JetStream domain of a RunCluster cluster: clients of
// a RunLeaf leaf node connect with bus.Config.JetStreamDomain set to it.
const ClusterDomain = "hub"

// Cluster is a JetStream cluster of embedded servers on loopback routes,
// each storing in its own temporary directory. A node can be shut down and
// restarted on the same ports and store, as a machine that reboots. Its
// methods are safe for concurrent use.
type Cluster struct {
	tb   testing.TB
	name string

	mu      sync.Mutex
	cfgs    []natsserver.Config
	servers []*natsserver.Server // nil while a node is down
}

// RunCluster starts n embedded JetStream servers (n ≥ 3 for streams with
// 3 replicas) clustered over loopback routes, each also accepting leaf
// node connections, and waits until the cluster has a JetStream meta
// leader and every node is current with it. Every node is shut down when
// the test ends.
func RunCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	if testing.Short() {
		tb.Skip("a NATS cluster test: skipped under -short")
	}
	if n < 2 {
		tb.Fatalf("run cluster: %d nodes; a cluster needs at least 2", n)
	}
	// Route and leaf ports are fixed up front: every node names all routes
	// at start, and a restarted node comes back on the same ones.
	ports := freePorts(tb, 2*n)
	routes := make([]string, n)
	for i := range n {
		routes[i] = "nats-route://" + ports[i]
	}
	c := &Cluster{tb: tb, name: "herald-test", cfgs: make([]natsserver.Config, n), servers: make([]*natsserver.Server, n)}
	base := tb.TempDir()
	for i := range n {
		c.cfgs[i] = natsserver.Config{
			Name:     fmt.Sprintf("n%d", i+1),
			Listen:   "127.0.0.1:0",
			StoreDir: filepath.Join(base, fmt.Sprintf("n%d", i+1)),
			Cluster:  natsserver.ClusterConfig{Name: c.name, Listen: ports[i], Routes: routes},
			Leaf:     natsserver.LeafConfig{Listen: ports[n+i]},
			// Leaf node clients address the cluster's JetStream by domain.
			JetStreamDomain: ClusterDomain,
		}
	}
	// The nodes start together: each waits for its routes before it is
	// ready for clients.
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.start(i)
		}()
	}
	wg.Wait()
	tb.Cleanup(c.shutdownAll)
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("run cluster: %v", err)
	}
	c.WaitReady(tb)
	return c
}

// start starts node i on its configured ports and store; the first start
// fixes its client port for later restarts.
func (c *Cluster) start(i int) error {
	c.mu.Lock()
	cfg := c.cfgs[i]
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("node %s: %w", cfg.Name, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.servers[i] = s
	c.cfgs[i].Listen = s.Addr().String()
	return nil
}

func (c *Cluster) shutdownAll() {
	c.mu.Lock()
	servers := append([]*natsserver.Server(nil), c.servers...)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range servers {
		if s != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Shutdown()
			}()
		}
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(shutdownTimeout):
		// Fail loudly rather than hang the whole test binary.
		c.tb.Errorf("cluster nodes did not shut down within %s", shutdownTimeout)
	}
}

// shutdownTimeout bounds how long the end of a test waits for the nodes.
const shutdownTimeout = 30 * time.Second

// Len returns the number of nodes, up or down.
func (c *Cluster) Len() int { return len(c.cfgs) }

// Server returns node i, or nil while it is down.
func (c *Cluster) Server(i int) *natsserver.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servers[i]
}

// Index returns the index of the node named name, or -1.
func (c *Cluster) Index(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cfg := range c.cfgs {
		if cfg.Name == name {
			return i
		}
	}
	return -1
}

// URL returns the client URLs of every node, comma-separated, as a
// component connecting to the cluster is given them. The URLs of nodes
// that are down are included: clients skip them and come back to them.
func (c *Cluster) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		urls[i] = "nats://" + cfg.Listen
	}
	return strings.Join(urls, ",")
}

// LeafURLs returns the nats-leaf:// URLs a leaf node links to the cluster with.
func (c *Cluster) LeafURLs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		urls[i] = "nats-leaf://" + cfg.Leaf.Listen
	}
	return urls
}

// Connect connects to the cluster with every node's URL and closes the
// connection when the test ends.
func (c *Cluster) Connect(tb testing.TB) *bus.Conn {
	tb.Helper()
	return ConnectURL(tb, c.URL())
}

// Shutdown stops node i and waits until it has stopped: to the others it
// is a machine that died.
func (c *Cluster) Shutdown(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
	}
}

// Restart starts node i again, after Shutdown, on its ports and store.
func (c *Cluster) Restart(tb testing.TB, i int) *natsserver.Server {
	tb.Helper()
	if c.Server(i) != nil {
		tb.Fatalf("restart node %d: it is running", i)
	}
	if err := c.start(i); err != nil {
		tb.Fatalf("restart: %v", err)
	}
	return c.Server(i)
}

// WaitReady waits until the running nodes have a JetStream meta leader,
// every one of them is current with it, and the leader knows them all to
// be online (so that streams with as many replicas can be placed).
func (c *Cluster) WaitReady(tb testing.TB) {
	tb.Helper()
	WaitFor(tb, ClusterReadyTimeout, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		leader, running := "", 0
		var peers []string
		for i, s := range c.servers {
			if s == nil {
				continue
			}
			running++
			ns := s.NATS()
			if ns.JetStreamIsLeader() {
				leader, peers = c.cfgs[i].Name, ns.JetStreamClusterPeers()
			}
			if !ns.JetStreamIsCurrent() {
				return fmt.Errorf("node %s is not current with the meta leader", c.cfgs[i].Name)
			}
		}
		if leader == "" {
			return errors.New("no JetStream meta leader")
		}
		// Streams are placed on the peers the leader knows to be online.
		if len(peers) < running {
			return fmt.Errorf("meta leader %s sees %d of %d nodes online: %v", leader, len(peers), running, peers)
		}
		return nil
	})
}

// freePorts returns n distinct free loopback addresses, host:port. They
// are free when returned; a port taken by another process in between
// makes the server fail to start, loudly.
func freePorts(tb testing.TB, n int) []string {
	tb.Helper()
	out := make([]string, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("reserve port: %v", err)
		}
		defer ln.Close() // held until all are chosen, so they are distinct
		out[i] = ln.Addr().String()
	}
	return out
}

// RunLeaf starts an embedded server without JetStream linked as a leaf
// node to the hub at hubURLs (nats-leaf://), on a random loopback client
// port, and waits until the link is up. Its clients reach the hub's
// streams through it by naming the hub's JetStream domain
// (bus.Config.JetStreamDomain; ClusterDomain for RunCluster). It is shut
// down when the test ends.
func RunLeaf(tb testing.TB, hubURLs ...string) *natsserver.Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natsserver.Start(ctx, natsserver.Config{
		Name: "leaf", Listen: "127.0.0.1:0", NoJetStream: true,
		Leaf: natsserver.LeafConfig{Remotes: hubURLs},
	})
	if err != nil {
		tb.Fatalf("start leaf: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	WaitFor(tb, 20*time.Second, func() error {
		if n := s.NATS().NumLeafNodes(); n != 1 {
			return fmt.Errorf("leaf node has %d links to the hub, want 1", n)
		}
		return nil
	})
	return s
}
