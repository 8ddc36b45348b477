// Package rpc serves raftkms's gRPC API: KeyManagementService for clients and
// ClusterService for operators and for the nodes themselves. It validates
// requests, turns writes into events proposed through Raft (forwarding them
// to the leader when this node is a follower), serves crypto and reads from
// local state after a read-index round, and maps every error to a gRPC code
// with an AWS-style exception name in one place (errors.go).
package rpc

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Limits are the cluster's bounds for rotation, deletion and on-demand
// rotation. Every node of a cluster should use the same values.
type Limits struct {
	MinRotationPeriod time.Duration // default 90 days
	MaxRotationPeriod time.Duration // default 2560 days
	MinPendingWindow  time.Duration // default 7 days
	MaxPendingWindow  time.Duration // default 30 days
	OnDemandLimit     uint32        // on-demand rotations per key; default 10
	ManagedPeriod     time.Duration // rotation period of managed (SERVICE) keys; default 365 days
}

const day = 24 * time.Hour

// Defaults for Limits (those of AWS KMS).
const (
	DefaultMinRotationPeriod = 90 * day
	DefaultMaxRotationPeriod = 2560 * day
	DefaultRotationPeriod    = 365 * day
	DefaultMinPendingWindow  = 7 * day
	DefaultMaxPendingWindow  = 30 * day
	DefaultPendingWindow     = 30 * day
	DefaultOnDemandLimit     = 10
)

func (l Limits) withDefaults() (Limits, error) {
	if l.MinRotationPeriod == 0 {
		l.MinRotationPeriod = DefaultMinRotationPeriod
	}
	if l.MaxRotationPeriod == 0 {
		l.MaxRotationPeriod = DefaultMaxRotationPeriod
	}
	if l.MinPendingWindow == 0 {
		l.MinPendingWindow = DefaultMinPendingWindow
	}
	if l.MaxPendingWindow == 0 {
		l.MaxPendingWindow = DefaultMaxPendingWindow
	}
	if l.OnDemandLimit == 0 {
		l.OnDemandLimit = DefaultOnDemandLimit
	}
	if l.ManagedPeriod == 0 {
		l.ManagedPeriod = DefaultRotationPeriod
	}
	if l.MinRotationPeriod < time.Second || l.MinRotationPeriod > l.MaxRotationPeriod {
		return l, fmt.Errorf("rpc: rotation period bounds %v..%v are invalid", l.MinRotationPeriod, l.MaxRotationPeriod)
	}
	if l.MinPendingWindow < time.Second || l.MinPendingWindow > l.MaxPendingWindow {
		return l, fmt.Errorf("rpc: pending window bounds %v..%v are invalid", l.MinPendingWindow, l.MaxPendingWindow)
	}
	return l, nil
}

// Config configures the API of one node.
type Config struct {
	NodeID     string             // this node's ID
	GRPCAddr   string             // this node's advertised gRPC address
	FSM        *fsm.FSM           // local state, read-only here
	Node       Node               // proposes events, answers read-index rounds (a *raftnode.Node)
	Root       *keycrypto.RootKey // seals and opens key material
	Limits     Limits             // cluster bounds
	StaleReads bool               // skip the read-index round for every read on this node (read mode stale)
	// ReadMode is lease (default), read-index or stale (lease.go).
	ReadMode string
	Logger   hclog.Logger // named "rpc"
	// Rand is the source of key IDs, material and nonces; default crypto/rand.
	Rand io.Reader
	// DialOptions are used to reach other nodes (forwarding, read index);
	// default: insecure (loopback and tests only).
	DialOptions []grpc.DialOption
	// Now is the proposer's clock; default time.Now. Tests inject their own.
	Now func() time.Time
	// Auth turns on identities from client certificates and key policies.
	Auth Auth
	// ARN names the cluster's partition, region and account in key ARNs.
	ARN ARN
	// Audit, if set, receives one JSON line per call (see audit.go).
	Audit io.Writer
	// AuditQueue, if positive, is how many audit lines may wait for the
	// audit writer: successful reads then return without waiting for their
	// line (DefaultAuditQueue is a good value). Zero writes every line
	// before its call returns.
	AuditQueue int
	// ImportParametersPerMinute bounds GetParametersForImport calls per
	// identity on the leader; default DefaultImportParametersPerMinute.
	ImportParametersPerMinute int
	// MaxClockSkew is how far this node's clock may be from a quorum of the
	// voters' clocks while it leads and stamps events (clock.go); default
	// DefaultMaxClockSkew.
	MaxClockSkew time.Duration
}

// Server implements the gRPC services of one node.
type Server struct {
	cfg    Config
	limits Limits
	log    hclog.Logger
	fsm    *fsm.FSM
	node   Node
	trust  pki.Trust // classifies certificates (Auth.Admins are the admins)
	root   *keycrypto.RootKey
	aeads  *keycrypto.Cache
	rand   io.Reader
	now    func() time.Time
	// arnPrefix is cfg.ARN's "arn:PARTITION:kms:REGION:ACCOUNT:".
	arnPrefix string

	readIdx  *coalescer // read-index rounds of a follower, shared
	importRL *throttle  // GetParametersForImport per identity
	rsaPairs *throttle  // RSA data key pairs per identity (kms_asym.go)
	policies policyCache
	authz    authzCache // authorization verdicts per key snapshot (authzcache.go)
	audit    *auditLog

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn // to other nodes, by gRPC address

	clockSt clockState // peers' clocks (clock.go)

	readMode  string
	reads     readCounts
	stop      chan struct{} // closed by Close
	closeOnce sync.Once

	resealKick chan struct{} // wakes the root-key re-seal loop (reseal.go)
	resealWarn sync.Once     // logs once that this leader cannot seal under the target
}

// New validates cfg and makes the API server.
func New(cfg Config) (*Server, error) {
	if cfg.NodeID == "" || cfg.GRPCAddr == "" || cfg.FSM == nil || cfg.Node == nil || cfg.Root == nil {
		return nil, errors.New("rpc: node ID, gRPC address, FSM, Raft node and root key are required")
	}
	limits, err := cfg.Limits.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AuditQueue < 0 {
		return nil, errors.New("rpc: AuditQueue must not be negative")
	}
	if cfg.ImportParametersPerMinute < 0 {
		return nil, errors.New("rpc: ImportParametersPerMinute must not be negative")
	}
	if cfg.ImportParametersPerMinute == 0 {
		cfg.ImportParametersPerMinute = DefaultImportParametersPerMinute
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	cfg.ARN = cfg.ARN.withDefaults()
	if err := cfg.ARN.check(); err != nil {
		return nil, err
	}
	mode, err := ParseReadMode(cfg.ReadMode)
	if err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	if cfg.StaleReads {
		mode = ReadModeStale
	}
	s := &Server{
		readMode: mode,
		stop:     make(chan struct{}),
		cfg:      cfg,
		limits:   limits,
		log:      cfg.Logger,
		fsm:      cfg.FSM,
		node:     cfg.Node,
		root:     cfg.Root,
		aeads:    keycrypto.NewCache(0),
		rand:     cfg.Rand,
		now:      cfg.Now,
		trust:    pki.Trust{Admins: cfg.Auth.Admins},
		conns:    map[string]*grpc.ClientConn{},
	}
	s.arnPrefix = cfg.ARN.prefix()
	s.importRL = newThrottle(cfg.ImportParametersPerMinute, cfg.Now)
	s.rsaPairs = newThrottle(RSAKeyPairsPerMinute, cfg.Now)
	s.readIdx = newCoalescer(5*time.Second, s.remoteReadIndex)
	if cfg.Audit != nil {
		s.audit = newAuditLog(cfg.Audit, cfg.NodeID, cfg.Now, cfg.Logger, cfg.AuditQueue)
	}
	s.resealKick = make(chan struct{}, 1)
	if ln, ok := cfg.Node.(leaseNode); ok {
		go s.leaseLoop(ln, s.stop)
	}
	return s, nil
}

// ReadMode is this node's read mode (lease, read-index or stale).
func (s *Server) ReadMode() string { return s.readMode }

// Addr is this node's advertised gRPC address.
func (s *Server) Addr() string { return s.cfg.GRPCAddr }

// KeyChanged is called by the state machine's change notification: cached
// authorization verdicts of the key, and cached AEADs of a key whose
// material may have gone (deleted, expired), are dropped.
// It must not block.
func (s *Server) KeyChanged(keyID string) {
	// Verdicts are keyed by the key's snapshot, so a changed key's are never
	// used again; dropping them frees the old snapshot.
	s.authz.forget(keyID)
	if keyID == "" {
		s.aeads.Purge()
		return
	}
	if k, ok := s.fsm.Key(keyID); ok && (k.State == fsm.KeyStateDeleted || k.State == fsm.KeyStatePendingImport || hasDestroyedVersion(k)) {
		s.aeads.Forget(keyID)
	}
}

// EndStreams ends this node's long-lived streams (the lease streams, both
// ways), so that a graceful stop of the gRPC server does not wait for them.
func (s *Server) EndStreams() { s.closeOnce.Do(func() { close(s.stop) }) }

// AuditStats counts what the audit log did (zero without one).
func (s *Server) AuditStats() AuditStats {
	if s.audit == nil {
		return AuditStats{}
	}
	return s.audit.stats()
}

// FlushAudit waits until every audit line of the calls that returned so far
// is written.
func (s *Server) FlushAudit() {
	if s.audit != nil {
		s.audit.flush()
	}
}

// Close ends the streams, writes the queued audit lines and releases
// connections to other nodes.
func (s *Server) Close() {
	s.EndStreams()
	if s.audit != nil {
		s.audit.close()
	}
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for addr, c := range s.conns {
		c.Close()
		delete(s.conns, addr)
	}
}

// conn returns a pooled client connection to another node.
func (s *Server) conn(addr string) (*grpc.ClientConn, error) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if c, ok := s.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, s.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	s.conns[addr] = c
	return c, nil
}

// leaderAddr is the gRPC address of the current leader, from its
// RegisterNode event.
func (s *Server) leaderAddr() (string, error) {
	id, _ := s.node.Leader()
	if id == "" {
		return "", unavailableErr("no leader is known yet; retry")
	}
	n, ok := s.fsm.Node(id)
	if !ok || n.GRPCAddr == "" {
		return "", unavailableErr("the leader %s has not registered its address yet; retry", id)
	}
	return n.GRPCAddr, nil
}
