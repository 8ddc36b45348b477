// Package raftnode runs one raftkms node's Raft: transport, BoltDB log and
// stable store, snapshot store, bootstrap, membership, proposals, leadership
// notifications and the read-index protocol for linearizable reads.
//
// It is the only package that imports hashicorp/raft and raft-boltdb; the
// rest of raftkms sees Node's methods and this package's errors.
package raftnode

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// logCacheSize is how many recent entries are kept in memory in front of
// BoltDB (followers catching up and WaitApplied read them).
const logCacheSize = 512

// Node is one member of a raftkms cluster.
type Node struct {
	cfg     Config
	logger  hclog.Logger
	raft    *raft.Raft
	adapter *fsmAdapter
	store   *raftboltdb.BoltStore
	logs    raft.LogStore
	snaps   raft.SnapshotStore
	trans   *raft.NetworkTransport
	// started is raft once NewRaft returned, for goroutines raft started
	// before (its transport dials).
	started atomic.Pointer[raft.Raft]

	verify verifier
	lease  *leases
	// schemaMembers caches the membership for ProposeSchema (schema.go).
	schemaMembers schemaMembers
	leaders       leadership

	readyTerm atomic.Uint64 // term in which a Barrier completed as leader
	closed    atomic.Bool
	bg        sync.WaitGroup // background goroutines, waited for by Shutdown
	closeOnce sync.Once
	closeErr  error
	doneCh    chan struct{} // closed by Shutdown
}

// Member is one server of the Raft configuration.
type Member struct {
	ID    string
	Addr  string // Raft address
	Voter bool
}

// New opens (or creates) the node's state in cfg.DataDir and starts Raft. On
// a data directory without Raft state and with cfg.Peers set, it bootstraps
// the cluster; a restarted node recovers from its snapshot and log.
func New(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		logger:  raftLogger(cfg.Logger),
		adapter: &fsmAdapter{f: cfg.FSM, restored: cfg.Restore},
		doneCh:  make(chan struct{}),
	}
	n.adapter.logger = n.logger
	ok := false
	defer func() {
		if !ok {
			n.closeResources()
			if n.trans == nil && cfg.StreamLayer != nil {
				cfg.StreamLayer.Close() // the transport would have closed it
			}
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("raftnode: data dir: %w", err)
	}
	dbPath := filepath.Join(cfg.DataDir, "raft.db")
	n.store, err = raftboltdb.New(raftboltdb.Options{Path: dbPath})
	if err != nil {
		return nil, fmt.Errorf("raftnode: open raft.db: %w", err)
	}
	// raft-boltdb creates it 0600; one made by hand or copied in may not be.
	if err := chmodIfNot(dbPath, privateFileMode); err != nil {
		return nil, fmt.Errorf("raftnode: raft.db mode: %w", err)
	}
	cache, err := raft.NewLogCache(logCacheSize, n.store)
	if err != nil {
		return nil, fmt.Errorf("raftnode: log cache: %w", err)
	}
	n.lease = newLeases(n)
	n.logs = &trackedLogs{LogStore: cache, l: n.lease}
	if last, err := cache.LastIndex(); err == nil && last > 0 {
		// Entries already in the log count as pending until applied.
		var e raft.Log
		if cache.GetLog(last, &e) == nil {
			n.lease.appendedIndex, n.lease.appendedTerm = last, e.Term
			n.lease.appendedA.Store(last)
		}
		n.lease.pendingOther = last
	}
	snaps, err := newPrivateSnapshots(cfg.DataDir, cfg.SnapshotRetain, n.logger.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("raftnode: snapshot store: %w", err)
	}
	n.snaps = snaps
	if n.trans, err = newTransport(cfg, n.logger.Named("net")); err != nil {
		return nil, err
	}
	if ml, ok := cfg.StreamLayer.(interface {
		setMembers(func(addr string) string)
	}); ok {
		ml.setMembers(n.memberAt)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = n.logger
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NoLegacyTelemetry = true
	// Pre-vote (on by default in hashicorp/raft): a follower whose timer
	// fired only because its process was starved asks first, and the peers
	// that still hear the leader refuse, so no term is lost.
	rc.PreVoteDisabled = false
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}

	existing, err := raft.HasExistingState(n.logs, n.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("raftnode: inspect state: %w", err)
	}
	if cfg.Restore != nil {
		if existing {
			return nil, ErrRestoreNotEmpty
		}
		if err := cfg.Restore.restoreInto(cfg, n.store, snaps, n.trans); err != nil {
			return nil, err
		}
	} else if !existing && len(cfg.Peers) > 0 {
		var c raft.Configuration
		for _, p := range cfg.Peers {
			c.Servers = append(c.Servers, raft.Server{
				Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
		}
		if err := raft.BootstrapCluster(rc, n.logs, n.store, snaps, n.trans, c); err != nil {
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}

	n.raft, err = raft.NewRaft(rc, n.adapter, n.logs, n.store, snaps, n.trans)
	if err != nil {
		return nil, fmt.Errorf("raftnode: start raft: %w", err)
	}
	n.started.Store(n.raft)
	n.verify.n = n
	n.leaders.start(n.raft.LeaderCh(), n.doneCh, n.onLeadershipGained)
	leadCh, _ := n.SubscribeLeadership()
	n.bg.Add(1)
	go n.lease.run(leadCh)
	n.bg.Add(1)
	go n.snapshotOnStart()
	ok = true
	n.logger.Info("node started", "id", cfg.NodeID, "addr", cfg.RaftAdvertiseAddr, "bootstrapped", !existing && len(cfg.Peers) > 0,
		"restored", cfg.Restore != nil)
	return n, nil
}

// memberAt is the ID of the member of the latest Raft configuration (the
// bootstrap peers until Raft runs) at a Raft address, or "". The TLS layer
// requires a dialled peer's certificate to be that member's.
func (n *Node) memberAt(addr string) string {
	if r := n.started.Load(); r != nil {
		f := r.GetConfiguration()
		if f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if string(s.Address) == addr {
					return string(s.ID)
				}
			}
		}
		return ""
	}
	for _, p := range n.cfg.Peers {
		if p.Addr == addr {
			return p.ID
		}
	}
	return ""
}

// raftLogger names the logger "raft" unless the caller already did.
func raftLogger(l hclog.Logger) hclog.Logger {
	if name := l.Name(); name == "raft" || strings.HasSuffix(name, ".raft") {
		return l
	}
	return l.Named("raft")
}

func newTransport(cfg Config, logger hclog.Logger) (*raft.NetworkTransport, error) {
	tc := &raft.NetworkTransportConfig{
		Logger:  logger,
		MaxPool: cfg.TransportMaxPool,
		Timeout: cfg.TransportTimeout,
		// One RPC in flight per follower turns pipelined replication off.
		// raft v1.7.3's pipeline can deadlock when a follower answers
		// Success=false while a send is queued (the sender parks on the
		// in-progress channel forever, so replication to that follower and
		// Shutdown hang); our tests hit it on leadership changes. On a LAN
		// pipelining buys little next to batching (MaxAppendEntries).
		MaxRPCsInFlight: 1,
	}
	if cfg.StreamLayer != nil {
		tc.Stream = streamAdapter{cfg.StreamLayer}
		return raft.NewNetworkTransportWithConfig(tc), nil
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.RaftAdvertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("raftnode: RaftAdvertiseAddr: %w", err)
	}
	t, err := raft.NewTCPTransportWithConfig(cfg.RaftBindAddr, adv, tc)
	if err != nil {
		return nil, fmt.Errorf("raftnode: listen on %s: %w", cfg.RaftBindAddr, err)
	}
	return t, nil
}

// Shutdown stops Raft and closes the transport and the stores. It does not
// hand leadership over first (use TransferLeadership for that). It is safe to
// call more than once.
func (n *Node) Shutdown() error {
	n.closeOnce.Do(func() {
		n.closed.Store(true)
		if n.raft != nil {
			if err := n.raft.Shutdown().Error(); err != nil && !errors.Is(err, raft.ErrRaftShutdown) {
				n.closeErr = err
			}
		}
		close(n.doneCh)
		n.leaders.wait()
		n.bg.Wait()
		if err := n.closeResources(); err != nil && n.closeErr == nil {
			n.closeErr = err
		}
	})
	return n.closeErr
}

func (n *Node) closeResources() error {
	var errs []error
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// ID is this node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Addr is the Raft address this node advertises.
func (n *Node) Addr() string { return n.cfg.RaftAdvertiseAddr }

// IsLeader reports whether this node believes it is the leader. For a
// decision that must be right, use VerifyLeader or ReadIndex.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the ID and Raft address of the leader this node knows of,
// or empty strings.
func (n *Node) Leader() (id, raftAddr string) {
	addr, sid := n.raft.LeaderWithID()
	return string(sid), string(addr)
}

// State is "Leader", "Follower", "Candidate" or "Shutdown".
func (n *Node) State() string { return n.raft.State().String() }

// Term is the current Raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// AppliedIndex is the last index Raft handed to the state machine (it may
// still be queued; WaitApplied waits for the state machine itself).
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// CommitIndex is the last index this node knows to be committed.
func (n *Node) CommitIndex() uint64 { return n.raft.CommitIndex() }

// LastIndex is the last index in the log or the last snapshot.
func (n *Node) LastIndex() uint64 { return n.raft.LastIndex() }

// Stats are Raft's statistics (see raft.Raft.Stats), plus "fsm_restores",
// the snapshots restored into the state machine since the node started.
func (n *Node) Stats() map[string]string {
	s := n.raft.Stats()
	s["fsm_restores"] = strconv.FormatUint(n.adapter.restores.Load(), 10)
	return s
}

// Restores counts snapshots restored into the state machine since the node
// started: at start-up from its own snapshot, or installed by the leader.
func (n *Node) Restores() uint64 { return n.adapter.restores.Load() }

// LastSnapshotIndex is the index of the newest snapshot this node holds.
func (n *Node) LastSnapshotIndex() uint64 {
	v, _ := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	return v
}

// Members lists the servers of the latest Raft configuration.
func (n *Node) Members() ([]Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.readErr(err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}
