package chaos

import (
	"testing"
	"time"
)

// TestChaosLeaderKill kills the leader again and again while clients
// create, rotate, disable, enable, encrypt and decrypt: sometimes as a
// plain kill, sometimes as a crash between writing the log and applying it
// (the leader's apply path is held, so entries are committed by the
// cluster but not applied by the leader, whose clients get no answer;
// then its connections drop and it dies). Each victim is restarted from
// its data directory while the others carry on. The test logs how long
// after each kill the others acknowledged a write attempted after it: an
// election, then the new leader's wait for the old leases (L(1+ε)).
func TestChaosLeaderKill(t *testing.T) {
	kills, crashes := 0, 0
	var log attemptLog
	var stalls []time.Duration
	Run(t, params(t), Scenario{
		OnAttempt: log.add,
		Faults: func(e *Env) {
			for !e.Done() {
				e.Dwell(300*time.Millisecond, 900*time.Millisecond)
				l := e.Leader()
				e.W.SetTargets(e.Others(l))
				if e.Rand.IntN(5) < 3 {
					e.Fault("kill leader node%d", l)
					e.C.Kill(l)
					kills++
				} else {
					e.C.HoldApply(l)
					e.Fault("hold leader node%d's apply path", l)
					// Let writes reach its log (and commit) without being applied.
					e.Dwell(100*time.Millisecond, 400*time.Millisecond)
					e.Fault("crash leader node%d (log written %d, applied %d)", l, e.C.Node(l).LastIndex(), e.C.FSM(l).AppliedIndex())
					e.C.Crash(l)
					crashes++
				}
				stall := waitWriteAfter(e, &log, e.Rec.Now(), e.Others(l))
				stalls = append(stalls, stall)
				e.Note("the others acknowledged a write %v after", stall.Round(time.Millisecond))
				e.Progress("with the leader dead", 20)
				e.Dwell(200*time.Millisecond, 800*time.Millisecond)
				e.C.Restart(l)
				e.Note("restarted node%d", l)
				e.TargetLive()
			}
		},
	})
	t.Logf("%d kills and %d crashes between log and apply; write stall after the leader died: %s", kills, crashes, stallStats(stalls))
}
