package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
)

// TestChaosSchedulerClock runs the rotation scheduler across leader changes
// while the leader's wall clock jumps forwards (up to 3 s) and backwards (up
// to 10 s): most keys rotate automatically every 2 s, clients rotate them
// on demand, disable and enable them, and use them. The checker lets an
// enabled key with rotation on gain versions at any moment; everything
// else about it must be explained by the clients' calls. Afterwards, in
// state time (the clamped event times the state machine keeps), no two
// automatic rotations of a key are closer than its period (no double
// rotation), versions are 1..n, and once every clock is right again every
// key rotates within a period plus the largest forward jump (no rotation
// is lost for good). The jumps stay within the default --max-clock-skew
// (10 s), so a jumped leader may keep leading; its scheduler now waits for
// its own clock alone, never the state's. Leaders whose clocks jump beyond
// the bound are refused and hand leadership over
// (testcluster.TestSkewedLeaderDestroysNothingEarly).
func TestChaosSchedulerClock(t *testing.T) {
	const period = 2 * time.Second
	const maxForward = 3 * time.Second
	clocks := []*testcluster.Clock{{}, {}, {}}
	Run(t, params(t), Scenario{
		API: []testcluster.APIOption{testcluster.WithClocks(clocks)},
		Workload: Config{Keys: 8, AutoKeys: 6, RotationPeriod: period, Mix: Mix{
			OpRotate: 10, OpEncrypt: 25, OpDecrypt: 15, OpDescribe: 20, OpDisable: 8, OpEnable: 14, OpCancel: 2, OpSchedule: 1,
		}},
		Faults: func(e *Env) {
			for !e.Done() {
				e.Dwell(300*time.Millisecond, 900*time.Millisecond)
				l := e.Leader()
				jump := e.Between(500*time.Millisecond, maxForward)
				if e.Rand.IntN(2) == 0 {
					jump = -e.Between(time.Second, 10*time.Second)
				}
				clocks[l].Set(jump)
				e.Fault("leader node%d's clock jumps to %+v", l, jump)
				e.Dwell(500*time.Millisecond, 1500*time.Millisecond)
				switch e.Rand.IntN(3) {
				case 0:
					to := e.Pick(e.Others(l))
					e.Fault("transfer leadership from node%d (clock %+v) to node%d (clock %+v)", l, clocks[l].Offset(), to, clocks[to].Offset())
					if err := e.C.TransferLeadership(to); err != nil {
						e.Note("transfer failed: %v", err)
					}
				case 1:
					e.Fault("crash leader node%d (clock %+v)", l, clocks[l].Offset())
					e.C.Crash(l)
					e.Progress("after the crash", 20)
					e.C.Restart(l)
					e.Note("restarted node%d", l)
				}
				if e.Rand.IntN(2) == 0 {
					clocks[l].Set(0)
					e.Note("node%d's clock is right again", l)
				}
			}
			for _, c := range clocks {
				c.Set(0)
			}
			e.Note("every clock is right again")
		},
		Check: func(e *Env) {
			auto := e.W.AutoKeys()
			automatic := 0
			e.C.FSM(e.Leader()).ForEachKey(func(k *fsm.Key) bool {
				for _, v := range k.Versions {
					if v.Type == eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC {
						automatic++
					}
				}
				return true
			})
			t.Logf("%d automatic rotations on %d keys during the run", automatic, len(auto))
			if automatic == 0 {
				t.Errorf("the scheduler never rotated a key")
			}
			// Liveness: every key with rotation on rotates again.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			before := map[string]uint32{}
			for id := range auto {
				kms := e.C.KMS(e.Leader())
				kms.CancelKeyDeletion(ctx, &kmsv1.CancelKeyDeletionRequest{KeyId: id})
				if _, err := kms.EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: id}); err != nil {
					t.Fatalf("enable %s: %v", id, err)
				}
				k, _ := e.C.FSM(e.Leader()).Key(id)
				before[id] = k.CurrentVersion()
			}
			start := time.Now()
			deadline := start.Add(maxForward + period + testcluster.WaitTimeout/2)
			for id, v := range before {
				for {
					k, _ := e.C.FSM(e.Leader()).Key(id)
					if k.CurrentVersion() > v && k.Versions[len(k.Versions)-1].Type == eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("key %s did not rotate automatically within %v of every clock being right (at version %d)", id, time.Since(start).Round(time.Millisecond), k.CurrentVersion())
					}
					time.Sleep(20 * time.Millisecond) // polling with a deadline
				}
			}
			t.Logf("every key with rotation on rotated again within %v", time.Since(start).Round(time.Millisecond))
		},
	})
}
