package testcluster

import (
	"sync/atomic"
	"time"
)

// Clock is a node's wall clock for tests: real time plus an offset that a
// test jumps forwards and backwards. It is safe for concurrent use.
type Clock struct {
	offset atomic.Int64 // nanoseconds
}

// Now is real time plus the offset.
func (c *Clock) Now() time.Time { return time.Now().Add(c.Offset()) }

// Set makes the clock run offset ahead of real time (behind when negative).
func (c *Clock) Set(offset time.Duration) { c.offset.Store(int64(offset)) }

// Offset is how far the clock is ahead of real time.
func (c *Clock) Offset() time.Duration { return time.Duration(c.offset.Load()) }

// WithClock gives node i the clock clock(i): the time it stamps the events
// it proposes with and its rotation scheduler runs on (server.Config.Now).
// clock(i) may return nil for time.Now. Nodes added with AddNode get
// clock(their index) too.
func WithClock(clock func(i int) func() time.Time) APIOption {
	return func(a *apiOptions) { a.clock = clock }
}

// WithClocks gives node i clocks[i].Now; nodes beyond the slice use
// time.Now.
func WithClocks(clocks []*Clock) APIOption {
	return WithClock(func(i int) func() time.Time {
		if i < len(clocks) && clocks[i] != nil {
			return clocks[i].Now
		}
		return nil
	})
}

func (a *apiOptions) nowFor(i int) func() time.Time {
	if a.clock == nil {
		return nil
	}
	return a.clock(i)
}

// RateClock is a monotonic lease clock (raftnode.Config.LeaseClock) that
// runs at rate times real time: above 1 fast, below 1 slow.
func RateClock(rate float64) func() time.Duration {
	start := time.Now()
	return func() time.Duration { return time.Duration(float64(time.Since(start)) * rate) }
}
