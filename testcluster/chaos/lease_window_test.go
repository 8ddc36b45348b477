package chaos

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/raftkms/raftkms/testcluster"
)

// window is a time during which some nodes could send nothing to the rest
// of the cluster. Nothing they answer then may succeed but a read served
// under a read lease they held when the cut began: such a lease lasts at
// most one lease duration L in real time after it (the holder trusts it for
// L(1-ε) on a clock at least 1-ε as fast as real time, from before its
// last renewal crossed the cut; the leader for L(1-ε) from the start of a
// confirmation round a quorum answered before the cut). So a read that
// starts more than L after the cut began may not succeed, and a write never.
type window struct {
	nodes      []int
	start, end int64  // recorder time
	lease      int64  // the longest lease span, recorder time (ns)
	kind       string // which way the cut ran, and where the leader was
	what       string
}

// leaseSpan is the longest any node's read lease can outlive a cut: its
// lease duration (testcluster nodes' clocks keep real time unless a
// scenario skews them within the drift bound).
func leaseSpan(e *Env) time.Duration {
	var span time.Duration
	for _, i := range e.Live() {
		span = max(span, e.C.Node(i).LeaseDuration())
	}
	return span
}

// cutOffStats is what checkCutOff found.
type cutOffStats struct {
	probed        int // attempts on cut-off nodes inside a window
	leaseReads    int // reads that succeeded within the lease span after the cut
	lateReads     int // reads started after the lease span (must all fail)
	writes        int // writes (must all fail)
	lastLeaseRead time.Duration
}

// checkCutOff applies the windows' rule to every attempt: it reports each
// success a cut-off node may not have given, and logs what it saw per kind
// of window.
func checkCutOff(t *testing.T, windows []window, attempts []Attempt) cutOffStats {
	t.Helper()
	var st cutOffStats
	rounds, calls, leased := map[string]int{}, map[string]int{}, map[string]int{}
	for _, w := range windows {
		rounds[w.kind]++
	}
	for _, a := range attempts {
		for _, w := range windows {
			if !contains(w.nodes, a.Node) || a.Start <= w.start || a.End >= w.end {
				continue
			}
			st.probed++
			calls[w.kind]++
			inLease := !a.Kind.Mutates() && a.Start <= w.start+w.lease
			switch {
			case a.Kind.Mutates():
				st.writes++
			case !inLease:
				st.lateReads++
			}
			if a.Outcome != OK {
				continue
			}
			if inLease {
				st.leaseReads++
				leased[w.kind]++
				st.lastLeaseRead = max(st.lastLeaseRead, time.Duration(a.End-w.start))
				continue
			}
			why := "a write, while it could reach no majority"
			if !a.Kind.Mutates() {
				why = fmt.Sprintf("a read started %.3fs after the cut, beyond any lease (%.3fs)",
					float64(a.Start-w.start)/1e9, float64(w.lease)/1e9)
			}
			t.Errorf("node%d answered %s successfully at %.3fs..%.3fs: %s (%s, %.3fs..%.3fs)",
				a.Node, a.Kind, float64(a.Start)/1e9, float64(a.End)/1e9, why, w.what, float64(w.start)/1e9, float64(w.end)/1e9)
		}
	}
	t.Logf("%d cuts checked: %d calls to cut-off nodes in them (%d writes, %d reads after the lease span); %d reads answered under a lease from before the cut (the last %v after it)",
		len(windows), st.probed, st.writes, st.lateReads, st.leaseReads, st.lastLeaseRead.Round(time.Millisecond))
	kinds := make([]string, 0, len(rounds))
	for k := range rounds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Logf("  %s: %d cuts, %d calls, %d answered under a lease", k, rounds[k], calls[k], leased[k])
	}
	if len(windows) > 0 && st.probed == 0 {
		t.Errorf("the probes never called a cut-off node while it was cut off: the check proved nothing")
	}
	return st
}

// probeMix is what probes of cut-off nodes mostly ask: reads, which a node
// may answer under its lease for a while after the cut, and a few writes,
// which it may never acknowledge. (A write that cannot be answered keeps a
// probe busy for its whole budget, so with the default mix the probes
// would hardly read at all.)
var probeMix = Mix{OpEncrypt: 8, OpDecrypt: 5, OpDescribe: 5, OpDisable: 1, OpEnable: 1}

// attemptLog collects every attempt of a run (Scenario.OnAttempt), for the
// fault schedule to look at while it runs and for the checks after it.
type attemptLog struct {
	mu       sync.Mutex
	attempts []Attempt
	windows  []window
}

func (l *attemptLog) add(a Attempt) {
	l.mu.Lock()
	l.attempts = append(l.attempts, a)
	l.mu.Unlock()
}

func (l *attemptLog) addWindow(w window) {
	l.mu.Lock()
	l.windows = append(l.windows, w)
	l.mu.Unlock()
}

// firstWrite is the first write acknowledged by one of nodes that was
// attempted after since: its end, or false when there is none yet.
func (l *attemptLog) firstWrite(since int64, nodes []int) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first int64
	found := false
	for _, a := range l.attempts {
		if a.Kind.Mutates() && a.Outcome == OK && a.Start > since && contains(nodes, a.Node) && (!found || a.End < first) {
			first, found = a.End, true
		}
	}
	return first, found
}

// inFlightAt counts the write attempts on nodes that began before at and
// ended after it, and how many of them were acknowledged.
func (l *attemptLog) inFlightAt(at int64, nodes []int) (n, acked int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.attempts {
		if a.Kind.Mutates() && a.Start < at && a.End > at && contains(nodes, a.Node) {
			n++
			if a.Outcome == OK {
				acked++
			}
		}
	}
	return n, acked
}

// waitWriteAfter waits until nodes acknowledge a write attempted after
// since, and returns how long after since that was: the stall of writes.
func waitWriteAfter(e *Env, log *attemptLog, since int64, nodes []int) time.Duration {
	e.T.Helper()
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for {
		if end, ok := log.firstWrite(since, nodes); ok {
			return time.Duration(end - since)
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("no write attempted on %v after the cut was acknowledged within %v", nodes, testcluster.WaitTimeout)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// waitHoldsLease waits until node i holds a read lease and has served a
// read under it since the call.
func waitHoldsLease(e *Env, i int) {
	e.T.Helper()
	before := e.Reads(i).Lease
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok, err := e.C.Node(i).LeaseRead(ctx)
		cancel()
		if ok && err == nil && e.Reads(i).Lease > before {
			return
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("node%d never held a read lease and served a read under it", i)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// dwellUntil lets the workload run until d after since (recorder time).
func dwellUntil(e *Env, since int64, d time.Duration) {
	for time.Duration(e.Rec.Now()-since) < d {
		e.Dwell(20*time.Millisecond, 50*time.Millisecond)
	}
}

// stallStats summarizes measured stalls.
func stallStats(stalls []time.Duration) string {
	if len(stalls) == 0 {
		return "none"
	}
	s := append([]time.Duration(nil), stalls...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("min %v, median %v, max %v (%d faults)", s[0].Round(time.Millisecond),
		s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond), len(s))
}

// readProbeMix is probeMix without writes: probes that only read, so that
// every one of them keeps asking a cut-off node through the whole cut.
var readProbeMix = Mix{OpEncrypt: 8, OpDecrypt: 5, OpDescribe: 5}
