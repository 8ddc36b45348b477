package chaos

import (
	"testing"
	"time"

	"github.com/raftkms/raftkms/testcluster"
)

// TestChaosLaggingFollower keeps a follower away — cut off, or killed, or
// killed and restarted on an empty data directory as after a disk swap —
// while rotations continue, until the leader has compacted its log past
// what the follower holds. When it comes back it can only catch up by
// installing the leader's snapshot, which it does while rotations still
// go on. Snapshots are taken every 64 entries and keep 32.
func TestChaosLaggingFollower(t *testing.T) {
	const threshold, trailing = 64, 32
	installs, rounds := 0, 0
	Run(t, params(t), Scenario{
		Options: []testcluster.Option{testcluster.WithSnapshots(threshold, trailing)},
		Workload: Config{Mix: Mix{
			OpRotate: 30, OpEncrypt: 20, OpDecrypt: 12, OpDescribe: 10, OpDisable: 6, OpEnable: 12, OpCreate: 4, OpSchedule: 1, OpCancel: 3,
		}},
		Faults: func(e *Env) {
			for round := 0; !e.Done(); round++ {
				e.Dwell(200*time.Millisecond, 600*time.Millisecond)
				l := e.Leader()
				f := e.Pick(e.Others(l))
				lag := e.C.Node(f).LastIndex()
				mode := []string{"cut off", "killed", "killed, disk wiped"}[round%3]
				if round%3 == 0 {
					e.C.Isolate(f)
				} else {
					e.C.Kill(f)
				}
				e.W.SetTargets(e.Others(f))
				e.Fault("follower node%d %s at index %d", f, mode, lag)
				// Rotations go on until the leader's log no longer reaches back
				// to the follower's last entry.
				deadline := time.Now().Add(testcluster.WaitTimeout)
				for {
					l = e.Leader()
					if e.C.Node(l).LastSnapshotIndex() > lag+trailing+1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("leader node%d did not compact past index %d (snapshot at %d)", l, lag, e.C.Node(l).LastSnapshotIndex())
					}
					e.Progress("while a follower lags", 10)
				}
				var before uint64
				switch round % 3 {
				case 0:
					before = e.C.Node(f).Restores()
					e.C.Heal()
				case 1:
					e.C.Restart(f)
					before = e.C.Node(f).Restores() // its own snapshot, restored at start
				case 2:
					e.C.RestartFresh(f)
					before = e.C.Node(f).Restores()
				}
				e.Note("node%d back (leader node%d snapshot at %d)", f, l, e.C.Node(l).LastSnapshotIndex())
				target := e.C.Node(l).CommitIndex()
				deadline = time.Now().Add(testcluster.WaitTimeout)
				for e.C.Node(f).AppliedIndex() < target {
					if time.Now().After(deadline) {
						t.Fatalf("node%d did not catch up to index %d (at %d)", f, target, e.C.Node(f).AppliedIndex())
					}
					time.Sleep(10 * time.Millisecond) // polling with a deadline
				}
				rounds++
				if after := e.C.Node(f).Restores(); after > before {
					installs++
					e.Note("node%d installed a snapshot and caught up to %d", f, target)
				} else {
					e.Note("node%d caught up to %d from the log", f, target)
				}
				e.TargetLive()
			}
		},
		Check: func(e *Env) {
			t.Logf("%d of %d lagging followers caught up by installing a snapshot", installs, rounds)
			if installs == 0 {
				t.Errorf("no follower installed a snapshot: the scenario did not test what it is for")
			}
		},
	})
}
