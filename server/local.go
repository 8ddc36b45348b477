package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/rpc"
)

// LocalConfig describes a whole cluster run in one process on 127.0.0.1
// (kmsd dev, kmsbench --spawn, end-to-end tests).
type LocalConfig struct {
	Nodes      int                // number of nodes; default 3
	Dir        string             // node i keeps its data in Dir/kms<i>
	GRPCPort   int                // node i listens on GRPCPort+i-1; 0 picks free ports
	RaftPort   int                // node i's Raft port is RaftPort+i-1; 0 picks free ports
	RootKey    *keycrypto.RootKey // shared root key
	Limits     rpc.Limits         // cluster bounds
	StaleReads bool               // serve reads without read-index rounds
	ReadMode   string             // lease (default), read-index or stale
	Logger     hclog.Logger       // nil: discard
	TuneRaft   func(*raftnode.Config)
	// AWSPort, if not 0, serves the AWS KMS protocol on every node: node i
	// on AWSPort+i-1 (-1 picks free ports).
	AWSPort int
	// ARN is the cluster's partition, region and account.
	ARN rpc.ARN
	// MaxClockSkew is every node's Config.MaxClockSkew.
	MaxClockSkew time.Duration
	// MetricsPort, if not 0, serves node i's metrics on
	// 127.0.0.1:MetricsPort+i-1 (-1 picks free ports; Server(i).MetricsAddr
	// says which), with Go's profiles when PProf is set.
	MetricsPort int
	PProf       bool
	// Audit, if set, receives every node's audit lines (each names its node).
	Audit io.Writer
	// Restore, if set, starts the cluster from a saved snapshot: every
	// node's first start restores it (empty data dirs only).
	Restore    *raftnode.Backup
	AuditQueue int // as Config.AuditQueue
}

// Local is a running in-process cluster.
type Local struct {
	cfg   LocalConfig
	peers []raftnode.Peer
	grpc  []string
	aws   []string // AWS-protocol addresses, when on
	// awsLis are listeners made for AWSPort -1, handed to each node's first
	// start (so no other process can take the port in between).
	awsLis []net.Listener

	mu      sync.Mutex
	servers []*Server // nil where a node is stopped
	started []bool    // node i has been started once (a restore is done by then)
}

// StartLocal starts every node of an in-process cluster.
func StartLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Dir == "" || cfg.RootKey == nil {
		return nil, errors.New("server: a local cluster needs a directory and a root key")
	}
	l := &Local{cfg: cfg, servers: make([]*Server, cfg.Nodes), started: make([]bool, cfg.Nodes)}
	for i := 0; i < cfg.Nodes; i++ {
		raftAddr, err := localAddr(cfg.RaftPort, i)
		if err != nil {
			return nil, err
		}
		grpcAddr, err := localAddr(cfg.GRPCPort, i)
		if err != nil {
			return nil, err
		}
		l.peers = append(l.peers, raftnode.Peer{ID: fmt.Sprintf("kms%d", i+1), Addr: raftAddr})
		l.grpc = append(l.grpc, grpcAddr)
		switch {
		case cfg.AWSPort < 0:
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			l.awsLis = append(l.awsLis, lis)
			l.aws = append(l.aws, lis.Addr().String())
		case cfg.AWSPort > 0:
			awsAddr, err := localAddr(cfg.AWSPort, i)
			if err != nil {
				return nil, err
			}
			l.aws = append(l.aws, awsAddr)
		}
	}
	for i := range l.peers {
		if err := l.Start(i); err != nil {
			l.Stop()
			return nil, err
		}
	}
	return l, nil
}

// localAddr is 127.0.0.1:base+i, or a free port when base is 0.
func localAddr(base, i int) (string, error) {
	if base != 0 {
		return fmt.Sprintf("127.0.0.1:%d", base+i), nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer lis.Close()
	return lis.Addr().String(), nil
}

// Start starts (or restarts, with its data dir) node i.
func (l *Local) Start(i int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.servers[i] != nil {
		return fmt.Errorf("server: node %d is running", i)
	}
	var restore *raftnode.Backup
	if !l.started[i] {
		restore = l.cfg.Restore
	}
	s, err := Start(Config{
		NodeID:       l.peers[i].ID,
		GRPCAddr:     l.grpc[i],
		RaftAddr:     l.peers[i].Addr,
		DataDir:      filepath.Join(l.cfg.Dir, l.peers[i].ID),
		RootKey:      l.cfg.RootKey,
		Peers:        l.peers,
		Limits:       l.cfg.Limits,
		StaleReads:   l.cfg.StaleReads,
		ReadMode:     l.cfg.ReadMode,
		Logger:       l.cfg.Logger,
		TuneRaft:     l.cfg.TuneRaft,
		Restore:      restore,
		AWS:          l.awsConfig(i),
		ARN:          l.cfg.ARN,
		MaxClockSkew: l.cfg.MaxClockSkew,
		Audit:        l.cfg.Audit,
		AuditQueue:   l.cfg.AuditQueue,
		PProf:        l.cfg.PProf,
		MetricsAddr:  l.metricsAddr(i),
	})
	if err != nil {
		return err
	}
	l.servers[i] = s
	l.started[i] = true
	return nil
}

// StopNode stops node i (its data stays).
func (l *Local) StopNode(i int) {
	l.mu.Lock()
	s := l.servers[i]
	l.servers[i] = nil
	l.mu.Unlock()
	if s != nil {
		s.Stop()
	}
}

// Stop stops every node.
func (l *Local) Stop() {
	for i := range l.servers {
		l.StopNode(i)
	}
}

// Server is node i, or nil when it is stopped.
func (l *Local) Server(i int) *Server {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.servers[i]
}

// Endpoints are the nodes' gRPC addresses.
func (l *Local) Endpoints() []string { return append([]string(nil), l.grpc...) }

// Leader is the index of the node that is leader, or -1.
func (l *Local) Leader() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.servers {
		if s != nil && s.node.IsLeader() {
			return i
		}
	}
	return -1
}

// awsConfig is node i's AWS-protocol listener, when the cluster has one.
func (l *Local) awsConfig(i int) AWS {
	if len(l.aws) == 0 {
		return AWS{}
	}
	if i < len(l.awsLis) && l.awsLis[i] != nil {
		lis := l.awsLis[i]
		l.awsLis[i] = nil
		return AWS{Listener: lis}
	}
	return AWS{Addr: l.aws[i]}
}

// metricsAddr is node i's metrics address, "" when metrics are off.
func (l *Local) metricsAddr(i int) string {
	switch {
	case l.cfg.MetricsPort == 0:
		return ""
	case l.cfg.MetricsPort < 0:
		return "127.0.0.1:0"
	}
	return fmt.Sprintf("127.0.0.1:%d", l.cfg.MetricsPort+i)
}

// AWSEndpoints are the nodes' AWS-protocol endpoint URLs (http://), or nil.
func (l *Local) AWSEndpoints() []string {
	var out []string
	for _, a := range l.aws {
		out = append(out, "http://"+a)
	}
	return out
}
