package rpc

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent callers share rounds, and every caller gets an index from a
// round that started after it called.
func TestCoalescerSharesRoundsAndIsFresh(t *testing.T) {
	var started atomic.Int64 // rounds started; the "index" is the round number
	gate := make(chan struct{})
	c := newCoalescer(time.Second, func(ctx context.Context) (uint64, error) {
		n := started.Add(1)
		<-gate
		return uint64(n), nil
	})
	const callers = 50
	var wg sync.WaitGroup
	results := make([]uint64, callers)
	before := make([]int64, callers)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			before[i] = started.Load()
			idx, err := c.Get(context.Background())
			if err != nil {
				t.Error(err)
			}
			results[i] = idx
		}(i)
	}
	// Release rounds until every caller has returned.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case gate <- struct{}{}:
			continue
		case <-done:
		}
		break
	}
	for i, idx := range results {
		if int64(idx) <= before[i] {
			t.Fatalf("caller %d got round %d but %d rounds had started before it called", i, idx, before[i])
		}
	}
	if n := started.Load(); n >= callers {
		t.Fatalf("%d rounds for %d concurrent callers: not shared", n, callers)
	}
}

func TestCoalescerHonoursCallerContext(t *testing.T) {
	c := newCoalescer(time.Second, func(ctx context.Context) (uint64, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx); err == nil {
		t.Fatal("want the caller's deadline error")
	}
}
