package chaos

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
)

// Scenario is one chaos test: a cluster, a client workload, and a fault
// schedule that runs while the workload does.
type Scenario struct {
	Nodes    int                     // cluster size; default 3
	Options  []testcluster.Option    // more cluster options (snapshots, ...)
	API      []testcluster.APIOption // more API options (clocks, ...)
	Limits   *rpc.Limits             // default: 1 s minimum rotation period, no on-demand limit to speak of
	Workload Config
	// Faults injects faults, on the test's goroutine, until e.Done(). The
	// harness heals everything afterwards (HealAll, RestartDead).
	Faults func(e *Env)
	// Check, if set, runs scenario-specific checks after the common ones
	// and before the ciphertext check (which enables every key).
	Check func(e *Env)
	// OnAttempt, if set, sees every try of every operation.
	OnAttempt func(Attempt)
	// NoLeaseReads says the scenario's nodes are not meant to serve reads
	// under a read lease (another read mode): Run then does not fail a run
	// in which none did.
	NoLeaseReads bool
}

// Params are the run's knobs, from the test flags.
type Params struct {
	Seed     uint64        // the run's seed (printed)
	Duration time.Duration // how long faults are injected
	OutDir   string        // where a failing history's visualization goes; default the test's temp dir
}

// Env is what a scenario's fault schedule works with.
type Env struct {
	T    *testing.T
	Seed uint64
	Rand *rand.Rand // the fault schedule's randomness, from the seed
	C    *testcluster.Cluster
	W    *Workload
	Rec  *Recorder

	start, end time.Time
	faults     int
}

// Done reports whether the fault phase is over.
func (e *Env) Done() bool { return time.Now().After(e.end) }

// Note logs a fault (or heal) and marks it in the history.
func (e *Env) Note(format string, args ...any) {
	e.T.Helper()
	msg := fmt.Sprintf(format, args...)
	e.T.Logf("%6.2fs %s", time.Since(e.start).Seconds(), msg)
	e.Rec.Fault("%s", msg)
}

// Fault counts one injected fault and notes it.
func (e *Env) Fault(format string, args ...any) {
	e.T.Helper()
	e.faults++
	e.Note(format, args...)
}

// Between is a random duration in [lo, hi).
func (e *Env) Between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(e.Rand.Int64N(int64(hi-lo)))
}

// Dwell lets the workload run for a random time in [lo, hi) — the spacing
// of the fault schedule.
func (e *Env) Dwell(lo, hi time.Duration) {
	time.Sleep(e.Between(lo, hi)) // the schedule's pacing, not a wait for a condition
}

// Progress waits until the workload has finished n more operations: the
// cluster (the part clients are sent to) still serves.
func (e *Env) Progress(what string, n int64) {
	e.T.Helper()
	target := e.W.Resolved() + n
	deadline := time.Now().Add(testcluster.WaitTimeout)
	for e.W.Resolved() < target {
		if time.Now().After(deadline) {
			e.T.Fatalf("no progress %s: %d of %d operations finished", what, e.W.Resolved(), target)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// Leader waits for a leader and returns its index.
func (e *Env) Leader() int {
	e.T.Helper()
	return e.C.WaitForLeader(e.T)
}

// Live are the running members.
func (e *Env) Live() []int {
	var out []int
	for i := range e.C.N() {
		if e.C.Alive(i) && !e.C.Removed(i) {
			out = append(out, i)
		}
	}
	return out
}

// Others are the running members except skip.
func (e *Env) Others(skip ...int) []int {
	var out []int
	for _, i := range e.Live() {
		if !contains(skip, i) {
			out = append(out, i)
		}
	}
	return out
}

// TargetLive sends the workers to every running member, and stops probes.
func (e *Env) TargetLive() {
	e.W.SetTargets(e.Live())
	e.W.SetProbeTargets(nil)
}

// Pick is a random element of nodes.
func (e *Env) Pick(nodes []int) int { return nodes[e.Rand.IntN(len(nodes))] }

func contains(s []int, x int) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// Run runs a scenario: it starts the cluster and the workload, runs the
// fault schedule for p.Duration, heals everything, lets the operations in
// flight finish, and then checks:
//
//   - porcupine finds every key's history linearizable (a failing history
//     is written as HTML, with the faults marked);
//   - every live node holds every acknowledged write exactly once, nothing
//     refused or never asked for, and each key's versions 1..n without a
//     gap or a duplicate (automatic ones a period apart);
//   - all live nodes converge to the same digest;
//   - every ciphertext made during the run decrypts.
func Run(t *testing.T, p Params, sc Scenario) *Env {
	t.Helper()
	t.Logf("chaos seed %d (replay: go test ./testcluster/chaos -run '^%s$' -chaos.seed=%d)", p.Seed, t.Name(), p.Seed)
	if sc.Nodes == 0 {
		sc.Nodes = 3
	}
	limits := rpc.Limits{MinRotationPeriod: time.Second, OnDemandLimit: 1 << 30}
	if sc.Limits != nil {
		limits = *sc.Limits
	}
	api := append([]testcluster.APIOption{testcluster.WithLimits(limits)}, sc.API...)
	c := testcluster.New(t, sc.Nodes, append([]testcluster.Option{testcluster.WithAPI(api...)}, sc.Options...)...)
	c.Network().SetFaultSeed(p.Seed)
	c.WaitServing(t)

	rec := NewRecorder()
	w, err := NewWorkload(rec, p.Seed, c.GRPCAddrs(), sc.Workload)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-in first-out: the workload stops before the cluster.
	t.Cleanup(func() {
		w.Stop()
		w.Wait()
		w.Close()
	})
	e := &Env{T: t, Seed: p.Seed, Rand: rand.New(rand.NewPCG(p.Seed, 0xfa017)), C: c, W: w, Rec: rec, start: time.Now()}
	w.OnAttempt = sc.OnAttempt
	w.Setup(t)
	w.Start()
	e.end = time.Now().Add(p.Duration)
	reads0 := e.readCounts()
	if sc.Faults != nil {
		sc.Faults(e)
	}
	leased := e.reportReads(reads0)

	e.Note("fault phase over: heal everything, restart dead members")
	w.Stop()
	c.HealAll()
	c.RestartDead()
	e.TargetLive()
	w.Wait()
	c.WaitServing(t)
	c.WaitConverged(t)
	w.Describe(t)
	c.WaitConverged(t)

	dir := p.OutDir
	if dir == "" {
		dir = t.TempDir()
	}
	checkLinearizable(t, rec, dir)
	checkState(t, c, w, rec)
	if sc.Check != nil {
		sc.Check(e)
	}
	checkCiphertexts(t, c, w)
	if leased == 0 && !sc.NoLeaseReads {
		t.Errorf("no read was served under a read lease during the fault phase: the run did not exercise leases")
	}
	t.Logf("%d faults in %v; %s", e.faults, p.Duration, summary(rec.Ops()))
	return e
}

// ReadCounts is how one node served reads (rpc.Server.ReadCounts): under
// its read lease, after a read-index round, from local state, and how many
// answers were held until what they saw was visible on every node.
type ReadCounts struct {
	Lease, ReadIndex, Stale, Held uint64
}

func (r ReadCounts) String() string {
	return fmt.Sprintf("%d lease, %d read-index, %d stale, %d held", r.Lease, r.ReadIndex, r.Stale, r.Held)
}

// nodeReads is a node's counters and the incarnation they belong to.
type nodeReads struct {
	srv    any
	counts ReadCounts
}

// Reads is node i's counters now (of its current incarnation).
func (e *Env) Reads(i int) ReadCounts {
	srv := e.C.Server(i)
	if srv == nil {
		return ReadCounts{}
	}
	var r ReadCounts
	r.Lease, r.ReadIndex, r.Stale, r.Held = srv.API().ReadCounts()
	return r
}

func (e *Env) readCounts() []nodeReads {
	out := make([]nodeReads, e.C.N())
	for i := range out {
		if srv := e.C.Server(i); srv != nil {
			out[i] = nodeReads{srv: srv, counts: e.Reads(i)}
		}
	}
	return out
}

// reportReads logs how each node served reads since before (a node
// restarted meanwhile counts from its restart) and returns how many were
// served under a lease.
func (e *Env) reportReads(before []nodeReads) uint64 {
	e.T.Helper()
	after := e.readCounts()
	var total ReadCounts
	var parts []string
	for i, a := range after {
		d := a.counts
		if i < len(before) && before[i].srv == a.srv {
			b := before[i].counts
			d = ReadCounts{d.Lease - b.Lease, d.ReadIndex - b.ReadIndex, d.Stale - b.Stale, d.Held - b.Held}
		}
		total.Lease += d.Lease
		total.ReadIndex += d.ReadIndex
		total.Stale += d.Stale
		total.Held += d.Held
		parts = append(parts, fmt.Sprintf("node%d %s", i, d))
	}
	e.T.Logf("reads during the fault phase: %s (%s)", total, strings.Join(parts, "; "))
	return total.Lease
}

// summary counts operations by kind and outcome.
func summary(ops []Op) string {
	type key struct {
		k Kind
		o Outcome
	}
	n := map[key]int{}
	retried := 0
	for _, op := range ops {
		n[key{op.In.Kind, op.Out.Outcome}]++
		if op.Attempts > 1 {
			retried++
		}
	}
	var kinds []Kind
	for k := range kindNames {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	var parts []string
	for _, k := range kinds {
		ok, rej, unk := n[key{k, OK}], n[key{k, Rejected}], n[key{k, Unknown}]
		if ok+rej+unk == 0 {
			continue
		}
		s := fmt.Sprintf("%s %d ok/%d rejected", k, ok, rej)
		if unk > 0 {
			s += fmt.Sprintf("/%d unknown", unk)
		}
		parts = append(parts, s)
	}
	return fmt.Sprintf("%d operations (%d needed retries): %s", len(ops), retried, strings.Join(parts, ", "))
}
