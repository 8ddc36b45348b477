package raftnode

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftkms/raftkms/fsm"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
)

// Quorum read leases (DESIGN §5; after Moraru, Andersen and Kaminsky, "Paxos
// Quorum Leases", SoCC 2014).
//
// Every node keeps a stream open to the leader (rpc carries it). On it the
// node renews its lease and reports how far its log is appended; the leader
// grants leases, runs confirmation rounds, and pushes the visible index: the
// highest index every lease holder has appended (or will not serve below).
//
//   - A write is acknowledged only once the visible index covers it, so every
//     holder has it in its log. A holder serving a read first waits until it
//     has applied every appended entry that names a key the read looks at
//     (the pending index), so it sees every acknowledged write with no round
//     trip.
//   - An answer is held until the visible index covers the last change of
//     what it looked at (fsm.ModIndex): then every later read, on any node,
//     sees that change too. Reads of keys nobody is writing are held for
//     nothing.
//   - Durations are measured on each node's monotonic clock, assumed to run
//     within a factor (1±ε) of real time (Config.LeaseMaxDrift). A holder
//     trusts its lease for L(1-ε), less the age of the leader's last
//     confirmation, from when it sent the renewal; the leader keeps counting
//     the holder for L(1+ε) from when it received it. So the holder stops
//     first, in real time.
//   - The leader itself serves lease reads for L(1-ε) from the start of the
//     last confirmation round a quorum answered in its term; no other leader
//     can have been elected before that start. A new leader acknowledges
//     nothing and makes nothing visible for L(1+ε) after it gains
//     leadership, so every lease granted by an earlier leader has ended.
//   - A holder that stops answering is dropped by the leader L(1+ε) after its
//     last renewal: writes wait at most that long for a node that is down.
type leases struct {
	n     *Node
	dur   time.Duration
	drift float64
	now   func() time.Duration

	mu sync.Mutex

	// Leader side.
	leading      bool
	term         uint64
	waitUntil    time.Duration
	holders      map[string]*leaseRecord
	confirmSeq   uint64
	confirmStart time.Duration
	confirmAcks  map[string]bool
	confirmedAt  time.Duration
	confirmed    bool
	visible      uint64 // in term

	// Every node: its own lease and what it knows.
	myTerm      uint64
	myExpiry    time.Duration
	myFloor     uint64
	myValid     bool
	seenConfirm uint64 // newest confirmation round seen in myTerm
	seq         uint64
	sent        map[uint64]time.Duration // renewal seq -> when sent
	known       uint64                   // visible index known (see learn)
	changed     chan struct{}            // closed when known, the confirm round or the lease changes

	// Appended log (trackedLogs).
	appendedIndex uint64
	appendedTerm  uint64
	appendCh      chan struct{} // closed when the log grows

	// Read on every request without l.mu: the lease as last published
	// (publishLocked), the known visible index, and the pending indexes.
	view         atomic.Pointer[leaseView]
	knownA       atomic.Uint64
	termA        atomic.Uint64 // myTerm, the term knownA belongs to
	appendedA    atomic.Uint64
	pmu          sync.RWMutex
	pendingKeys  map[string]uint64 // guarded by pmu
	pendingOther uint64            // guarded by pmu
}

// leaseView is the lease as a read checks it.
type leaseView struct {
	leading bool
	term    uint64
	until   time.Duration // on this node's lease clock
	floor   uint64
}

// publishLocked makes the current lease visible to LeaseRead. l.mu is held.
func (l *leases) publishLocked() {
	v := &leaseView{leading: l.leading}
	if l.leading {
		if l.confirmed {
			v.term, v.until = l.term, l.confirmedAt+l.holderSpan()
		}
	} else if l.myValid {
		v.term, v.until, v.floor = l.myTerm, l.myExpiry, l.myFloor
	}
	l.view.Store(v)
	l.knownA.Store(l.known)
}

type leaseRecord struct {
	appended uint64
	floor    uint64
	expires  time.Duration
}

func newLeases(n *Node) *leases {
	return &leases{
		n: n, dur: n.cfg.LeaseDuration, drift: n.cfg.LeaseMaxDrift, now: n.cfg.LeaseClock,
		holders: map[string]*leaseRecord{}, sent: map[uint64]time.Duration{},
		pendingKeys: map[string]uint64{}, changed: make(chan struct{}), appendCh: make(chan struct{}),
	}
}

// holderSpan is how long a holder trusts a lease; leaderSpan how long the
// leader counts a holder, and waits out earlier leases.
func (l *leases) holderSpan() time.Duration {
	return time.Duration(float64(l.dur) * (1 - l.drift))
}
func (l *leases) leaderSpan() time.Duration {
	return time.Duration(float64(l.dur) * (1 + l.drift))
}

// LeaseDuration is the configured lease duration.
func (n *Node) LeaseDuration() time.Duration { return n.lease.dur }

// broadcastLocked wakes everyone waiting on l.changed. l.mu is held.
func (l *leases) broadcastLocked() {
	l.publishLocked()
	close(l.changed)
	l.changed = make(chan struct{})
}

// newTermLocked forgets what this node knew of an older term's leases. The
// visible index of an older term may cover entries that were never committed
// and have since been replaced; only what this node has applied (committed,
// so never replaced) stays known.
func (l *leases) newTermLocked(term uint64) {
	if term <= l.myTerm {
		return
	}
	l.myTerm = term
	l.termA.Store(term)
	l.myValid = false
	l.myFloor = 0
	l.seenConfirm = 0
	l.known = min(l.known, l.n.adapter.applied.Load())
	l.broadcastLocked()
}

// run is the node's lease goroutine: it follows leadership and, while this
// node leads, runs confirmation rounds, drops expired holders and moves the
// visible index.
func (l *leases) run(lead <-chan bool) {
	defer l.n.bg.Done()
	tick := time.NewTicker(l.dur / 8)
	defer tick.Stop()
	round := 0
	for {
		select {
		case v, ok := <-lead:
			if !ok {
				return
			}
			l.setLeading(v)
		case <-tick.C:
			round++
			l.maintain(round%2 == 0)
		case <-l.n.doneCh:
			return
		}
	}
}

func (l *leases) setLeading(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !v {
		if l.leading {
			l.stepDownLocked()
		}
		return
	}
	term := l.n.raft.CurrentTerm()
	if l.leading && l.term == term {
		return
	}
	l.newTermLocked(term)
	l.leading, l.term = true, term
	l.waitUntil = l.now() + l.leaderSpan()
	l.holders = map[string]*leaseRecord{}
	l.confirmed = false
	l.confirmAcks = map[string]bool{}
	l.visible = 0
	l.startRoundLocked()
}

// stepDownLocked ends this node's leadership of the lease: no holders, no
// confirmation.
func (l *leases) stepDownLocked() {
	l.leading = false
	l.holders = map[string]*leaseRecord{}
	l.confirmed = false
	l.broadcastLocked()
}

// startRoundLocked begins a confirmation round; the stream handlers push it.
func (l *leases) startRoundLocked() {
	l.confirmSeq++
	l.confirmStart = l.now()
	l.confirmAcks = map[string]bool{}
	l.checkQuorumLocked()
	l.broadcastLocked()
}

// checkQuorumLocked confirms the round once a quorum of voters (this node
// included) is in the leader's term after the round began.
func (l *leases) checkQuorumLocked() {
	f := l.n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters, acks := 0, 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == l.n.cfg.NodeID || l.confirmAcks[string(s.ID)] {
			acks++
		}
	}
	if voters > 0 && acks*2 > voters && (!l.confirmed || l.confirmStart > l.confirmedAt) {
		l.confirmed, l.confirmedAt = true, l.confirmStart
		l.broadcastLocked()
	}
}

func (l *leases) maintain(newRound bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return
	}
	if l.n.raft.State() != raft.Leader || l.n.raft.CurrentTerm() != l.term {
		l.stepDownLocked()
		return
	}
	if newRound {
		l.startRoundLocked()
	}
	l.recomputeLocked()
}

// recomputeLocked drops expired holders and advances the visible index.
func (l *leases) recomputeLocked() {
	if !l.leading {
		return
	}
	now := l.now()
	if now < l.waitUntil {
		return // earlier leaders' leases may still run
	}
	v := l.appendedIndex
	for id, h := range l.holders {
		if now >= h.expires {
			delete(l.holders, id)
			continue
		}
		v = min(v, max(h.appended, h.floor))
	}
	if v > l.visible {
		l.visible = v
	}
	if l.visible > l.known {
		l.known = l.visible
		l.broadcastLocked()
	}
}

// LeaseServe answers one message of a node's lease stream on the leader.
// from is the node ID of the stream's certificate.
func (n *Node) LeaseServe(from string, req *clusterv1.LeaseRequest) *clusterv1.LeaseGrant {
	l := n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	g := &clusterv1.LeaseGrant{Seq: req.Seq}
	if !l.leading || n.raft.State() != raft.Leader || n.raft.CurrentTerm() != l.term {
		return g
	}
	g.Term = l.term
	g.ConfirmSeq = l.confirmSeq
	if req.Term == l.term && req.ConfirmSeq == l.confirmSeq && !l.confirmAcks[from] {
		l.confirmAcks[from] = true
		l.checkQuorumLocked()
	}
	// The sender's log matches ours up to the index it reports only if it
	// holds our entry there (same index and term).
	appended := uint64(0)
	if req.AppendedIndex > 0 && req.AppendedTerm > 0 {
		idx := min(req.AppendedIndex, l.appendedIndex)
		var e raft.Log
		if idx == req.AppendedIndex && n.logs.GetLog(idx, &e) == nil && e.Term == req.AppendedTerm {
			appended = idx
		}
	}
	now := l.now()
	h := l.holders[from]
	if h != nil && now >= h.expires {
		delete(l.holders, from)
		h = nil
	}
	if h != nil {
		h.appended = max(h.appended, appended)
	}
	age := now - l.confirmedAt
	if req.WantLease && req.Seq > 0 && req.Term == l.term && l.confirmed && age < l.holderSpan() &&
		(h != nil || n.ProposeSchema() >= fsm.SchemaLeases) {
		if h == nil {
			// Everything acknowledged or made visible so far is at or
			// below our last index: the new holder serves nothing until
			// it has applied that far.
			h = &leaseRecord{floor: l.appendedIndex, appended: appended}
			l.holders[from] = h
		}
		h.expires = now + l.leaderSpan()
		g.Granted = true
		g.Floor = h.floor
		g.AgeNanos = int64(age)
		g.DurationNanos = int64(l.dur)
	}
	l.recomputeLocked()
	g.Visible = l.visible
	return g
}

// LeaseNext builds this node's next message for its lease stream: a renewal
// (seq > 0) that also reports its log and acknowledges the newest
// confirmation round it has seen.
func (n *Node) LeaseNext(wantLease bool) *clusterv1.LeaseRequest {
	l := n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	term := n.raft.CurrentTerm()
	l.newTermLocked(term)
	l.seq++
	l.sent[l.seq] = l.now()
	if len(l.sent) > 64 {
		for s := range l.sent {
			if s+64 <= l.seq {
				delete(l.sent, s)
			}
		}
	}
	return &clusterv1.LeaseRequest{
		NodeId: n.cfg.NodeID, Seq: l.seq, AppendedIndex: l.appendedIndex, AppendedTerm: l.appendedTerm,
		Term: term, ConfirmSeq: l.seenConfirm, WantLease: wantLease,
	}
}

// LeaseGranted takes one message of the leader. It reports whether the
// leader started a confirmation round this node has not acknowledged yet
// (the caller then sends LeaseNext at once).
func (n *Node) LeaseGranted(g *clusterv1.LeaseGrant) (ack bool) {
	l := n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if g.Term == 0 {
		return false
	}
	term := n.raft.CurrentTerm()
	if g.Term != term {
		return false // from a leader of another term than ours: nothing to trust
	}
	l.newTermLocked(term)
	if g.ConfirmSeq > l.seenConfirm {
		l.seenConfirm = g.ConfirmSeq
		ack = true
	}
	if g.Granted && g.Seq > 0 {
		if sent, ok := l.sent[g.Seq]; ok {
			exp := sent + l.holderSpan() - time.Duration(g.AgeNanos)
			if !l.myValid || l.now() >= l.myExpiry {
				l.myFloor = 0 // a new lease: the floor of this grant
			}
			if exp > l.myExpiry || !l.myValid {
				l.myExpiry = exp
			}
			l.myFloor = max(l.myFloor, g.Floor)
			l.myValid = true
		}
	}
	if g.Visible > l.known {
		l.known = g.Visible
		l.broadcastLocked()
	} else {
		l.publishLocked()
	}
	return ack
}

// LeaseChanged returns a channel closed at the next change of the visible
// index, the confirmation round or leadership (the stream handlers push on it).
func (n *Node) LeaseChanged() <-chan struct{} {
	n.lease.mu.Lock()
	defer n.lease.mu.Unlock()
	return n.lease.changed
}

// LeasePush is the leader's unsolicited message: the visible index and the
// confirmation round. Empty (term 0) when this node does not lead.
func (n *Node) LeasePush() *clusterv1.LeaseGrant {
	l := n.lease
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.leading {
		return &clusterv1.LeaseGrant{}
	}
	return &clusterv1.LeaseGrant{Term: l.term, ConfirmSeq: l.confirmSeq, Visible: l.visible}
}

// LeaseAppended returns a channel closed when this node's log next grows.
func (n *Node) LeaseAppended() <-chan struct{} {
	n.lease.mu.Lock()
	defer n.lease.mu.Unlock()
	return n.lease.appendCh
}

// LeaseRead reports whether this node holds a valid read lease now, and if
// so waits until it has applied the lease's floor. A false answer means the
// caller must use the read index instead.
func (n *Node) LeaseRead(ctx context.Context) (bool, error) {
	l := n.lease
	v := l.view.Load()
	if v == nil || v.term == 0 || l.now() >= v.until || n.raft.CurrentTerm() != v.term {
		return false, nil
	}
	if v.leading && (n.readyTerm.Load() != v.term || n.raft.State() != raft.Leader) {
		return false, nil
	}
	if v.floor > 0 {
		if err := n.WaitApplied(ctx, v.floor); err != nil {
			return false, err
		}
	}
	return true, nil
}

// WaitPending waits until this node has applied every entry in its log that
// names one of these keys or changes something not tied to one key (no keys:
// every appended entry). A lease holder calls it before reading: every write
// acknowledged before the read began is in its log by then.
func (n *Node) WaitPending(ctx context.Context, keyIDs ...string) error {
	l := n.lease
	var need uint64
	if len(keyIDs) == 0 {
		need = l.appendedA.Load()
	} else {
		l.pmu.RLock()
		need = l.pendingOther
		for _, id := range keyIDs {
			need = max(need, l.pendingKeys[id])
		}
		l.pmu.RUnlock()
	}
	if need <= n.adapter.applied.Load() {
		return nil
	}
	return n.WaitApplied(ctx, need)
}

// WaitVisible holds an answer until the visible index reaches index (the
// last change of what the answer looked at, fsm.ModIndex): then every node
// that can serve a read has that change in its log.
func (n *Node) WaitVisible(ctx context.Context, index uint64) error {
	l := n.lease
	if n.VisibleIndex() >= index {
		return nil
	}
	for {
		l.mu.Lock()
		if l.known >= index {
			l.mu.Unlock()
			return nil
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-n.doneCh:
			return ErrShutdown
		}
	}
}

// VisibleIndex is the visible index this node knows. Once Raft has moved to a
// newer term, what was known of the older one counts only as far as this
// node has applied (newTermLocked), even before a lease message of the new
// term arrives.
func (n *Node) VisibleIndex() uint64 {
	l := n.lease
	if term := n.raft.CurrentTerm(); term != l.termA.Load() {
		l.mu.Lock()
		l.newTermLocked(term)
		l.mu.Unlock()
	}
	return l.knownA.Load()
}

// LeaseHolders is, on the leader, how many nodes hold a lease.
func (n *Node) LeaseHolders() int {
	n.lease.mu.Lock()
	defer n.lease.mu.Unlock()
	return len(n.lease.holders)
}

// waitAck holds a write's acknowledgement until the visible index covers it
// (see the type comment). Only the leader acknowledges writes.
func (n *Node) waitAck(ctx context.Context, index uint64, term uint64) error {
	l := n.lease
	for {
		l.mu.Lock()
		if (!l.leading || l.term < term) && n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term {
			// Raft made us leader; the lease goroutine has not caught up.
			ch := l.changed
			l.mu.Unlock()
			t := time.NewTimer(l.dur / 8)
			select {
			case <-ch:
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			t.Stop()
			continue
		}
		if !l.leading || l.term != term {
			// Leadership moved on after the entry committed (it is applied
			// here). It is acknowledged once the next leader makes it
			// visible, or one leader span from now, when every lease granted
			// in its term or before has run out: holders stopped renewing
			// with this node when it stopped leading (LeaseServe checks),
			// and a later leader's holders start from a floor at or above
			// every committed entry.
			until := l.now() + l.leaderSpan()
			if l.leading {
				until = min(until, l.waitUntil) // leader again, of a newer term
			}
			l.mu.Unlock()
			for {
				if n.VisibleIndex() >= index {
					return nil
				}
				left := until - l.now()
				if left <= 0 {
					return nil
				}
				t := time.NewTimer(min(left, l.dur/8))
				select {
				case <-n.LeaseChanged():
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return fmt.Errorf("%w: %w", raft.ErrLeadershipLost, ctx.Err())
				case <-n.doneCh:
					t.Stop()
					return ErrShutdown
				}
				t.Stop()
			}
		}
		if l.visible >= index {
			l.mu.Unlock()
			return nil
		}
		ch := l.changed
		wait := time.Duration(0)
		if now := l.now(); now < l.waitUntil {
			wait = l.waitUntil - now
		}
		l.mu.Unlock()
		var t <-chan time.Time
		var tm *time.Timer
		if wait > 0 {
			tm = time.NewTimer(wait)
			t = tm.C
		}
		var err error
		select {
		case <-ch:
		case <-t:
			l.mu.Lock()
			l.recomputeLocked()
			l.mu.Unlock()
		case <-ctx.Done():
			err = ctx.Err()
		case <-n.doneCh:
			err = ErrShutdown
		}
		if tm != nil {
			tm.Stop()
		}
		if err != nil {
			return err
		}
	}
}

// trackedLogs is the log store as raft sees it: it records how far the log
// is appended and which keys the appended entries name, for the lease.
type trackedLogs struct {
	raft.LogStore
	l *leases
}

func (t *trackedLogs) StoreLog(e *raft.Log) error { return t.StoreLogs([]*raft.Log{e}) }

func (t *trackedLogs) StoreLogs(logs []*raft.Log) error {
	if err := t.LogStore.StoreLogs(logs); err != nil {
		return err
	}
	if len(logs) == 0 {
		return nil
	}
	type named struct {
		keys  []string
		other bool
	}
	names := make([]named, len(logs))
	for i, e := range logs {
		if e.Type == raft.LogCommand {
			names[i].keys, names[i].other = fsm.EntryKeys(e.Data)
		}
	}
	l := t.l
	last := logs[len(logs)-1]
	l.pmu.Lock()
	for i, e := range logs {
		if names[i].other {
			l.pendingOther = max(l.pendingOther, e.Index)
		}
		for _, k := range names[i].keys {
			l.pendingKeys[k] = max(l.pendingKeys[k], e.Index)
		}
	}
	if len(l.pendingKeys) > 4096 {
		applied := l.n.adapter.applied.Load()
		for k, i := range l.pendingKeys {
			if i <= applied {
				delete(l.pendingKeys, k)
			}
		}
	}
	l.pmu.Unlock()
	l.mu.Lock()
	l.appendedIndex, l.appendedTerm = last.Index, last.Term
	l.appendedA.Store(last.Index)
	close(l.appendCh)
	l.appendCh = make(chan struct{})
	if l.leading {
		l.recomputeLocked()
	}
	l.mu.Unlock()
	return nil
}

// DeleteRange is raft removing a conflicting suffix (or compacting): what
// was appended there is no longer known to match the leader's log.
func (t *trackedLogs) DeleteRange(lo, hi uint64) error {
	if err := t.LogStore.DeleteRange(lo, hi); err != nil {
		return err
	}
	l := t.l
	l.mu.Lock()
	if hi >= l.appendedIndex && lo <= l.appendedIndex {
		l.appendedIndex, l.appendedTerm = lo-1, 0
		l.appendedA.Store(lo - 1)
	}
	l.mu.Unlock()
	return nil
}
