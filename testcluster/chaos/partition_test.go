package chaos

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestChaosPartitionedLeader partitions a 5-node cluster again and again,
// with the leader on the minority side (alone, or with one follower) or on
// the majority side (two followers cut off), sometimes one way only (the
// minority hears the majority but is never heard). Clients keep working
// against the majority, and probe clients keep calling the minority.
//
// In every round, whichever side the leader is on and whether the cut runs
// both ways or one, nothing a minority node sends reaches the majority —
// neither Raft nor node-to-node gRPC (forwarding, read index), which
// crosses the same links. A write needs a quorum's acknowledgement or the
// answer of a leader that has one, and a linearizable read (Encrypt,
// Decrypt, DescribeKey) a read index confirmed by a quorum or a read lease,
// so from the moment the partition is in place until it heals not one
// write to a minority node may succeed, and no read but one served under a
// read lease the node held when the cut began: no read that starts more
// than one lease duration after the cut (see window), even while the node
// still believes in a leader beyond the cut (a one-way minority hears the
// new leader, and forwards to it in vain). Porcupine judges everything
// else.
func TestChaosPartitionedLeader(t *testing.T) {
	var mu sync.Mutex
	var windows []window
	var attempts []Attempt
	Run(t, params(t), Scenario{
		Nodes: 5,
		// Short attempts: a minority node that believes in a leader beyond
		// a one-way cut forwards into the blackhole and answers only when
		// the attempt times out; it must do so inside the round to be
		// checked.
		Workload: Config{Workers: 5, Probes: 4, AttemptTimeout: 500 * time.Millisecond, ProbeMix: probeMix},
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
				how := map[bool]string{true: "one way", false: "both ways"}[oneWay]
				e.Fault("partition (%s): %v | %v, leader node%d (term %d) on the %s side", how,
					minority, majority, l, term, leaderSide)
				e.Progress("on the majority side", 30)
				// Long enough for a minority's leases to end within the cut,
				// so that reads beyond them are checked too.
				span := leaseSpan(e)
				e.Dwell(500*time.Millisecond, 1500*time.Millisecond)
				for time.Duration(e.Rec.Now()-start) < span+500*time.Millisecond {
					e.Dwell(50*time.Millisecond, 100*time.Millisecond)
				}
				end := e.Rec.Now()
				e.C.HealAll()
				e.TargetLive()
				e.Note("healed")
				mu.Lock()
				windows = append(windows, window{nodes: minority, start: start, end: end, lease: int64(span),
					kind: fmt.Sprintf("%s, leader on the %s side", how, leaderSide),
					what: fmt.Sprintf("%v cut off %s, leader node%d on the %s side", minority, how, l, leaderSide)})
				mu.Unlock()
			}
		},
		Check: func(e *Env) {
			mu.Lock()
			defer mu.Unlock()
			checkCutOff(t, windows, attempts)
		},
		OnAttempt: func(a Attempt) {
			mu.Lock()
			attempts = append(attempts, a)
			mu.Unlock()
		},
	})
}
