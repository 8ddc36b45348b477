package testcluster

import (
	"net"
	"sync"
	"time"
)

// Pausing and crashing nodes. A paused node is frozen as a stopped process
// (SIGSTOP) would be: its network — Raft and its gRPC connections to and
// from other nodes — is held (faults.go), its apply path blocks, and its
// clients' gRPC connections stop reading and writing. Its timers
// still run, so a paused leader steps down on its own once its lease runs
// out rather than on resume; everything it had queued to send goes out
// after Resume, late and from an old term.

// applyGate blocks one node incarnation's apply path while held. The state
// machine calls wait after each event that changed a key (server OnApply,
// or fsm OnChange), on raft's apply goroutine, so holding the gate leaves
// entries written to the log but not applied.
type applyGate struct {
	mu   sync.Mutex
	held chan struct{} // non-nil while held; closed on release
}

func (g *applyGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
}

func (g *applyGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
}

func (g *applyGate) isHeld() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held != nil
}

// wait blocks while the gate is held and alive() is true: a node that is
// being stopped must be able to finish applying, or its shutdown hangs.
func (g *applyGate) wait(alive func() bool) {
	for {
		g.mu.Lock()
		ch := g.held
		g.mu.Unlock()
		if ch == nil || !alive() {
			return
		}
		select {
		case <-ch:
		case <-time.After(heldPoll):
		}
	}
}

// gatedApply gives node i's new incarnation a fresh apply gate and wraps
// the apply callback fn (which may be nil) so that it waits on the gate.
func (c *Cluster) gatedApply(i int, fn func(string)) func(string) {
	g := &applyGate{}
	c.mu.Lock()
	m := c.nodes[i]
	m.gate = g
	c.mu.Unlock()
	alive := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return m.alive && m.gate == g
	}
	return func(keyID string) {
		g.wait(alive)
		if fn != nil {
			fn(keyID)
		}
	}
}

func (c *Cluster) gateOf(i int) *applyGate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].gate
}

// HoldApply blocks node i's apply path: Raft keeps appending (and, on a
// leader, committing) entries, but the node's state machine stops after
// the next event that changes a key. Kill or Crash the node then to crash
// it between writing its log and applying it.
func (c *Cluster) HoldApply(i int) {
	if g := c.gateOf(i); g != nil {
		g.hold()
	}
}

// ReleaseApply lets node i apply again.
func (c *Cluster) ReleaseApply(i int) {
	if g := c.gateOf(i); g != nil {
		g.release()
	}
}

// Pause freezes node i (see the top of this file) until Resume. The
// cluster resumes it at the end of the test at the latest.
func (c *Cluster) Pause(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.nodes[i]
	g, l := m.gate, m.lis
	c.mu.Unlock()
	c.net.Hold(m.id)
	if g != nil {
		g.hold()
	}
	if l != nil {
		l.hold()
	}
	c.t.Cleanup(func() { c.Resume(i) })
}

// Resume undoes Pause: node i's queued messages go out, its apply path and
// its gRPC connections run again.
func (c *Cluster) Resume(i int) {
	c.mu.Lock()
	m := c.nodes[i]
	g, l := m.gate, m.lis
	c.mu.Unlock()
	if l != nil {
		l.release()
	}
	if g != nil {
		g.release()
	}
	c.net.Release(m.id)
}

// Crash kills node i as a power cut would: its gRPC connections drop at
// once, so clients get no answer for what was in flight (whatever the log
// holds survives on disk), then the node is killed like Kill. Its data
// directory stays for Restart.
func (c *Cluster) Crash(i int) {
	c.t.Helper()
	c.mu.Lock()
	m := c.nodes[i]
	l := m.lis
	c.mu.Unlock()
	c.net.Down(m.id)
	if l != nil {
		l.crash()
	}
	c.Kill(i)
}

// listenGRPC opens node i's gRPC listener for a new incarnation: a
// gateListener on the node's fixed address, over a shared endpoint of the
// network, so that other nodes' gRPC connections (dialled with
// Network.Dialer) cross their links, while test clients connect plainly.
func (c *Cluster) listenGRPC(i int) (net.Listener, error) {
	m := c.nodes[i]
	raw, err := c.net.ListenShared(m.id, m.grpcAddr)
	if err != nil {
		return nil, err
	}
	l := &gateListener{Listener: raw, conns: map[*gateConn]struct{}{}}
	c.mu.Lock()
	m.lis = l
	c.mu.Unlock()
	return l, nil
}

// gateListener is a node's gRPC listener whose connections can be frozen
// (Pause) or dropped all at once (Crash).
type gateListener struct {
	net.Listener

	mu      sync.Mutex
	conns   map[*gateConn]struct{}
	held    chan struct{} // non-nil while held; closed on release
	crashed bool          // refuse every connection from now on
}

// Accept wraps accepted connections; after a crash it drops them at once.
func (l *gateListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := &gateConn{Conn: raw, l: l, done: make(chan struct{})}
		l.mu.Lock()
		if l.crashed {
			l.mu.Unlock()
			raw.Close()
			continue
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		return c, nil
	}
}

func (l *gateListener) hold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = make(chan struct{})
	}
}

func (l *gateListener) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held != nil {
		close(l.held)
		l.held = nil
	}
}

// crash drops every connection and refuses new ones.
func (l *gateListener) crash() {
	l.mu.Lock()
	l.crashed = true
	conns := make([]*gateConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	l.release()
}

// wait blocks while the listener is held, until c is closed.
func (l *gateListener) wait(c *gateConn) error {
	for {
		l.mu.Lock()
		ch := l.held
		l.mu.Unlock()
		if ch == nil {
			return nil
		}
		select {
		case <-ch:
		case <-c.done:
			return net.ErrClosed
		}
	}
}

// gateConn is one accepted gRPC connection of a gateListener.
type gateConn struct {
	net.Conn
	l         *gateListener
	done      chan struct{}
	closeOnce sync.Once
}

func (c *gateConn) Read(p []byte) (int, error) {
	if err := c.l.wait(c); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		// A frozen node handles what arrived only once it runs again.
		if werr := c.l.wait(c); werr != nil {
			return 0, werr
		}
	}
	return n, err
}

func (c *gateConn) Write(p []byte) (int, error) {
	if err := c.l.wait(c); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (c *gateConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.done)
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		err = c.Conn.Close()
	})
	return err
}

// unfreeze ends a pause of a node that is being stopped, so that its
// shutdown does not wait on held connections and its next incarnation
// starts unpaused. Its links are already cut when it is killed, so
// nothing it had queued goes out.
func (c *Cluster) unfreeze(m *member) {
	c.mu.Lock()
	l := m.lis
	c.mu.Unlock()
	if l != nil {
		l.release()
	}
	c.net.Release(m.id)
}
