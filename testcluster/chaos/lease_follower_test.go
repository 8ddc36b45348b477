package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/testcluster"
)

// chaosLease is the lease duration of the lease scenarios: short, so that
// a few cuts fit in a short run, and long against the test cluster's
// election timing (100 ms heartbeats).
const chaosLease = 500 * time.Millisecond

func withLease(d time.Duration, drift float64, clock func(i int) func() time.Duration) testcluster.Option {
	return testcluster.WithNodeConfig(func(i int, cfg *raftnode.Config) {
		cfg.LeaseDuration = d
		cfg.LeaseMaxDrift = drift
		if clock != nil {
			cfg.LeaseClock = clock(i)
		}
	})
}

// TestChaosLeaseIsolatedFollower isolates a follower again and again while
// it holds a read lease. Clients keep writing (disable, enable, rotate,
// schedule and cancel deletion) and reading through the majority, and
// probes keep reading from the isolated follower (TestChaosPartitionedLeader
// tries writes on cut-off nodes). Porcupine judges the history; besides:
//
//   - the isolated follower answers no read that starts more than one
//     lease duration after the cut (its lease from before the cut may serve
//     reads until then: see window);
//   - the majority acknowledges writes again once the leader stops counting
//     the follower, at most L(1+ε) after its last renewal: each cut waits
//     for a write attempted after it to be acknowledged, and the test logs
//     how long that took (the write stall).
func TestChaosLeaseIsolatedFollower(t *testing.T) {
	var log attemptLog
	var stalls []time.Duration
	Run(t, params(t), Scenario{
		Options:  []testcluster.Option{withLease(chaosLease, 0, nil)},
		Workload: Config{Workers: 5, Probes: 6, AttemptTimeout: time.Second, ProbeMix: readProbeMix},
		Faults: func(e *Env) {
			span := leaseSpan(e)
			for !e.Done() {
				e.TargetLive()
				e.Dwell(200*time.Millisecond, 500*time.Millisecond)
				l := e.Leader()
				f := e.Pick(e.Others(l))
				waitHoldsLease(e, f)
				majority := e.Others(f)
				e.W.SetTargets(majority)
				e.W.SetProbeTargets([]int{f})
				e.C.Isolate(f)
				start := e.Rec.Now()
				e.Fault("isolate follower node%d, which holds a read lease (leader node%d, term %d)", f, l, e.C.Node(l).Term())
				stall := waitWriteAfter(e, &log, start, majority)
				stalls = append(stalls, stall)
				e.Note("the majority acknowledged a write %v after the cut", stall.Round(time.Millisecond))
				// Past the follower's lease, so reads beyond it are probed.
				dwellUntil(e, start, span+e.Between(1500*time.Millisecond, 2500*time.Millisecond))
				end := e.Rec.Now()
				e.C.Heal()
				e.Note("healed node%d", f)
				log.addWindow(window{nodes: []int{f}, start: start, end: end, lease: int64(span), kind: "follower isolated",
					what: fmt.Sprintf("follower node%d isolated, leader node%d", f, l)})
			}
		},
		Check: func(e *Env) {
			log.mu.Lock()
			defer log.mu.Unlock()
			st := checkCutOff(t, log.windows, log.attempts)
			t.Logf("write stall after isolating a lease holder (lease %v, drift bound %v): %s", chaosLease,
				raftnode.DefaultLeaseMaxDrift, stallStats(stalls))
			if st.lateReads == 0 {
				t.Errorf("no read reached an isolated follower after its lease span: the check proved nothing")
			}
		},
		OnAttempt: log.add,
	})
}
