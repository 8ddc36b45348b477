package chaos

import (
	"fmt"
	"sort"
	"testing"
	"time"
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
