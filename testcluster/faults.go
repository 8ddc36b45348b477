package testcluster

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Faults finer than cuts, after the hooked transports of hashicorp/raft's
// fuzzy suite: slow and lossy links, one-way blackholes, and held nodes.
//
// Raft runs over TCP streams here, so a "message" is whatever one Write
// carries (raft's transport writes one RPC per flush; node-to-node gRPC,
// one HTTP/2 flush, which may hold frames of several calls):
//
//   - a delay holds each write on the link for a while; order is kept, as
//     on a real slow link;
//   - a drop breaks the connection on a write, with some probability: a
//     stream that lost bytes is unusable, so the sender sees the failure
//     and raft redials — what packet loss turns into on TCP;
//   - a blackhole swallows every write on the link without an error: the
//     sender believes it sent, the receiver waits for its timeouts. It is
//     the one-way partition (A hears B, B never hears A). Connections that
//     lost data are closed when the blackhole is lifted, because their byte
//     streams are no longer whole;
//   - holding a node freezes its network as if the process were stopped:
//     its reads, writes and dials block until it is released (a gRPC dial
//     gives up when its context ends, and gRPC dials again), and what its
//     peers sent meanwhile is read late, after the release. Peers' reads
//     of its answers block too (it sends none), until their timeouts.
type faults struct {
	mu        sync.Mutex
	shapes    map[link]linkShape
	blackhole map[link]bool
	held      map[string]chan struct{} // closed on release
	rng       *rand.Rand
}

// linkShape is how one direction of a link misbehaves.
type linkShape struct {
	delay, jitter time.Duration
	drop          float64 // chance per write that the connection breaks
}

// heldPoll is how often a blocked read or write looks whether its
// connection was closed or its node taken down meanwhile.
const heldPoll = 10 * time.Millisecond

func (f *faults) init() {
	if f.shapes == nil {
		f.shapes = map[link]linkShape{}
		f.blackhole = map[link]bool{}
		f.held = map[string]chan struct{}{}
		f.rng = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	}
}

// SetFaultSeed makes the random parts of delays and drops repeatable.
func (nw *Network) SetFaultSeed(seed uint64) {
	nw.fx.mu.Lock()
	defer nw.fx.mu.Unlock()
	nw.fx.init()
	nw.fx.rng = rand.New(rand.NewPCG(seed, 0x5eed))
}

// Delay holds every write from one node to another for delay plus a
// random part of jitter (zero for both removes the delay).
func (nw *Network) Delay(from, to string, delay, jitter time.Duration) {
	nw.shape(from, to, func(s *linkShape) { s.delay, s.jitter = delay, jitter })
}

// Drop makes each write from one node to another break its connection with
// probability p (0 removes the fault).
func (nw *Network) Drop(from, to string, p float64) {
	nw.shape(from, to, func(s *linkShape) { s.drop = p })
}

func (nw *Network) shape(from, to string, fn func(*linkShape)) {
	nw.fx.mu.Lock()
	defer nw.fx.mu.Unlock()
	nw.fx.init()
	l := link{from, to}
	s := nw.fx.shapes[l]
	fn(&s)
	if s == (linkShape{}) {
		delete(nw.fx.shapes, l)
	} else {
		nw.fx.shapes[l] = s
	}
}

// Blackhole silently discards everything one node writes to another; the
// other direction is unchanged. Unlike Cut, connections stay open.
func (nw *Network) Blackhole(from, to string) {
	nw.fx.mu.Lock()
	defer nw.fx.mu.Unlock()
	nw.fx.init()
	nw.fx.blackhole[link{from, to}] = true
}

// Hold freezes node id's network until Release (see faults).
func (nw *Network) Hold(id string) {
	nw.fx.mu.Lock()
	defer nw.fx.mu.Unlock()
	nw.fx.init()
	if _, ok := nw.fx.held[id]; !ok {
		nw.fx.held[id] = make(chan struct{})
	}
}

// Release lets a held node's network run again.
func (nw *Network) Release(id string) {
	nw.fx.mu.Lock()
	defer nw.fx.mu.Unlock()
	if ch, ok := nw.fx.held[id]; ok {
		close(ch)
		delete(nw.fx.held, id)
	}
}

// ClearFaults removes every delay, drop and blackhole and releases every
// held node. Cuts stay (see Heal).
func (nw *Network) ClearFaults() {
	nw.fx.mu.Lock()
	hadBlackholes := len(nw.fx.blackhole) > 0
	clear(nw.fx.shapes)
	clear(nw.fx.blackhole)
	for id, ch := range nw.fx.held {
		close(ch)
		delete(nw.fx.held, id)
	}
	nw.fx.mu.Unlock()
	if hadBlackholes {
		nw.closeTainted()
	}
}

// closeTainted closes the connections a blackhole swallowed data from.
func (nw *Network) closeTainted() {
	nw.mu.Lock()
	var broken []*faultConn
	for c := range nw.conns {
		if c.tainted.Load() {
			broken = append(broken, c)
		}
	}
	nw.mu.Unlock()
	for _, c := range broken {
		c.Close()
	}
}

// isDown reports whether node id was taken down with Down.
func (nw *Network) isDown(id string) bool {
	nw.mu.RLock()
	defer nw.mu.RUnlock()
	return nw.down[id]
}

// waitHeld blocks while node id is held. It gives up with an error when
// gaveUp (if given) returns one — the connection was closed, the dial's
// context ended — or the node is taken down meanwhile, so that a killed
// node's goroutines end.
func (nw *Network) waitHeld(id string, gaveUp func() error) error {
	var tick *time.Ticker
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		nw.fx.mu.Lock()
		ch, held := nw.fx.held[id]
		nw.fx.mu.Unlock()
		if !held {
			return nil
		}
		if tick == nil {
			tick = time.NewTicker(heldPoll)
		}
		select {
		case <-ch:
		case <-tick.C:
		}
		if gaveUp != nil {
			if err := gaveUp(); err != nil {
				return err
			}
		}
		if nw.isDown(id) {
			return ErrLinkDown
		}
	}
}

// shapeWrite applies blackholes, drops and delays to a write on c. done
// reports that the write was decided here (swallowed or failed), with its
// result; otherwise the caller writes.
func (nw *Network) shapeWrite(c *faultConn, p []byte) (n int, err error, done bool) {
	l := link{c.local, c.remote}
	nw.fx.mu.Lock()
	if nw.fx.shapes == nil {
		nw.fx.mu.Unlock()
		return 0, nil, false
	}
	if nw.fx.blackhole[l] {
		nw.fx.mu.Unlock()
		c.tainted.Store(true)
		return len(p), nil, true
	}
	s, ok := nw.fx.shapes[l]
	var wait time.Duration
	drop := false
	if ok {
		drop = s.drop > 0 && nw.fx.rng.Float64() < s.drop
		wait = s.delay
		if s.jitter > 0 {
			wait += time.Duration(nw.fx.rng.Int64N(int64(s.jitter)))
		}
	}
	nw.fx.mu.Unlock()
	if drop {
		c.Close()
		return 0, ErrLinkDown, true
	}
	if wait > 0 {
		time.Sleep(wait) // the link's delay
		if c.closed.Load() {
			return 0, net.ErrClosed, true
		}
	}
	return 0, nil, false
}
