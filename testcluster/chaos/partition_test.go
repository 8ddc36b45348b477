package chaos

import (
	"sync"
	"testing"
	"time"
)

// window is a time during which some nodes were cut off from every leader:
// nothing they answer then may succeed.
type window struct {
	nodes      []int
	start, end int64 // recorder time
	what       string
}

// TestChaosPartitionedLeader partitions a 5-node cluster again and again,
// with the leader on the minority side (alone, or with one follower) or on
// the majority side (two followers cut off), sometimes one way only (the
// minority hears the majority but is never heard). Clients keep working
// against the majority, and probe clients keep calling the minority.
//
// When the leader is cut off both ways on the minority side, the minority
// has no leader it can reach: from the moment the partition is in place
// until it heals, not one write may be acknowledged and not one
// linearizable read (Encrypt, Decrypt, DescribeKey) served by a minority
// node. The cut runs through Raft only — node-to-node gRPC (forwarding,
// read index) stays up — so the check holds only while the minority knows
// no leader but its own old one: every majority node must still be in the
// old leader's term right after the cut, or the round is not checked (and
// says so). In a one-way round the minority hears the new leader and
// rightly forwards to it; there, as everywhere, porcupine is the judge.
func TestChaosPartitionedLeader(t *testing.T) {
	var mu sync.Mutex
	var windows []window
	var attempts []Attempt
	checked := 0
	Run(t, params(t), Scenario{
		Nodes:    5,
		Workload: Config{Workers: 5, Probes: 2},
		Faults: func(e *Env) {
			for round := 0; !e.Done(); round++ {
				e.Dwell(400*time.Millisecond, 900*time.Millisecond)
				l := e.Leader()
				term := e.C.Node(l).Term()
				others := e.Others(l)
				e.Rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
				var minority, majority []int
				leaderSide := "minority"
				switch round % 3 {
				case 0: // the leader alone
					minority, majority = []int{l}, others
				case 1: // the leader and one follower
					minority, majority = []int{l, others[0]}, others[1:]
				case 2: // two followers; the leader keeps the majority
					minority, majority = others[:2], append([]int{l}, others[2:]...)
					leaderSide = "majority"
				}
				oneWay := e.Rand.IntN(3) == 0
				e.W.SetTargets(majority)
				e.W.SetProbeTargets(minority)
				if oneWay {
					// The minority hears the majority, but nothing it sends
					// arrives: its votes and answers are lost.
					for _, a := range minority {
						for _, b := range majority {
							e.C.Network().Blackhole(e.C.ID(a), e.C.ID(b))
						}
					}
				} else {
					e.C.Partition(minority, majority)
				}
				start := e.Rec.Now()
				e.Fault("partition (%s): %v | %v, leader node%d (term %d) on the %s side", map[bool]string{true: "one way", false: "both ways"}[oneWay],
					minority, majority, l, term, leaderSide)
				// Only a cut both ways keeps the minority from learning the new
				// leader: one way, the new leader's heartbeats still reach it,
				// and it forwards writes to that leader over gRPC (which no
				// partition cuts) — correctly, as porcupine checks.
				sound := leaderSide == "minority" && !oneWay
				for _, i := range majority {
					if got := e.C.Node(i).Term(); got != term {
						sound = false
					}
				}
				e.Progress("on the majority side", 30)
				e.Dwell(500*time.Millisecond, 1500*time.Millisecond)
				end := e.Rec.Now()
				e.C.HealAll()
				e.TargetLive()
				e.Note("healed")
				if sound {
					mu.Lock()
					windows = append(windows, window{nodes: minority, start: start, end: end, what: e.C.ID(l) + " isolated"})
					mu.Unlock()
					checked++
				} else if leaderSide == "minority" && !oneWay {
					e.Note("round not checked for minority answers: a majority node had left term %d when the cut was made", term)
				}
			}
		},
		Check: func(e *Env) {
			mu.Lock()
			defer mu.Unlock()
			probed, answered := 0, 0
			for _, a := range attempts {
				for _, w := range windows {
					if !contains(w.nodes, a.Node) || a.Start <= w.start || a.End >= w.end {
						continue
					}
					probed++
					if a.Outcome == OK {
						answered++
						t.Errorf("node%d answered %s successfully at %.3fs..%.3fs while cut off from every leader (%s, %.3fs..%.3fs)",
							a.Node, a.Kind, float64(a.Start)/1e9, float64(a.End)/1e9, w.what, float64(w.start)/1e9, float64(w.end)/1e9)
					}
				}
			}
			t.Logf("%d rounds with the leader cut off both ways checked: %d calls to minority nodes in them, %d answered successfully", checked, probed, answered)
			if checked > 0 && probed == 0 {
				t.Errorf("the probes never called a minority node while it was cut off: the check proved nothing")
			}
		},
		OnAttempt: func(a Attempt) {
			mu.Lock()
			attempts = append(attempts, a)
			mu.Unlock()
		},
	})
}
