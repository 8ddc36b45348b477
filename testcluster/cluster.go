// Package testcluster runs an in-process raftkms cluster for tests: N nodes
// on 127.0.0.1 with real TCP (through a fault-injecting Network) and real
// BoltDB under t.TempDir(). Tests start, kill, restart, partition and heal
// nodes, wait for a leader, and compare the nodes' state. In an API
// cluster, node-to-node gRPC crosses the same Network as Raft; test
// clients connect to the nodes directly.
package testcluster

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/server"
)

// LogLevelEnv names the environment variable that raises the nodes' log
// level (trace, debug, info, warn, error); the default is warn.
const LogLevelEnv = "RAFTKMS_TEST_LOG"

// Test timing: a leader fails over within a few hundred milliseconds.
const (
	testHeartbeat = 100 * time.Millisecond
	testLease     = 50 * time.Millisecond
	testCommit    = 10 * time.Millisecond
	// WaitTimeout bounds every Wait helper.
	WaitTimeout = 20 * time.Second
)

// Option changes how a Cluster is built.
type Option func(*options)

type options struct {
	snapshotThreshold uint64
	trailingLogs      uint64
	snapshotInterval  time.Duration
	level             hclog.Level
	nodeConfig        func(i int, cfg *raftnode.Config)
	fsmConfig         func(i int, cfg *fsm.Config)
	afterStart        func(i int, n *raftnode.Node, f *fsm.FSM)
	beforeStop        func(i int)
	api               *apiOptions // nil: Raft and state machine only
	logTee            io.Writer   // also receives every log line
}

// WithLogCapture also sends every node's log lines to w (tests search them
// for secrets).
func WithLogCapture(w io.Writer) Option {
	return func(o *options) { o.logTee = w }
}

// WithSnapshots makes nodes snapshot every threshold entries and keep only
// trailing entries after a snapshot, checked every 50 ms: small values force
// snapshot installs on lagging followers.
func WithSnapshots(threshold, trailing uint64) Option {
	return func(o *options) {
		o.snapshotThreshold, o.trailingLogs, o.snapshotInterval = threshold, trailing, 50*time.Millisecond
	}
}

// WithLogLevel sets the nodes' log level (overridden by LogLevelEnv).
func WithLogLevel(level hclog.Level) Option {
	return func(o *options) { o.level = level }
}

// WithNodeConfig lets a test change each node's configuration before it
// starts (also on Restart).
func WithNodeConfig(fn func(i int, cfg *raftnode.Config)) Option {
	return func(o *options) { o.nodeConfig = fn }
}

// WithFSMConfig lets a test change each node's state machine configuration
// (for example to set OnChange) before it is made (also on Restart).
func WithFSMConfig(fn func(i int, cfg *fsm.Config)) Option {
	return func(o *options) { o.fsmConfig = fn }
}

// WithAfterStart runs fn after each node starts (also after Restart), for
// example to attach a gRPC server to it.
func WithAfterStart(fn func(i int, n *raftnode.Node, f *fsm.FSM)) Option {
	return func(o *options) { o.afterStart = fn }
}

// WithBeforeStop runs fn before a node is killed or shut down, to stop what
// WithAfterStart attached.
func WithBeforeStop(fn func(i int)) Option {
	return func(o *options) { o.beforeStop = fn }
}

// Cluster is a running test cluster. Its methods are safe for concurrent use,
// except that Kill, Restart and the Wait helpers must run on the test's
// goroutine (they may call t.Fatal).
type Cluster struct {
	t     testing.TB
	opts  options
	net   *Network
	peers []raftnode.Peer
	logw  *testWriter

	mu    sync.Mutex
	nodes []*member
}

type member struct {
	id, addr, dir string
	node          *raftnode.Node
	fsm           *fsm.FSM
	alive         bool

	grpcAddr string         // API mode: the node's gRPC address, kept across restarts
	srv      *server.Server // API mode: the whole node

	// Set by the fault and membership helpers (pause.go, membership.go).
	gate    *applyGate    // holds this incarnation's apply path
	lis     *gateListener // API mode: this incarnation's gRPC listener
	joined  bool          // added with AddNode: starts without bootstrap peers
	removed bool          // taken out of the Raft configuration with RemoveNode
}

// New starts an n-node cluster and registers its shutdown with t.Cleanup. It
// does not wait for a leader (see WaitForLeader).
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	o := options{level: hclog.Warn}
	for _, opt := range opts {
		opt(&o)
	}
	if env := os.Getenv(LogLevelEnv); env != "" {
		o.level = hclog.LevelFromString(env)
	}
	c := &Cluster{t: t, opts: o, net: NewNetwork(), logw: &testWriter{t: t, tee: o.logTee}}
	// Cleanups run last-in first-out: make the directories first, so that
	// they are removed only after the nodes are shut down.
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = t.TempDir()
	}
	t.Cleanup(c.shutdown)

	eps := make([]*Endpoint, n)
	for i := range n {
		id := fmt.Sprintf("node%d", i)
		ep, err := c.net.Listen(id, "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testcluster: listen: %v", err)
		}
		eps[i] = ep
		addr := ep.Addr().String()
		c.peers = append(c.peers, raftnode.Peer{ID: id, Addr: addr})
		c.nodes = append(c.nodes, &member{id: id, addr: addr, dir: filepath.Join(dirs[i], id)})
		if o.api != nil {
			c.nodes[i].grpcAddr = freeAddr(t)
		}
	}
	for i := range n {
		if err := c.start(i, eps[i]); err != nil {
			t.Fatalf("testcluster: start node %d: %v", i, err)
		}
	}
	return c
}

// start makes a fresh state machine and starts node i on its data directory.
func (c *Cluster) start(i int, ep *Endpoint) error {
	m := c.nodes[i]
	if c.opts.api != nil {
		return c.startAPI(i, ep)
	}
	fcfg := fsm.Config{}
	if c.opts.fsmConfig != nil {
		c.opts.fsmConfig(i, &fcfg)
	}
	fcfg.OnChange = c.gatedApply(i, fcfg.OnChange)
	f, err := fsm.New(fcfg)
	if err != nil {
		ep.Close()
		return err
	}
	cfg := c.raftConfig(i, f, ep)
	node, err := raftnode.New(cfg)
	if err != nil {
		ep.Close()
		return err
	}
	c.mu.Lock()
	m.node, m.fsm, m.alive = node, f, true
	c.mu.Unlock()
	if c.opts.afterStart != nil {
		c.opts.afterStart(i, node, f)
	}
	return nil
}

// raftConfig is node i's Raft configuration with the test timings.
func (c *Cluster) raftConfig(i int, f *fsm.FSM, ep *Endpoint) raftnode.Config {
	m := c.nodes[i]
	cfg := raftnode.Config{
		NodeID:             m.id,
		DataDir:            m.dir,
		Peers:              c.bootstrapPeers(m),
		FSM:                f,
		Logger:             hclog.New(&hclog.LoggerOptions{Name: m.id, Output: c.logw, Level: c.opts.level}),
		StreamLayer:        ep,
		HeartbeatTimeout:   testHeartbeat,
		ElectionTimeout:    testHeartbeat,
		LeaderLeaseTimeout: testLease,
		CommitTimeout:      testCommit,
		ApplyTimeout:       5 * time.Second,
		TransportTimeout:   2 * time.Second,
		SnapshotThreshold:  c.opts.snapshotThreshold,
		SnapshotInterval:   c.opts.snapshotInterval,
		TrailingLogs:       c.opts.trailingLogs,
	}
	if c.opts.nodeConfig != nil {
		c.opts.nodeConfig(i, &cfg)
	}
	return cfg
}

// shutdown stops every live node; it runs at t.Cleanup.
func (c *Cluster) shutdown() {
	for i := range c.nodes {
		c.stop(i, false)
	}
	c.logw.stop()
}

// stop takes node i down; abrupt cuts its links first, so it says no
// goodbye to anyone.
func (c *Cluster) stop(i int, abrupt bool) bool {
	c.mu.Lock()
	m := c.nodes[i]
	if !m.alive {
		c.mu.Unlock()
		return false
	}
	m.alive = false
	c.mu.Unlock()
	if c.opts.beforeStop != nil {
		c.opts.beforeStop(i)
	}
	if abrupt {
		c.net.Down(m.id)
	}
	c.unfreeze(m) // a stopped node is paused no more (pause.go)
	if m.srv != nil {
		m.srv.Stop()
		return true
	}
	if err := m.node.Shutdown(); err != nil {
		c.t.Logf("testcluster: shutdown %s: %v", m.id, err)
	}
	return true
}

// Kill stops node i abruptly: its links are cut, then Raft is shut down. Its
// data directory stays for Restart.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	if !c.stop(i, true) {
		c.t.Fatalf("testcluster: Kill(%d): node is not running", i)
	}
}

// Restart starts a killed node again on the same address and data directory
// with a new state machine, which Raft restores from the snapshot and log.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.nodes[i]
	alive := m.alive
	c.mu.Unlock()
	if alive {
		c.t.Fatalf("testcluster: Restart(%d): node is running", i)
	}
	ep, err := c.net.Listen(m.id, m.addr)
	if err != nil {
		c.t.Fatalf("testcluster: Restart(%d): listen on %s: %v", i, m.addr, err)
	}
	c.net.Up(m.id)
	if err := c.start(i, ep); err != nil {
		c.t.Fatalf("testcluster: Restart(%d): %v", i, err)
	}
}

// N is the number of nodes, running or not.
func (c *Cluster) N() int { return len(c.nodes) }

// ID is node i's ID.
func (c *Cluster) ID(i int) string { return c.nodes[i].id }

// Addr is node i's Raft address.
func (c *Cluster) Addr(i int) string { return c.nodes[i].addr }

// DataDir is node i's data directory.
func (c *Cluster) DataDir(i int) string { return c.nodes[i].dir }

// Node is node i's current Raft node (a shut-down one if it was killed).
func (c *Cluster) Node(i int) *raftnode.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].node
}

// FSM is node i's current state machine.
func (c *Cluster) FSM(i int) *fsm.FSM {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].fsm
}

// Alive reports whether node i is running.
func (c *Cluster) Alive(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].alive
}

// Index returns the index of the node with this ID, or -1.
func (c *Cluster) Index(id string) int {
	for i, m := range c.nodes {
		if m.id == id {
			return i
		}
	}
	return -1
}

// Network is the cluster's network, for finer faults than Partition.
func (c *Cluster) Network() *Network { return c.net }

// Partition splits the cluster into groups of node indexes that reach only
// their own group; nodes in no group are isolated.
func (c *Cluster) Partition(groups ...[]int) {
	ids := make([][]string, len(groups))
	for g, idx := range groups {
		for _, i := range idx {
			ids[g] = append(ids[g], c.nodes[i].id)
		}
	}
	c.net.Partition(ids...)
}

// Isolate cuts node i off from every other node.
func (c *Cluster) Isolate(i int) { c.net.Isolate(c.nodes[i].id) }

// Heal undoes Partition and Isolate (killed nodes stay down).
func (c *Cluster) Heal() { c.net.Heal() }

// live returns the indexes and nodes that are running.
func (c *Cluster) live() ([]int, []*raftnode.Node, []*fsm.FSM) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var idx []int
	var nodes []*raftnode.Node
	var fsms []*fsm.FSM
	for i, m := range c.nodes {
		if m.alive {
			idx, nodes, fsms = append(idx, i), append(nodes, m.node), append(fsms, m.fsm)
		}
	}
	return idx, nodes, fsms
}

// testWriter sends log lines to t.Log until the cluster is shut down.
type testWriter struct {
	mu      sync.Mutex
	t       testing.TB
	tee     io.Writer
	stopped bool
}

var _ io.Writer = (*testWriter)(nil)

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tee != nil {
		w.tee.Write(p)
	}
	if !w.stopped {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}
