package chaos

import (
	"testing"
	"time"
)

// TestChaosClientFailover sends every call through the client library —
// all endpoints, leader hints, backoff, and one request ID per logical call
// kept across its retries — while the leader is killed, crashed, paused,
// cut off, or hands leadership over, and while every link is slow and
// loses messages. A write the library retried on another
// node after a failover must apply exactly once (checked against every
// node's key histories), and its answer must be the first application's.
func TestChaosClientFailover(t *testing.T) {
	Run(t, params(t), Scenario{
		Workload: Config{UseClient: true, AttemptTimeout: time.Second},
		Faults: func(e *Env) {
			for !e.Done() {
				e.Dwell(300*time.Millisecond, 900*time.Millisecond)
				l := e.Leader()
				switch e.Rand.IntN(6) {
				case 0:
					e.Fault("kill leader node%d", l)
					e.C.Kill(l)
					e.Progress("after the kill", 20)
					e.C.Restart(l)
					e.Note("restarted node%d", l)
				case 1:
					e.Fault("crash leader node%d", l)
					e.C.Crash(l)
					e.Progress("after the crash", 20)
					e.C.Restart(l)
					e.Note("restarted node%d", l)
				case 2:
					e.Fault("pause leader node%d", l)
					e.C.Pause(l)
					e.Progress("with the leader paused", 20)
					e.C.Resume(l)
					e.Note("resumed node%d", l)
				case 3:
					e.Fault("isolate leader node%d", l)
					e.C.Isolate(l)
					e.Progress("with the leader isolated", 20)
					e.C.Heal()
					e.Note("healed")
				case 5:
					e.Fault("slow, lossy links everywhere")
					for _, a := range e.Live() {
						for _, b := range e.Live() {
							if a != b {
								e.C.Network().Delay(e.C.ID(a), e.C.ID(b), 2*time.Millisecond, 30*time.Millisecond)
								e.C.Network().Drop(e.C.ID(a), e.C.ID(b), 0.03)
							}
						}
					}
					e.Progress("over slow, lossy links", 40)
					e.C.Network().ClearFaults()
					e.Note("links are clean again")
				case 4:
					to := e.Pick(e.Others(l))
					e.Fault("transfer leadership from node%d to node%d", l, to)
					if err := e.C.TransferLeadership(to); err != nil {
						e.Note("transfer failed: %v", err)
					}
				}
			}
		},
		Check: func(e *Env) {
			// How many acknowledged writes were in flight across a fault:
			// those are the retries across a failover.
			var faults []int64
			for _, a := range e.Rec.Annotations() {
				faults = append(faults, a.Start)
			}
			across := 0
			for _, op := range e.Rec.Ops() {
				if op.Out.Outcome != OK || !op.In.Kind.Mutates() {
					continue
				}
				for _, f := range faults {
					if op.Call < f && f < op.Return {
						across++
						break
					}
				}
			}
			t.Logf("%d acknowledged writes were in flight across a fault; each applied exactly once", across)
		},
	})
}
