package chaos

import (
	"sort"
	"testing"
	"time"

	"github.com/raftkms/raftkms/testcluster"
)

// TestChaosMembership changes the cluster's voters under load: new nodes
// join (through the API, as kmsd --join does, catching up from a snapshot),
// followers are removed, the leader removes itself, and leadership is
// transferred, keeping between three and five voters. Clients follow the
// membership.
func TestChaosMembership(t *testing.T) {
	adds, removes, leaderRemoves, transfers := 0, 0, 0, 0
	Run(t, params(t), Scenario{
		Options: []testcluster.Option{testcluster.WithSnapshots(128, 64)},
		Faults: func(e *Env) {
			for step := 0; !e.Done(); step++ {
				e.Dwell(200*time.Millisecond, 600*time.Millisecond)
				voters := e.Live()
				l := e.Leader()
				// Three to five voters: grow from three, shrink from five.
				action := e.Rand.IntN(4)
				switch {
				case len(voters) <= 3 && action != 3:
					action = 0
				case len(voters) >= 5 && action == 0:
					action = 1 + e.Rand.IntN(2)
				}
				switch action {
				case 0:
					i := e.C.AddNode()
					e.W.SetAddr(i, e.C.GRPCAddr(i))
					e.Fault("add node%d", i)
					e.C.WaitServing(t)
					waitVoter(t, e.C, i)
					adds++
					e.Note("node%d is a serving voter", i)
				case 1:
					f := e.Pick(e.Others(l))
					e.W.SetTargets(e.Others(f))
					e.Fault("remove follower node%d", f)
					e.C.RemoveNode(f)
					removes++
				case 2:
					e.W.SetTargets(e.Others(l))
					e.Fault("remove leader node%d", l)
					e.C.RemoveNode(l)
					leaderRemoves++
					e.Note("node%d leads now", e.Leader())
				case 3:
					to := e.Pick(e.Others(l))
					e.Fault("transfer leadership from node%d to node%d", l, to)
					if err := e.C.TransferLeadership(to); err != nil {
						e.Note("transfer failed: %v", err)
					} else {
						transfers++
					}
				}
				e.TargetLive()
				e.Progress("after a membership change", 20)
			}
		},
		Check: func(e *Env) {
			members, err := e.C.Members()
			if err != nil {
				t.Fatal(err)
			}
			var ids, live []string
			for _, m := range members {
				if !m.Voter {
					t.Errorf("member %s is not a voter", m.ID)
				}
				ids = append(ids, m.ID)
			}
			for _, i := range e.Live() {
				live = append(live, e.C.ID(i))
			}
			sort.Strings(ids)
			sort.Strings(live)
			if len(ids) < 3 || len(ids) != len(live) {
				t.Errorf("members %v, live nodes %v", ids, live)
			}
			for n := range ids {
				if n < len(live) && ids[n] != live[n] {
					t.Errorf("members %v, live nodes %v", ids, live)
					break
				}
			}
			t.Logf("%d adds, %d follower removals, %d leader removals, %d transfers; members at the end: %v", adds, removes, leaderRemoves, transfers, ids)
		},
	})
}

// waitVoter waits until node i is a voter in the leader's configuration.
func waitVoter(t *testing.T, c *testcluster.Cluster, i int) {
	t.Helper()
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for {
		members, err := c.Members()
		if err == nil {
			for _, m := range members {
				if m.ID == c.ID(i) && m.Voter {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node%d is not a voter after %v (members %v, %v)", i, testcluster.WaitTimeout, members, err)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}
