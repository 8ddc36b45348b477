package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// FailoverTrial is one leader kill.
type FailoverTrial struct {
	Killed      string  `json:"killed_node"`
	StopMS      float64 `json:"stop_ms"`       // how long StopNode took
	NewLeaderMS float64 `json:"new_leader_ms"` // kill → another node is leader
	FirstAckMS  float64 `json:"first_ack_ms"`  // kill → first acknowledged CreateKey
	FailedCalls uint64  `json:"failed_calls"`  // CreateKey attempts that failed meanwhile
}

// FailoverResult is the outcome of `kmsbench failover`.
type FailoverResult struct {
	Nodes        int             `json:"nodes"`
	Probers      int             `json:"probers"`
	Trials       []FailoverTrial `json:"trials"`
	FirstAckMin  float64         `json:"first_ack_ms_min"`
	FirstAckMed  float64         `json:"first_ack_ms_median"`
	FirstAckMax  float64         `json:"first_ack_ms_max"`
	NewLeaderMed float64         `json:"new_leader_ms_median"`
}

// cmdFailover stops the leader of a spawned cluster (server.Local.StopNode)
// while probers send CreateKey to the other nodes, and measures the time
// from the kill to the first acknowledged write. The node is restarted
// between trials.
func cmdFailover(ctx context.Context, o *options, stdout, progress io.Writer) error {
	cluster, err := spawnCluster(ctx, o)
	if err != nil {
		return err
	}
	defer cluster.stop()
	res := &FailoverResult{Nodes: o.spawn, Probers: o.concurrency}
	for trial := 0; trial < o.trials && ctx.Err() == nil; trial++ {
		t, err := failoverTrial(ctx, o, cluster)
		if err != nil {
			return fmt.Errorf("trial %d: %w", trial+1, err)
		}
		res.Trials = append(res.Trials, *t)
		if progress != nil {
			fmt.Fprintf(progress, "kmsbench: failover trial %d: killed %s, new leader after %.0f ms, first ack after %.0f ms\n",
				trial+1, t.Killed, t.NewLeaderMS, t.FirstAckMS)
		}
	}
	res.summarize()
	if o.jsonOut {
		return writeJSON(stdout, res)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "trial\tkilled\tstop\tnew leader\tfirst ack\tfailed calls\n")
	for i, t := range res.Trials {
		fmt.Fprintf(tw, "%d\t%s\t%.0f ms\t%.0f ms\t%.0f ms\t%d\n", i+1, t.Killed, t.StopMS, t.NewLeaderMS, t.FirstAckMS, t.FailedCalls)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "kill → first acknowledged write: min %.0f ms, median %.0f ms, max %.0f ms (%d nodes, %d probers)\n",
		res.FirstAckMin, res.FirstAckMed, res.FirstAckMax, res.Nodes, res.Probers)
	return nil
}

func (r *FailoverResult) summarize() {
	if len(r.Trials) == 0 {
		return
	}
	var acks, leaders []float64
	for _, t := range r.Trials {
		acks = append(acks, t.FirstAckMS)
		leaders = append(leaders, t.NewLeaderMS)
	}
	slices.Sort(acks)
	slices.Sort(leaders)
	r.FirstAckMin, r.FirstAckMax = acks[0], acks[len(acks)-1]
	r.FirstAckMed = acks[len(acks)/2]
	r.NewLeaderMed = leaders[len(leaders)/2]
}

func failoverTrial(ctx context.Context, o *options, c *spawned) (*FailoverTrial, error) {
	if err := c.settle(ctx); err != nil {
		return nil, err
	}
	leader := c.local.Leader()
	if leader < 0 {
		return nil, fmt.Errorf("no leader")
	}
	var survivors []string
	for i, e := range c.local.Endpoints() {
		if i != leader {
			survivors = append(survivors, e)
		}
	}
	pool, err := dialPool(survivors, len(survivors))
	if err != nil {
		return nil, err
	}
	defer pool.close()
	// Warm every connection, so that dialing is not part of the failover.
	for i := range pool.clients {
		err := retryUnavailable(ctx, func() error {
			_, err := pool.client(i).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "kmsbench failover warm-up"})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}

	var (
		stopped  atomic.Int64 // UnixNano when StopNode returned; 0 before
		firstAck atomic.Int64 // UnixNano of the first ack of a call started after that
		failed   atomic.Uint64
		acked    = make(chan struct{})
		ackOnce  sync.Once
		wg       sync.WaitGroup
	)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for p := 0; p < o.concurrency; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := pool.client(p)
			for pctx.Err() == nil {
				started := time.Now().UnixNano()
				cctx, ccancel := context.WithTimeout(pctx, min(o.timeout, 2*time.Second))
				_, err := cl.CreateKey(cctx, &kmsv1.CreateKeyRequest{Description: "kmsbench failover"})
				ccancel()
				s := stopped.Load()
				if err != nil {
					if s != 0 {
						failed.Add(1)
					}
					// Do not spin on a 2-core machine while the cluster elects.
					time.Sleep(5 * time.Millisecond)
					continue
				}
				// Calls started before the old leader was fully down may have
				// been served by it; only later ones show the new leader.
				if s != 0 && started >= s {
					now := time.Now().UnixNano()
					if firstAck.CompareAndSwap(0, now) {
						ackOnce.Do(func() { close(acked) })
					}
				}
			}
		}()
	}

	name := c.local.Server(leader).Node().ID()
	t0 := time.Now()
	c.local.StopNode(leader)
	tStop := time.Now()
	stopped.Store(tStop.UnixNano())

	// Poll for the new leader while waiting for the first ack.
	var tLeader time.Time
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	done := false
	for !done {
		select {
		case <-acked:
			done = true
		case <-tick.C:
			if tLeader.IsZero() {
				if l := c.local.Leader(); l >= 0 && l != leader {
					tLeader = time.Now()
				}
			}
		case <-deadline:
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("no write was acknowledged within 30s of stopping %s", name)
		case <-ctx.Done():
			cancel()
			wg.Wait()
			return nil, ctx.Err()
		}
	}
	ack := time.Unix(0, firstAck.Load())
	for tLeader.IsZero() && time.Since(ack) < 5*time.Second {
		if l := c.local.Leader(); l >= 0 && l != leader {
			tLeader = time.Now()
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	t := &FailoverTrial{Killed: name, StopMS: since(t0, tStop), FirstAckMS: since(t0, ack), FailedCalls: failed.Load()}
	if !tLeader.IsZero() {
		t.NewLeaderMS = since(t0, tLeader)
	}
	if err := c.local.Start(leader); err != nil {
		return nil, fmt.Errorf("restart %s: %w", name, err)
	}
	return t, nil
}

// settle waits until every node serves and has applied what the leader has
// committed, so that a trial starts from a quiet, caught-up cluster.
func (s *spawned) settle(ctx context.Context) error {
	if err := s.waitServing(ctx, 30*time.Second); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		l := s.local.Leader()
		if l >= 0 {
			commit := s.local.Server(l).Node().CommitIndex()
			caught := true
			for i := range s.local.Endpoints() {
				if srv := s.local.Server(i); srv == nil || srv.Node().AppliedIndex() < commit {
					caught = false
				}
			}
			if caught {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster did not catch up in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
