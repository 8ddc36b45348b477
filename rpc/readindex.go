package rpc

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// ReadIndexObserver receives one call per read-index round: how many reads
// shared it, how long it took and its error (metrics).
type ReadIndexObserver func(callers int, took time.Duration, err error)

// ObserveReadIndex sets the observer of this node's read-index rounds.
func (s *Server) ObserveReadIndex(fn ReadIndexObserver) { s.readIdx.observe.Store(&fn) }

// coalescer shares one read-index round among concurrent callers. A caller
// always waits for a round that starts after it arrived, so the index it gets
// covers every write acknowledged before its request began (linearizable);
// while one round runs, every newcomer joins the single next round.
type coalescer struct {
	fetch   func(ctx context.Context) (uint64, error)
	timeout time.Duration

	observe atomic.Pointer[ReadIndexObserver]

	mu      sync.Mutex
	running bool
	next    *round
}

type round struct {
	done    chan struct{}
	index   uint64
	err     error
	callers int // guarded by coalescer.mu until the round starts
}

func newCoalescer(timeout time.Duration, fetch func(ctx context.Context) (uint64, error)) *coalescer {
	return &coalescer{fetch: fetch, timeout: timeout}
}

// Get returns a read index from a round that started after the call.
func (c *coalescer) Get(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &round{done: make(chan struct{})}
	}
	r := c.next
	r.callers++
	if !c.running {
		c.running = true
		c.next = nil
		go c.run(r)
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run performs rounds back to back while callers are waiting.
func (c *coalescer) run(r *round) {
	for r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		c.mu.Lock()
		callers := r.callers // no one joins a round once it runs
		c.mu.Unlock()
		start := time.Now()
		r.index, r.err = c.fetch(ctx)
		cancel()
		if fn := c.observe.Load(); fn != nil {
			(*fn)(callers, time.Since(start), r.err)
		}
		close(r.done)
		c.mu.Lock()
		r = c.next
		c.next = nil
		if r == nil {
			c.running = false
		}
		c.mu.Unlock()
	}
}
