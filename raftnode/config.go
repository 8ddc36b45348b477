package raftnode

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
)

// Production defaults, chosen to hold leadership on a loaded machine and to
// fail over within a second (docs/operations.md has the measurements).
//
// A follower starts an election after one to two heartbeat timeouts
// without contact (pre-vote first, so a follower that was only starved of
// CPU costs no term), and a crashed leader is replaced after 0.3-0.6 s plus
// two round trips: 0.5-1.0 s to the first acknowledged write, measured on a
// loaded machine, where 400 ms timeouts gave 0.7-1.3 s. The leader lease
// equals the heartbeat timeout rather than less, so that a leader whose own
// process stalls for a moment does not step down while its followers still
// follow it.
//
// TrailingLogs is sized against catching a follower up by snapshot: a
// snapshot of 1,000,000 keys is about 380 MiB; writing, sending (1 Gbit/s)
// and restoring it takes 8 s on an idle machine and about 55 s on a loaded
// one (a 100,000-key snapshot measured, times ten), and a 3-node cluster
// writes at most about 5,000 entries/s, so a follower needs up to ~275,000
// entries to still be in the leader's log when its snapshot is installed.
const (
	DefaultHeartbeatTimeout   = 300 * time.Millisecond
	DefaultElectionTimeout    = 300 * time.Millisecond
	DefaultLeaderLeaseTimeout = 300 * time.Millisecond
	DefaultCommitTimeout      = 20 * time.Millisecond
	DefaultApplyTimeout       = 5 * time.Second
	DefaultTransportTimeout   = 10 * time.Second
	DefaultTransportMaxPool   = 3
	DefaultSnapshotThreshold  = 32768
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 300000
	DefaultSnapshotRetain     = 2
	// DefaultLeaseDuration is how long a read lease lasts: the longest a
	// node that stops answering delays writes, and how long a new leader
	// waits before it acknowledges anything (lease.go).
	DefaultLeaseDuration = 500 * time.Millisecond
	// DefaultLeaseMaxDrift is the bound assumed on how fast or slow any
	// node's clock runs against real time (1%, far above the drift of a
	// crystal clock or NTP's slewing, 0.05%).
	DefaultLeaseMaxDrift = 0.01
)

// Peer is one voter of the bootstrap configuration.
type Peer struct {
	ID   string // node ID
	Addr string // Raft address (host:port)
}

// Config configures a Node. Zero durations and counts take the defaults above.
type Config struct {
	// NodeID is this node's stable identity in the cluster.
	NodeID string
	// RaftBindAddr is where Raft listens (host:port). Not used when
	// StreamLayer is set.
	RaftBindAddr string
	// RaftAdvertiseAddr is the address peers dial; default RaftBindAddr (or
	// StreamLayer.Addr()). It must not be an unspecified address.
	RaftAdvertiseAddr string
	// DataDir holds raft.db (log and stable store) and the snapshots.
	DataDir string
	// Peers is the bootstrap configuration, identical on every node and
	// including this one. It is used only when DataDir holds no Raft state
	// yet; leave it empty for a node that will be added with AddVoter.
	Peers []Peer
	// FSM is the state machine the log is applied to.
	FSM *fsm.FSM
	// Logger receives Raft's logs, named "raft" (unless its name already
	// ends in "raft"); nil discards them.
	Logger hclog.Logger
	// StreamLayer, if set, carries Raft's traffic instead of plain TCP (TLS,
	// or a fault-injecting network in tests). The node owns it: it is closed
	// at Shutdown, or when New fails.
	StreamLayer StreamLayer

	HeartbeatTimeout   time.Duration // follower starts an election after this without contact
	ElectionTimeout    time.Duration // candidate restarts an election after this
	LeaderLeaseTimeout time.Duration // leader steps down after this without a quorum
	CommitTimeout      time.Duration // longest delay before followers learn a commit
	ApplyTimeout       time.Duration // upper bound of Propose and Barrier when ctx has no earlier deadline
	TransportTimeout   time.Duration // I/O deadline of one Raft RPC
	TransportMaxPool   int           // pooled connections per peer

	SnapshotThreshold uint64        // entries since the last snapshot that trigger a new one
	SnapshotInterval  time.Duration // how often the threshold is checked
	TrailingLogs      uint64        // entries kept after a snapshot, for slow followers
	SnapshotRetain    int           // snapshots kept on disk

	// Read leases (lease.go). Every node of a cluster must run with the
	// same LeaseDuration and LeaseMaxDrift.
	LeaseDuration time.Duration
	LeaseMaxDrift float64
	// LeaseClock is the monotonic clock leases are measured on (tests run
	// it fast or slow); nil is the process's monotonic clock.
	LeaseClock func() time.Duration

	// Restore, if set, starts a new cluster from a saved snapshot
	// (OpenBackup) instead of an empty state: only on an empty data
	// directory (ErrRestoreNotEmpty otherwise) and with Peers, the new
	// cluster's voters, identical on every restored node.
	Restore *Backup
}

// withDefaults returns a validated copy of cfg with defaults filled in.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.NodeID == "" {
		return cfg, errors.New("raftnode: NodeID is required")
	}
	if cfg.DataDir == "" {
		return cfg, errors.New("raftnode: DataDir is required")
	}
	if cfg.FSM == nil {
		return cfg, errors.New("raftnode: FSM is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.StreamLayer != nil {
		if cfg.RaftAdvertiseAddr == "" {
			cfg.RaftAdvertiseAddr = cfg.StreamLayer.Addr().String()
		}
	} else {
		if cfg.RaftBindAddr == "" {
			return cfg, errors.New("raftnode: RaftBindAddr is required")
		}
		if cfg.RaftAdvertiseAddr == "" {
			cfg.RaftAdvertiseAddr = cfg.RaftBindAddr
		}
	}
	host, _, err := net.SplitHostPort(cfg.RaftAdvertiseAddr)
	if err != nil {
		return cfg, fmt.Errorf("raftnode: RaftAdvertiseAddr: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return cfg, fmt.Errorf("raftnode: RaftAdvertiseAddr %q is not an address peers can dial", cfg.RaftAdvertiseAddr)
	}

	// Election and lease default relative to the heartbeat, so that setting
	// only HeartbeatTimeout gives a valid configuration.
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"HeartbeatTimeout", &cfg.HeartbeatTimeout, DefaultHeartbeatTimeout},
		{"ElectionTimeout", &cfg.ElectionTimeout, max(DefaultElectionTimeout, cfg.HeartbeatTimeout)},
		{"LeaderLeaseTimeout", &cfg.LeaderLeaseTimeout, min(DefaultLeaderLeaseTimeout, cfg.HeartbeatTimeout)},
		{"CommitTimeout", &cfg.CommitTimeout, DefaultCommitTimeout},
		{"ApplyTimeout", &cfg.ApplyTimeout, DefaultApplyTimeout},
		{"TransportTimeout", &cfg.TransportTimeout, DefaultTransportTimeout},
		{"SnapshotInterval", &cfg.SnapshotInterval, DefaultSnapshotInterval},
		{"LeaseDuration", &cfg.LeaseDuration, DefaultLeaseDuration},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return cfg, fmt.Errorf("raftnode: %s is negative", d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.LeaseMaxDrift < 0 || cfg.LeaseMaxDrift >= 0.5 {
		return cfg, fmt.Errorf("raftnode: LeaseMaxDrift %v is outside [0, 0.5)", cfg.LeaseMaxDrift)
	}
	if cfg.LeaseMaxDrift == 0 {
		cfg.LeaseMaxDrift = DefaultLeaseMaxDrift
	}
	if cfg.LeaseClock == nil {
		start := time.Now()
		cfg.LeaseClock = func() time.Duration { return time.Since(start) }
	}
	if cfg.TransportMaxPool < 0 || cfg.SnapshotRetain < 0 {
		return cfg, errors.New("raftnode: TransportMaxPool and SnapshotRetain must not be negative")
	}
	if cfg.TransportMaxPool == 0 {
		cfg.TransportMaxPool = DefaultTransportMaxPool
	}
	if cfg.SnapshotRetain == 0 {
		cfg.SnapshotRetain = DefaultSnapshotRetain
	}
	if cfg.SnapshotThreshold == 0 {
		cfg.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if cfg.TrailingLogs == 0 {
		cfg.TrailingLogs = DefaultTrailingLogs
	}

	if cfg.Restore != nil && len(cfg.Peers) == 0 {
		return cfg, errors.New("raftnode: restoring a snapshot needs the bootstrap peers (a new cluster)")
	}
	if len(cfg.Peers) > 0 {
		ids, addrs := map[string]bool{}, map[string]bool{}
		self := false
		for _, p := range cfg.Peers {
			if p.ID == "" || p.Addr == "" {
				return cfg, errors.New("raftnode: every peer needs an ID and an address")
			}
			if ids[p.ID] || addrs[p.Addr] {
				return cfg, fmt.Errorf("raftnode: peer %s (%s) is listed twice", p.ID, p.Addr)
			}
			ids[p.ID], addrs[p.Addr] = true, true
			if p.ID == cfg.NodeID {
				if p.Addr != cfg.RaftAdvertiseAddr {
					return cfg, fmt.Errorf("raftnode: peer list gives %s address %s, but it advertises %s",
						p.ID, p.Addr, cfg.RaftAdvertiseAddr)
				}
				self = true
			}
		}
		if !self {
			return cfg, fmt.Errorf("raftnode: peer list does not include this node (%s)", cfg.NodeID)
		}
	}
	return cfg, nil
}
