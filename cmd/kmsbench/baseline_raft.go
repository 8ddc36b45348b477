package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"github.com/raftkms/raftkms/raftnode"
)

// The Raft baseline is the one place outside raftnode that imports
// hashicorp/raft: it measures bare Raft, so it must not go through raftnode.
// It copies raftnode's settings (timeouts, BoltDB with fsync on, the log
// cache, one RPC in flight per follower, snapshot thresholds) so that the
// only differences left are what raftkms adds on top: gRPC, forwarding from
// followers, sealing new material and the state machine.

// raftLogCache matches raftnode's in-memory log cache.
const raftLogCache = 512

// nullFSM is the baseline's state machine: it counts entries and keeps
// nothing, so Apply and snapshots cost next to nothing.
type nullFSM struct{ n atomic.Uint64 }

func (f *nullFSM) Apply(*raft.Log) any                    { f.n.Add(1); return nil }
func (f *nullFSM) Snapshot() (raft.FSMSnapshot, error)    { return nullSnapshot{}, nil }
func (f *nullFSM) Restore(rc io.ReadCloser) error         { _, err := io.Copy(io.Discard, rc); return err }
func (nullSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nullSnapshot) Release()                             {}

type nullSnapshot struct{}

type bareRaftNode struct {
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	trans *raft.NetworkTransport
}

// raftBaseline is a bare Raft cluster in this process.
type raftBaseline struct {
	dir    string
	nodes  []*bareRaftNode
	entry  []byte
	leader atomic.Pointer[raft.Raft]
}

// startRaftBaseline starts n bare Raft nodes on 127.0.0.1 and waits for a
// leader. entry is the log entry every operation appends.
func startRaftBaseline(ctx context.Context, o *options, n int, entry []byte) (*raftBaseline, error) {
	dir, err := os.MkdirTemp(o.dataDir, "kmsbench-raft-")
	if err != nil {
		return nil, err
	}
	b := &raftBaseline{dir: dir, entry: entry}
	logger := benchLogger(o)
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	var servers []raft.Server
	var listeners []net.Listener
	for i := 0; i < n; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.stop()
			return nil, err
		}
		listeners = append(listeners, lis)
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprintf("raft%d", i+1)),
			Address: raft.ServerAddress(lis.Addr().String())})
	}
	for _, l := range listeners {
		l.Close() // reserve-then-release: the transport binds the same port
	}
	for i := 0; i < n; i++ {
		node, err := startBareRaftNode(filepath.Join(dir, string(servers[i].ID)), servers[i], servers, logger)
		if err != nil {
			b.stop()
			return nil, err
		}
		b.nodes = append(b.nodes, node)
	}
	deadline := time.Now().Add(30 * time.Second)
	for b.findLeader() == nil {
		if time.Now().After(deadline) {
			b.stop()
			return nil, errors.New("kmsbench: the Raft baseline elected no leader")
		}
		select {
		case <-ctx.Done():
			b.stop()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return b, nil
}

func startBareRaftNode(dir string, self raft.Server, peers []raft.Server, logger hclog.Logger) (*bareRaftNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	node := &bareRaftNode{}
	var err error
	// raft-boltdb with its defaults: NoSync off, so every batch is fsynced.
	if node.store, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")}); err != nil {
		return nil, err
	}
	logs, err := raft.NewLogCache(raftLogCache, node.store)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, raftnode.DefaultSnapshotRetain, logger)
	if err != nil {
		return nil, err
	}
	adv, err := net.ResolveTCPAddr("tcp", string(self.Address))
	if err != nil {
		return nil, err
	}
	node.trans, err = raft.NewTCPTransportWithConfig(string(self.Address), adv, &raft.NetworkTransportConfig{
		Logger: logger, MaxPool: raftnode.DefaultTransportMaxPool, Timeout: raftnode.DefaultTransportTimeout,
		MaxRPCsInFlight: 1, // as raftnode: no pipelining
	})
	if err != nil {
		node.store.Close()
		return nil, err
	}
	rc := raft.DefaultConfig()
	rc.LocalID = self.ID
	rc.Logger = logger
	rc.HeartbeatTimeout = raftnode.DefaultHeartbeatTimeout
	rc.ElectionTimeout = raftnode.DefaultElectionTimeout
	rc.LeaderLeaseTimeout = raftnode.DefaultLeaderLeaseTimeout
	rc.CommitTimeout = raftnode.DefaultCommitTimeout
	rc.SnapshotThreshold = raftnode.DefaultSnapshotThreshold
	rc.SnapshotInterval = raftnode.DefaultSnapshotInterval
	rc.TrailingLogs = raftnode.DefaultTrailingLogs
	rc.NoLegacyTelemetry = true
	f := &nullFSM{}
	if err := raft.BootstrapCluster(rc, logs, node.store, snaps, node.trans, raft.Configuration{Servers: peers}); err != nil {
		node.close()
		return nil, err
	}
	if node.raft, err = raft.NewRaft(rc, f, logs, node.store, snaps, node.trans); err != nil {
		node.close()
		return nil, err
	}
	return node, nil
}

func (n *bareRaftNode) close() {
	if n.raft != nil {
		n.raft.Shutdown().Error()
	}
	if n.trans != nil {
		n.trans.Close()
	}
	if n.store != nil {
		n.store.Close()
	}
}

func (b *raftBaseline) findLeader() *raft.Raft {
	for _, n := range b.nodes {
		if n.raft.State() == raft.Leader {
			b.leader.Store(n.raft)
			return n.raft
		}
	}
	return nil
}

func (b *raftBaseline) do(ctx context.Context, w *worker) (opKind, error) {
	r := b.leader.Load()
	d := time.Second
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	err := r.Apply(b.entry, d).Error()
	if errors.Is(err, raft.ErrNotLeader) {
		b.findLeader()
	}
	return opRaftApply, err
}

func (b *raftBaseline) stop() {
	for _, n := range b.nodes {
		n.close()
	}
	os.RemoveAll(b.dir)
}

// entryFor builds a log entry as raftkms proposes it for a lifecycle write
// (envelope with time, request ID and principal; a UUID; material sealed
// under a root key), so that the Raft baseline appends entries of the same
// size.
func entryFor(kind opKind) ([]byte, error) {
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	const keyID = "1234abcd-12ab-34cd-56ef-1234567890ab"
	sealed, err := root.Seal(keyID, 2, make([]byte, 32))
	if err != nil {
		return nil, err
	}
	var rid [16]byte
	rand.Read(rid[:])
	env := &eventsv1.Envelope{TimeUnixNano: time.Now().UnixNano(), RequestId: hex.EncodeToString(rid[:]), Principal: "anonymous"}
	switch kind {
	case opCreateKey:
		env.Event = &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{KeyId: keyID, Description: "kmsbench",
			Origin: eventsv1.Origin_ORIGIN_GENERATED, SealedMaterial: sealed}}
	case opRotate:
		env.Event = &eventsv1.Envelope_RotateKey{RotateKey: &eventsv1.RotateKey{KeyId: keyID,
			RotationType: eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND, ExpectedCurrentVersion: 1, SealedMaterial: sealed,
			OnDemandLimit: math.MaxUint32}} // as a spawned cluster proposes it
	default:
		return nil, fmt.Errorf("kmsbench: %s is not a lifecycle write", kind)
	}
	return fsm.EncodeEntry(env)
}
