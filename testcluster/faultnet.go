package testcluster

import (
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
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	nw.mu.Lock()
	nw.addrs[l.Addr().String()] = id
	nw.mu.Unlock()
	ep := &Endpoint{nw: nw, id: id, l: l, acceptCh: make(chan net.Conn), closeCh: make(chan struct{})}
	go ep.acceptLoop()
	return ep, nil
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
	// A held (paused) node dials nobody until it is released.
	if err := ep.nw.waitHeld(ep.id, nil); err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	ep.nw.mu.RLock()
	to := ep.nw.addrs[addr]
	ep.nw.mu.RUnlock()
	if !ep.nw.up(ep.id, to) {
		return nil, fmt.Errorf("dial %s (%s): %w", to, addr, ErrLinkDown)
	}
	raw, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	preface := append([]byte(prefaceMagic), byte(len(ep.id)))
	preface = append(preface, ep.id...)
	raw.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := raw.Write(preface); err != nil {
		raw.Close()
		return nil, err
	}
	raw.SetWriteDeadline(time.Time{})
	c := &faultConn{Conn: raw, nw: ep.nw, local: ep.id, remote: to}
	if !ep.nw.track(c) {
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

// handshake reads the dialer's preface off the raw connection.
func (ep *Endpoint) handshake(raw net.Conn) {
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, len(prefaceMagic)+1)
	if _, err := io.ReadFull(raw, hdr); err != nil || string(hdr[:len(prefaceMagic)]) != prefaceMagic {
		raw.Close()
		return
	}
	from := make([]byte, hdr[len(prefaceMagic)])
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
	select {
	case ep.acceptCh <- c:
	case <-ep.closeCh:
		c.Close()
	}
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

func (c *faultConn) Read(p []byte) (int, error) {
	if err := c.nw.waitHeld(c.local, c); err != nil {
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
		if herr := c.nw.waitHeld(c.local, c); herr != nil {
			c.Close()
			return 0, herr
		}
	}
	return n, err
}

func (c *faultConn) Write(p []byte) (int, error) {
	if err := c.nw.waitHeld(c.local, c); err != nil {
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
