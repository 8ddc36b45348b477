package metrics

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"github.com/raftkms/raftkms/rotation"
)

// RaftSource is the node's Raft view (*raftnode.Node).
type RaftSource interface {
	Stats() map[string]string  // hashicorp/raft's Stats
	Leader() (id, addr string) // current leader, "" when none is known
	VerifyRounds() uint64      // leadership-verification rounds run as leader
}

// ReadSource counts how a node served its reads (*rpc.Server) and what its
// read leases stand at.
type ReadSource interface {
	// ReadCounts: reads served under a lease, after a read-index round, from
	// local state (stale), and answers held until visible.
	ReadCounts() (lease, readIndex, stale, held uint64)
	LeaseHolders() int    // on the leader, nodes holding a read lease
	VisibleIndex() uint64 // the visible index this node knows
}

// KeySource is the replicated state (*fsm.FSM).
type KeySource interface {
	ForEachKey(fn func(*fsm.Key) bool)
}

// SchedulerSource is the rotation scheduler (*rotation.Scheduler).
type SchedulerSource interface {
	Stats() rotation.Stats
	Active() bool
}

// NodeSources are what the node collector reads at scrape time. Any may be
// nil (the family is then omitted).
type NodeSources struct {
	Raft      RaftSource
	Keys      KeySource
	Scheduler SchedulerSource
	Reads     ReadSource
	// SnapshotDir is the Raft snapshot store's directory (DataDir/snapshots).
	SnapshotDir string
	// Now is the clock overdue ages are measured on (the scheduler's);
	// default time.Now.
	Now func() time.Time
}

// nodeCollector reads the node's state when scraped: nothing is kept
// between scrapes, so gauges are never stale.
type nodeCollector struct {
	src NodeSources

	raftState, raftTerm, raftCommit, raftApplied, raftLast, raftSnapIdx, raftContact, raftPending, raftLeader *prometheus.Desc
	verifyRounds                                                                                              *prometheus.Desc

	keys *prometheus.Desc

	schedActive, schedDue, schedOverdue, schedOldest, schedInFlight *prometheus.Desc
	schedProposed, schedApplied, schedRejected, schedErrors         *prometheus.Desc

	snapBytes *prometheus.Desc

	reads, readsHeld, leaseHolders, visible *prometheus.Desc
}

// NewNodeCollector makes the collector of a node's Raft, key and scheduler
// state.
func NewNodeCollector(src NodeSources) prometheus.Collector {
	if src.Now == nil {
		src.Now = time.Now
	}
	d := func(sub, name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, sub, name), help, labels, nil)
	}
	return &nodeCollector{
		src:          src,
		raftState:    d("raft", "state", "1 for the Raft state this node is in (Follower, Candidate, Leader, Shutdown), 0 for the others.", "state"),
		raftTerm:     d("raft", "term", "Current Raft term."),
		raftCommit:   d("raft", "commit_index", "Highest log index known to be committed."),
		raftApplied:  d("raft", "applied_index", "Highest log index applied to the state machine."),
		raftLast:     d("raft", "last_log_index", "Last index in the log or the last snapshot."),
		raftSnapIdx:  d("raft", "last_snapshot_index", "Log index of the newest snapshot."),
		raftContact:  d("raft", "last_contact_seconds", "Time since this follower last heard from the leader (0 on the leader; absent before any contact)."),
		raftPending:  d("raft", "fsm_pending", "Committed entries waiting to be applied."),
		raftLeader:   d("raft", "has_leader", "1 when this node knows a leader, 0 otherwise."),
		verifyRounds: d("raft", "verify_leader_rounds_total", "Rounds of heartbeats this node ran as leader to confirm its leadership for reads."),
		keys:         d("", "keys", "Keys in the replicated state by state and origin (deleted keys included).", "state", "origin"),
		schedActive:  d("scheduler", "active", "1 while this node's rotation scheduler acts as leader."),
		schedDue:     d("scheduler", "due", "Scheduled changes (rotations, deletions, expiries) that are due and not yet done."),
		schedOverdue: d("scheduler", "overdue", "Of the due changes, those due for longer than a minute."),
		schedOldest:  d("scheduler", "oldest_overdue_rotation_seconds", "How long the oldest due automatic rotation has waited (0 when none is due)."),
		schedInFlight: d("scheduler", "proposals_in_flight",
			"Proposals the scheduler has outstanding."),
		schedProposed: d("scheduler", "proposed_total", "Events the scheduler proposed."),
		schedApplied:  d("scheduler", "applied_total", "Scheduler events that changed the state."),
		schedRejected: d("scheduler", "rejected_total", "Scheduler events rejected deterministically (duplicates included)."),
		schedErrors:   d("scheduler", "propose_errors_total", "Scheduler proposals that failed, by kind (ambiguous, not_applied, material).", "kind"),
		snapBytes:     d("raft", "snapshot_size_bytes", "Size of the newest snapshot on disk."),
		reads:         d("reads", "total", "Linearizable-path reads by how they were served: lease, read_index or stale.", "mode"),
		readsHeld:     d("reads", "held_total", "Read answers held until the last change they saw was visible on every lease holder."),
		leaseHolders:  d("lease", "holders", "On the leader, nodes holding a read lease."),
		visible:       d("lease", "visible_index", "Highest log index this node knows every lease holder has appended."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.raftState, c.raftTerm, c.raftCommit, c.raftApplied, c.raftLast, c.raftSnapIdx,
		c.raftContact, c.raftPending, c.raftLeader, c.verifyRounds, c.keys, c.schedActive, c.schedDue,
		c.schedOverdue, c.schedOldest, c.schedInFlight, c.schedProposed, c.schedApplied, c.schedRejected, c.schedErrors,
		c.snapBytes, c.reads, c.readsHeld, c.leaseHolders, c.visible} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Raft != nil {
		c.collectRaft(ch)
	}
	if c.src.Keys != nil {
		c.collectKeys(ch)
	}
	if c.src.Scheduler != nil {
		c.collectScheduler(ch)
	}
	if r := c.src.Reads; r != nil {
		lease, idx, stale, held := r.ReadCounts()
		ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(lease), "lease")
		ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(idx), "read_index")
		ch <- prometheus.MustNewConstMetric(c.reads, prometheus.CounterValue, float64(stale), "stale")
		ch <- prometheus.MustNewConstMetric(c.readsHeld, prometheus.CounterValue, float64(held))
		ch <- prometheus.MustNewConstMetric(c.leaseHolders, prometheus.GaugeValue, float64(r.LeaseHolders()))
		ch <- prometheus.MustNewConstMetric(c.visible, prometheus.GaugeValue, float64(r.VisibleIndex()))
	}
	if c.src.SnapshotDir != "" {
		if size, ok := newestSnapshotSize(c.src.SnapshotDir); ok {
			ch <- prometheus.MustNewConstMetric(c.snapBytes, prometheus.GaugeValue, float64(size))
		}
	}
}

var raftStates = []string{"Follower", "Candidate", "Leader", "Shutdown"}

func (c *nodeCollector) collectRaft(ch chan<- prometheus.Metric) {
	st := c.src.Raft.Stats()
	gauge := func(d *prometheus.Desc, key string) {
		if v, err := strconv.ParseUint(st[key], 10, 64); err == nil {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
		}
	}
	for _, s := range raftStates {
		v := 0.0
		if st["state"] == s {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.raftState, prometheus.GaugeValue, v, s)
	}
	gauge(c.raftTerm, "term")
	gauge(c.raftCommit, "commit_index")
	gauge(c.raftApplied, "applied_index")
	gauge(c.raftLast, "last_log_index")
	gauge(c.raftSnapIdx, "last_snapshot_index")
	gauge(c.raftPending, "fsm_pending")
	if lc := st["last_contact"]; lc != "" && lc != "never" {
		if d, err := time.ParseDuration(lc); err == nil {
			ch <- prometheus.MustNewConstMetric(c.raftContact, prometheus.GaugeValue, d.Seconds())
		}
	}
	has := 0.0
	if id, _ := c.src.Raft.Leader(); id != "" {
		has = 1
	}
	ch <- prometheus.MustNewConstMetric(c.raftLeader, prometheus.GaugeValue, has)
	ch <- prometheus.MustNewConstMetric(c.verifyRounds, prometheus.CounterValue, float64(c.src.Raft.VerifyRounds()))
}

// collectKeys counts keys by state and origin: one pass over the key list
// under no lock of ours (ForEachKey copies the list), a few map increments
// per key.
func (c *nodeCollector) collectKeys(ch chan<- prometheus.Metric) {
	type so struct{ state, origin string }
	counts := map[so]int{}
	// Every state and origin is exported, at zero when no key has it.
	for s := range eventsv1.KeyState_name {
		if s == 0 {
			continue
		}
		for o := range eventsv1.Origin_name {
			if o != 0 {
				counts[so{fsm.StateName(eventsv1.KeyState(s)), originName(eventsv1.Origin(o))}] = 0
			}
		}
	}
	c.src.Keys.ForEachKey(func(k *fsm.Key) bool {
		counts[so{fsm.StateName(k.State), originName(k.Origin)}]++
		return true
	})
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(n), k.state, k.origin)
	}
}

// originName is the AWS name of an origin: AWS_KMS, EXTERNAL, SERVICE.
func originName(o eventsv1.Origin) string {
	switch o {
	case eventsv1.Origin_ORIGIN_GENERATED:
		return "AWS_KMS"
	case eventsv1.Origin_ORIGIN_EXTERNAL:
		return "EXTERNAL"
	case eventsv1.Origin_ORIGIN_SERVICE:
		return "SERVICE"
	}
	return "UNSPECIFIED"
}

func (c *nodeCollector) collectScheduler(ch chan<- prometheus.Metric) {
	s := c.src.Scheduler.Stats()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	n := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	active := 0.0
	if c.src.Scheduler.Active() {
		active = 1
	}
	g(c.schedActive, active)
	g(c.schedDue, float64(s.Backlog.Due))
	g(c.schedOverdue, float64(s.Backlog.Overdue))
	oldest := 0.0
	if s.Backlog.OldestRotationDue != 0 {
		oldest = max(0, float64(c.src.Now().UnixNano()-s.Backlog.OldestRotationDue)/1e9)
	}
	g(c.schedOldest, oldest)
	g(c.schedInFlight, float64(s.InFlight))
	n(c.schedProposed, s.Proposed)
	n(c.schedApplied, s.Applied)
	var rejected uint64
	for _, v := range s.Rejected {
		rejected += v
	}
	n(c.schedRejected, rejected)
	n(c.schedErrors, s.Ambiguous, "ambiguous")
	n(c.schedErrors, s.NotApplied, "not_applied")
	n(c.schedErrors, s.MaterialErrors, "material")
}

// newestSnapshotSize is the size of the newest snapshot in a hashicorp/raft
// file snapshot store: directories named TERM-INDEX-MILLIS, each with its
// state.bin; the newest has the highest term, then index.
func newestSnapshotSize(dir string) (int64, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	type snap struct {
		name        string
		term, index uint64
	}
	var snaps []snap
	for _, e := range entries {
		parts := strings.Split(e.Name(), "-")
		if !e.IsDir() || len(parts) != 3 || strings.HasSuffix(e.Name(), ".tmp") {
			continue // a .tmp directory is a snapshot still being written
		}
		term, err1 := strconv.ParseUint(parts[0], 10, 64)
		index, err2 := strconv.ParseUint(parts[1], 10, 64)
		if err1 == nil && err2 == nil {
			snaps = append(snaps, snap{e.Name(), term, index})
		}
	}
	sort.Slice(snaps, func(i, j int) bool {
		if snaps[i].term != snaps[j].term {
			return snaps[i].term < snaps[j].term
		}
		return snaps[i].index < snaps[j].index
	})
	for i := len(snaps) - 1; i >= 0; i-- {
		if fi, err := os.Stat(filepath.Join(dir, snaps[i].name, "state.bin")); err == nil {
			return fi.Size(), true
		}
	}
	return 0, false
}
