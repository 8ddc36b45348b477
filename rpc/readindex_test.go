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

// The observer sees every round once, and the callers it reports add up to
// the reads that were served.
func TestCoalescerObserver(t *testing.T) {
	var started atomic.Int64
	gate := make(chan struct{})
	c := newCoalescer(time.Second, func(ctx context.Context) (uint64, error) {
		started.Add(1)
		<-gate
		return 1, nil
	})
	var mu sync.Mutex
	rounds, callers := 0, 0
	fn := ReadIndexObserver(func(n int, _ time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			t.Error(err)
		}
		rounds++
		callers += n
	})
	c.observe.Store(&fn)
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Get(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
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
	mu.Lock()
	defer mu.Unlock()
	if callers != n || int64(rounds) != started.Load() {
		t.Fatalf("observed %d callers in %d rounds; want %d callers in %d rounds", callers, rounds, n, started.Load())
	}
}
