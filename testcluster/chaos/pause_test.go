package chaos

import (
	"testing"
	"time"

	"github.com/raftkms/raftkms/testcluster"
)

// TestChaosPausedLeader freezes the leader (sometimes a follower) as a
// stopped process would be — its Raft traffic held, its apply path blocked,
// its gRPC connections to clients and to other nodes frozen — for several
// election timeouts, then lets it run again: what it had queued goes out
// late, from an old term, and the client calls that were waiting in its
// connections are handled after the cluster has moved on (forwarded under
// their original request IDs, which the clients meanwhile retried
// elsewhere). Clients keep calling every node,
// the frozen one included, with short attempt timeouts and a short budget,
// so some writes end with an unknown outcome, as they would in production.
func TestChaosPausedLeader(t *testing.T) {
	pauses, failovers := 0, 0
	var slowest time.Duration
	Run(t, params(t), Scenario{
		Workload: Config{AttemptTimeout: 600 * time.Millisecond, OpBudget: 2 * time.Second},
		Faults: func(e *Env) {
			for !e.Done() {
				e.Dwell(300*time.Millisecond, 800*time.Millisecond)
				l := e.Leader()
				victim, what := l, "leader"
				if e.Rand.IntN(4) == 0 {
					victim, what = e.Pick(e.Others(l)), "follower"
				}
				term := e.C.Node(l).Term()
				e.C.Pause(victim)
				pauses++
				e.Fault("pause %s node%d (term %d)", what, victim, term)
				if victim == l {
					// The others must elect a new leader while it sleeps.
					start := time.Now()
					deadline := start.Add(testcluster.WaitTimeout)
					for {
						if n := e.C.Leader(); n >= 0 && n != l && e.C.Node(n).Term() > term {
							break
						}
						if time.Now().After(deadline) {
							t.Fatalf("no new leader %v after pausing leader node%d", testcluster.WaitTimeout, l)
						}
						time.Sleep(10 * time.Millisecond) // polling with a deadline
					}
					failovers++
					slowest = max(slowest, time.Since(start))
					e.Note("node%d leads now", e.C.Leader())
				}
				e.Progress("with a node paused", 30)
				e.Dwell(500*time.Millisecond, 1500*time.Millisecond)
				e.C.Resume(victim)
				e.Note("resume node%d", victim)
			}
		},
	})
	t.Logf("%d pauses; %d of the leader, each replaced within %v", pauses, failovers, slowest.Round(time.Millisecond))
}
