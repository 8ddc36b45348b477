package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftkms/raftkms/testcluster"
)

// TestChaosLeaseClockDrift runs leases on clocks that drift within the
// configured bound: with LeaseMaxDrift 0.05, node0's lease clock runs 4%
// fast, node1's 4% slow and node2's on time. Faults isolate the leader or a
// follower (each holding a lease when cut) and move leadership onto the
// fast and the slow clock, so that a slow holder trusts its lease longer
// in real time and a fast leader counts its holders shorter — both within
// what the bound allows for. Porcupine judges the history; cut-off nodes
// answer no write, and no read that starts more than one lease duration
// after the cut (a holder trusts L(1-ε) on a clock at least 1-ε as fast as
// real time: at most L; see window). Beyond the bound,
// testcluster.TestLeaseDriftBeyondBound shows what breaks.
func TestChaosLeaseClockDrift(t *testing.T) {
	const bound = 0.05
	rates := []float64{1.04, 0.96, 1.0}
	var log attemptLog
	Run(t, params(t), Scenario{
		Options: []testcluster.Option{withLease(chaosLease, bound, func(i int) func() time.Duration {
			return testcluster.RateClock(rates[i])
		})},
		Workload: Config{Workers: 5, Probes: 4, AttemptTimeout: time.Second, ProbeMix: probeMix},
		Faults: func(e *Env) {
			span := leaseSpan(e)
			for !e.Done() {
				e.TargetLive()
				e.Dwell(200*time.Millisecond, 600*time.Millisecond)
				l := e.Leader()
				if e.Rand.IntN(3) == 0 {
					to := e.Pick(e.Others(l))
					e.Fault("transfer leadership from node%d (clock ×%.2f) to node%d (clock ×%.2f)", l, rates[l], to, rates[to])
					if err := e.C.TransferLeadership(to); err != nil {
						e.Note("transfer failed: %v", err)
					}
					e.Progress("after the transfer", 20)
					continue
				}
				victim, role := l, "leader"
				if e.Rand.IntN(2) == 0 {
					victim, role = e.Pick(e.Others(l)), "follower"
				}
				waitHoldsLease(e, victim)
				majority := e.Others(victim)
				e.W.SetTargets(majority)
				e.W.SetProbeTargets([]int{victim})
				e.C.Isolate(victim)
				start := e.Rec.Now()
				e.Fault("isolate %s node%d (clock ×%.2f), which holds a read lease", role, victim, rates[victim])
				e.Progress("on the majority side", 20)
				dwellUntil(e, start, span+e.Between(1200*time.Millisecond, 2000*time.Millisecond))
				end := e.Rec.Now()
				e.C.Heal()
				e.Note("healed node%d", victim)
				log.addWindow(window{nodes: []int{victim}, start: start, end: end, lease: int64(span),
					kind: fmt.Sprintf("%s isolated, clock ×%.2f", role, rates[victim]),
					what: fmt.Sprintf("%s node%d isolated (clock ×%.2f)", role, victim, rates[victim])})
			}
		},
		Check: func(e *Env) {
			log.mu.Lock()
			defer log.mu.Unlock()
			checkCutOff(t, log.windows, log.attempts)
		},
		OnAttempt: log.add,
	})
}
