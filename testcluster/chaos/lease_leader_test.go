package chaos

import (
	"fmt"
	"testing"
	"time"

	"github.com/raftkms/raftkms/testcluster"
)

// leaderWriteMix is mostly writes, so that the leader always has some in
// flight.
var leaderWriteMix = Mix{
	OpRotate: 14, OpDisable: 10, OpEnable: 14, OpSchedule: 1, OpCancel: 4, OpCreate: 2,
	OpEncrypt: 10, OpDecrypt: 6, OpDescribe: 6,
}

// TestChaosLeaseLeaderMidWrite isolates the leader, with leases on, at a
// moment when writes are in flight (attempted and not answered yet, on the
// leader or forwarded to it). The writes caught by the cut are answered
// with an unknown outcome and retried under their request IDs on the rest
// of the cluster, which elects a new leader; the new leader acknowledges
// nothing until every lease granted by the old one has ended. Probes keep
// asking the old leader: it may answer reads under its lease from before
// the cut for at most one lease duration, and never a write (see window).
// Porcupine judges the history, and the test logs how long after the cut
// the new leader acknowledged a write (election plus the wait for the old
// leases, at most L(1+ε)).
func TestChaosLeaseLeaderMidWrite(t *testing.T) {
	var log attemptLog
	var stalls []time.Duration
	caught, caughtAcked := 0, 0
	Run(t, params(t), Scenario{
		Options: []testcluster.Option{withLease(chaosLease, 0, nil)},
		Workload: Config{Workers: 6, Probes: 3, AttemptTimeout: time.Second, Mix: leaderWriteMix,
			ProbeMix: probeMix},
		Faults: func(e *Env) {
			span := leaseSpan(e)
			for !e.Done() {
				e.TargetLive()
				e.Dwell(200*time.Millisecond, 600*time.Millisecond)
				l := e.Leader()
				waitHoldsLease(e, l)
				waitWritesInFlight(e, 2)
				inFlight := e.W.WritesInFlight()
				e.C.Isolate(l)
				start := e.Rec.Now()
				majority := e.Others(l)
				e.W.SetTargets(majority)
				e.W.SetProbeTargets([]int{l})
				e.Fault("isolate leader node%d (term %d) with %d writes in flight just before", l, e.C.Node(l).Term(), inFlight)
				stall := waitWriteAfter(e, &log, start, majority)
				stalls = append(stalls, stall)
				e.Note("the majority (leader node%d) acknowledged a write %v after the cut", e.Leader(), stall.Round(time.Millisecond))
				dwellUntil(e, start, span+e.Between(1500*time.Millisecond, 2500*time.Millisecond))
				end := e.Rec.Now()
				e.C.Heal()
				e.Note("healed node%d", l)
				n, acked := log.inFlightAt(start, e.Live())
				caught += n
				caughtAcked += acked
				log.addWindow(window{nodes: []int{l}, start: start, end: end, lease: int64(span), kind: "leader isolated",
					what: fmt.Sprintf("leader node%d isolated mid-write", l)})
			}
		},
		Check: func(e *Env) {
			log.mu.Lock()
			defer log.mu.Unlock()
			checkCutOff(t, log.windows, log.attempts)
			t.Logf("%d write attempts were in flight at the cuts, %d of them acknowledged (the rest retried elsewhere)", caught, caughtAcked)
			t.Logf("write stall after isolating the leader (election + old leases, lease %v): %s", chaosLease, stallStats(stalls))
			if len(log.windows) > 0 && caught == 0 {
				t.Errorf("no write was in flight when the leader was cut off: the scenario proved nothing")
			}
		},
		OnAttempt: log.add,
	})
}

// waitWritesInFlight waits until at least n write attempts are under way.
func waitWritesInFlight(e *Env, n int) {
	e.T.Helper()
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for e.W.WritesInFlight() < n {
		if time.Now().After(deadline) {
			e.T.Fatalf("never %d writes in flight", n)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}
