package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ErrLinkDown is what reads, writes and dials fail with on a cut link.
var ErrLinkDown = errors.New("faultnet: link is down")

// prefaceMagic starts every connection: the dialer then sends its node ID,
// so the acceptor knows which link the connection belongs to.
const prefaceMagic = "FNET1"

// link is one direction between two nodes.
type link struct{ from, to string }

// Network is real TCP on 127.0.0.1 with switches: a test can cut the link
// between two nodes in one or both directions, take a node off the network,
// and heal. Every connection is tagged with the node IDs at both ends and
// checks its link on each read and write; cutting a link also closes the
// connections already on it, so blocked reads fail at once.
//
// A node may own several endpoints: its Raft endpoint (Listen) and its gRPC
// port (ListenShared), which also serves clients from outside the network.
// A link is between nodes, so it carries both planes: cutting it stops Raft
// and node-to-node gRPC (forwarding, read index) alike.
type Network struct {
	mu    sync.RWMutex
	addrs map[string]string // listen address -> node ID
	cut   map[link]bool     // one-way cuts
	down  map[string]bool   // nodes cut from everyone (killed)
	conns map[*faultConn]struct{}

	fx faults // delays, drops, blackholes and held nodes (faults.go)
}

// NewNetwork makes a network with every link up.
func NewNetwork() *Network {
	return &Network{
		addrs: map[string]string{},
		cut:   map[link]bool{},
		down:  map[string]bool{},
		conns: map[*faultConn]struct{}{},
	}
}

// Listen opens node id's endpoint on addr ("127.0.0.1:0" for a fresh port).
// The endpoint is a raftnode.StreamLayer.
func (nw *Network) Listen(id, addr string) (*Endpoint, error) {
	return nw.listen(id, addr, false)
}

// ListenShared opens an endpoint of node id that also accepts clients from
// outside the network: a connection that starts with the network's preface
// is a peer's, on a link like any other; any other connection is passed
// on untouched, with no faults. A node's gRPC port is one: peers dial it
// with Dialer, test clients plainly.
func (nw *Network) ListenShared(id, addr string) (*Endpoint, error) {
	return nw.listen(id, addr, true)
}

func (nw *Network) listen(id, addr string, shared bool) (*Endpoint, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	nw.mu.Lock()
	nw.addrs[l.Addr().String()] = id
	nw.mu.Unlock()
	ep := &Endpoint{nw: nw, id: id, l: l, shared: shared, acceptCh: make(chan net.Conn), closeCh: make(chan struct{})}
	go ep.acceptLoop()
	return ep, nil
}

// Dialer is node id's dialer for grpc.WithContextDialer: its connections
// to other nodes' endpoints cross the network, tagged with id, as Raft's
// do. The context bounds the dial, including the wait while id is held.
func (nw *Network) Dialer(id string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		return nw.dial(ctx, id, addr)
	}
}

// up reports whether data from one node reaches another. An unknown node
// ("") is always reachable.
func (nw *Network) up(from, to string) bool {
	nw.mu.RLock()
	defer nw.mu.RUnlock()
	return nw.upLocked(from, to)
}

func (nw *Network) upLocked(from, to string) bool {
	return !nw.down[from] && !nw.down[to] && !nw.cut[link{from, to}]
}

// change applies fn to the switches, then closes connections on links that
// are now down in either direction.
func (nw *Network) change(fn func()) {
	nw.mu.Lock()
	fn()
	var broken []*faultConn
	for c := range nw.conns {
		if !nw.upLocked(c.local, c.remote) || !nw.upLocked(c.remote, c.local) {
			broken = append(broken, c)
		}
	}
	nw.mu.Unlock()
	for _, c := range broken {
		c.Close()
	}
}

// Cut stops data from one node to another; the other direction is unchanged.
func (nw *Network) Cut(from, to string) {
	nw.change(func() { nw.cut[link{from, to}] = true })
}

// CutBoth cuts both directions between a and b.
func (nw *Network) CutBoth(a, b string) {
	nw.change(func() {
		nw.cut[link{a, b}] = true
		nw.cut[link{b, a}] = true
	})
}

// Partition splits the nodes into groups that reach only their own group.
// Nodes in no group are isolated from everyone.
func (nw *Network) Partition(groups ...[]string) {
	group := map[string]int{}
	for g, ids := range groups {
		for _, id := range ids {
			group[id] = g + 1
		}
	}
	nw.change(func() {
		ids := nw.idsLocked()
		for _, a := range ids {
			for _, b := range ids {
				if a != b && (group[a] == 0 || group[a] != group[b]) {
					nw.cut[link{a, b}] = true
				}
			}
		}
	})
}

// Isolate cuts every link to and from id.
func (nw *Network) Isolate(id string) {
	nw.change(func() {
		for _, other := range nw.idsLocked() {
			if other != id {
				nw.cut[link{id, other}] = true
				nw.cut[link{other, id}] = true
			}
		}
	})
}

// Heal restores every cut link. Nodes taken down with Down stay down.
func (nw *Network) Heal() {
	nw.change(func() { clear(nw.cut) })
}

// Down takes a node off the network (its links are cut, whatever Heal does)
// until Up.
func (nw *Network) Down(id string) {
	nw.change(func() { nw.down[id] = true })
}

// Up puts a node taken down with Down back on the network.
func (nw *Network) Up(id string) {
	nw.change(func() { delete(nw.down, id) })
}

func (nw *Network) idsLocked() []string {
	var ids []string
	seen := map[string]bool{}
	for _, id := range nw.addrs {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids
}

func (nw *Network) track(c *faultConn) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	if !nw.upLocked(c.local, c.remote) || !nw.upLocked(c.remote, c.local) {
		return false
	}
	nw.conns[c] = struct{}{}
	return true
}

func (nw *Network) untrack(c *faultConn) {
	nw.mu.Lock()
	delete(nw.conns, c)
	nw.mu.Unlock()
}

// Endpoint is one node's attachment to a Network: a listener and a dialer.
type Endpoint struct {
	nw        *Network
	id        string
	l         net.Listener
	shared    bool // also accepts outside clients (ListenShared)
	acceptCh  chan net.Conn
	closeCh   chan struct{}
	closeOnce sync.Once
}

// Accept returns the next connection from a peer whose link to this node is
// up.
func (ep *Endpoint) Accept() (net.Conn, error) {
	select {
	case c := <-ep.acceptCh:
		return c, nil
	case <-ep.closeCh:
		return nil, net.ErrClosed
	}
}

// Close stops listening.
func (ep *Endpoint) Close() error {
	ep.closeOnce.Do(func() {
		close(ep.closeCh)
		ep.l.Close()
	})
	return nil
}

// Addr is the address peers dial.
func (ep *Endpoint) Addr() net.Addr { return ep.l.Addr() }

// Dial connects to the node listening on addr, if the link is up.
func (ep *Endpoint) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	// A held (paused) node dials nobody until it is released, however
	// long that takes; the timeout starts then.
	if err := ep.nw.waitHeld(ep.id, nil); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return ep.nw.dial(ctx, ep.id, addr)
}

// dial connects node from to the endpoint on addr, if the link is up, and
// sends the preface that tells the acceptor who dialled.
func (nw *Network) dial(ctx context.Context, from, addr string) (net.Conn, error) {
	if err := nw.waitHeld(from, ctx.Err); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	nw.mu.RLock()
	to := nw.addrs[addr]
	nw.mu.RUnlock()
	if !nw.up(from, to) {
		return nil, fmt.Errorf("dial %s (%s): %w", to, addr, ErrLinkDown)
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	preface := append([]byte(prefaceMagic), byte(len(from)))
	preface = append(preface, from...)
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(prefaceTimeout)
	}
	raw.SetWriteDeadline(deadline)
	if _, err := raw.Write(preface); err != nil {
		raw.Close()
		return nil, err
	}
	raw.SetWriteDeadline(time.Time{})
	c := &faultConn{Conn: raw, nw: nw, local: from, remote: to}
	if !nw.track(c) {
		raw.Close()
		return nil, fmt.Errorf("dial %s (%s): %w", to, addr, ErrLinkDown)
	}
	return c, nil
}

func (ep *Endpoint) acceptLoop() {
	for {
		raw, err := ep.l.Accept()
		if err != nil {
			ep.Close()
			return
		}
		go ep.handshake(raw)
	}
}

// prefaceTimeout bounds sending and receiving the preface.
const prefaceTimeout = 5 * time.Second

// handshake reads the dialer's preface off the raw connection. On a shared
// endpoint, a connection without one is an outside client's, passed on
// with the bytes read so far put back.
func (ep *Endpoint) handshake(raw net.Conn) {
	raw.SetReadDeadline(time.Now().Add(prefaceTimeout))
	magic := make([]byte, len(prefaceMagic))
	if _, err := io.ReadFull(raw, magic); err != nil {
		raw.Close()
		return
	}
	if string(magic) != prefaceMagic {
		if !ep.shared {
			raw.Close()
			return
		}
		raw.SetReadDeadline(time.Time{})
		ep.deliver(&plainConn{Conn: raw, unread: magic})
		return
	}
	var size [1]byte
	if _, err := io.ReadFull(raw, size[:]); err != nil {
		raw.Close()
		return
	}
	from := make([]byte, size[0])
	if _, err := io.ReadFull(raw, from); err != nil {
		raw.Close()
		return
	}
	raw.SetReadDeadline(time.Time{})
	c := &faultConn{Conn: raw, nw: ep.nw, local: ep.id, remote: string(from)}
	if !ep.nw.track(c) {
		raw.Close()
		return
	}
	ep.deliver(c)
}

// deliver hands an accepted connection to Accept.
func (ep *Endpoint) deliver(c net.Conn) {
	select {
	case ep.acceptCh <- c:
	case <-ep.closeCh:
		c.Close()
	}
}

// plainConn is an outside client's connection on a shared endpoint.
type plainConn struct {
	net.Conn
	unread []byte // read while looking for a preface; the client's own bytes
}

func (c *plainConn) Read(p []byte) (int, error) {
	if len(c.unread) > 0 {
		n := copy(p, c.unread)
		c.unread = c.unread[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// faultConn is a TCP connection between two nodes that fails, and closes,
// once its link is cut.
type faultConn struct {
	net.Conn
	nw            *Network
	local, remote string
	closeOnce     sync.Once
	closed        atomic.Bool // Close was called (held reads and writes give up)
	tainted       atomic.Bool // a blackhole swallowed data written on it
}

// gaveUp stops a held read or write once the connection is closed.
func (c *faultConn) gaveUp() error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	return nil
}

func (c *faultConn) Read(p []byte) (int, error) {
	if err := c.nw.waitHeld(c.local, c.gaveUp); err != nil {
		c.Close()
		return 0, err
	}
	if !c.nw.up(c.remote, c.local) {
		c.Close()
		return 0, ErrLinkDown
	}
	n, err := c.Conn.Read(p)
	// Data that arrived after the cut was lost in transit.
	if n > 0 && !c.nw.up(c.remote, c.local) {
		c.Close()
		return 0, ErrLinkDown
	}
	// A held node reads what arrived only once it is released.
	if n > 0 {
		if herr := c.nw.waitHeld(c.local, c.gaveUp); herr != nil {
			c.Close()
			return 0, herr
		}
	}
	return n, err
}

func (c *faultConn) Write(p []byte) (int, error) {
	if err := c.nw.waitHeld(c.local, c.gaveUp); err != nil {
		c.Close()
		return 0, err
	}
	if !c.nw.up(c.local, c.remote) {
		c.Close()
		return 0, ErrLinkDown
	}
	if n, err, done := c.nw.shapeWrite(c, p); done {
		return n, err
	}
	return c.Conn.Write(p)
}

func (c *faultConn) Close() error {
	var err error
	c.closed.Store(true)
	c.closeOnce.Do(func() {
		c.nw.untrack(c)
		err = c.Conn.Close()
	})
	return err
}
