package rpc

import (
	"context"
	"sync"
	"time"
)

// coalescer shares one read-index round among concurrent callers. A caller
// always waits for a round that starts after it arrived, so the index it gets
// covers every write acknowledged before its request began (linearizable);
// while one round runs, every newcomer joins the single next round.
type coalescer struct {
	fetch   func(ctx context.Context) (uint64, error)
	timeout time.Duration

	mu      sync.Mutex
	running bool
	next    *round
}

type round struct {
	done  chan struct{}
	index uint64
	err   error
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
		r.index, r.err = c.fetch(ctx)
		cancel()
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
