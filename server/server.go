// Package server assembles one raftkms node: the state machine, the Raft
// node, the gRPC API, the rotation scheduler and the gRPC listener. kmsd,
// kmsbench and the end-to-end tests all start nodes through it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/metrics"
	"github.com/raftkms/raftkms/pki"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/rotation"
	"github.com/raftkms/raftkms/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// Config configures one node.
type Config struct {
	NodeID        string               // stable node identity
	GRPCAddr      string               // where the gRPC API listens (host:port); ignored when Listener is set
	GRPCAdvertise string               // address other nodes and clients use; default: the listener's address
	RaftAddr      string               // where Raft listens (host:port); ignored when StreamLayer is set
	DataDir       string               // Raft log, stable store and snapshots
	RootKey       *keycrypto.RootKey   // seals all key material
	Peers         []raftnode.Peer      // bootstrap voters, identical on every node; empty with Join
	Join          string               // gRPC address of a member to join through, for a new node
	Limits        rpc.Limits           // rotation, deletion and on-demand bounds
	StaleReads    bool                 // serve reads without a read-index round
	ReadMode      string               // lease (default), read-index or stale (rpc.ReadMode*)
	Logger        hclog.Logger         // nil: discard
	Listener      net.Listener         // optional pre-made gRPC listener
	StreamLayer   raftnode.StreamLayer // optional Raft stream layer (tests, TLS)
	// TuneRaft, if set, may change the Raft configuration before start
	// (timeouts, snapshot thresholds).
	TuneRaft func(*raftnode.Config)
	// TLS, if set, puts mutual TLS on the client API, on node-to-node gRPC
	// and on Raft (unless StreamLayer is given, which is then used as is
	// beneath TLS). Nil runs insecure: only for loopback.
	TLS *TLS
	// Auth turns on identities and key policies (needs TLS).
	Auth rpc.Auth
	// Audit, if set, receives one JSON line per call.
	Audit io.Writer
	// AuditQueue queues audit lines of successful reads instead of writing
	// them before the call returns (rpc.Config.AuditQueue; 0: synchronous).
	AuditQueue int
	// Now is the clock the node stamps events with and the scheduler runs
	// on; default time.Now (tests skew it).
	Now func() time.Time
	// OnApply, if set, is called on the apply path after every event that
	// changed a key (tests use it to slow a node's applying down).
	OnApply func(keyID string)
	// DialOptions are extra options for dialling other nodes, appended to
	// the defaults; tests route node-to-node gRPC through a fault network.
	DialOptions []grpc.DialOption
	// AWS, when it names an address or a listener, serves the AWS KMS
	// protocol on this node too.
	AWS AWS
	// MaxClockSkew bounds how far a leader's clock may be from a quorum of
	// the voters' clocks while it stamps events; default
	// rpc.DefaultMaxClockSkew (see rootcheck.go and rpc/clock.go).
	MaxClockSkew time.Duration
	// ARN is the cluster's partition, region and account, in key ARNs and
	// for AWS signatures (defaults: aws, us-east-1, 000000000000).
	ARN rpc.ARN
	// MetricsAddr, if set, is where Prometheus metrics are served
	// (HOST:PORT, /metrics); PProf adds Go's profiles there (/debug/pprof/).
	MetricsAddr string
	PProf       bool
	// HealthMaxLag is how many committed entries the node may have left to
	// apply while it answers SERVING; default DefaultHealthMaxLag.
	HealthMaxLag uint64
	// Restore, if set, starts a new cluster from a saved snapshot
	// (bootstrapping nodes with empty data dirs only; see restore.go).
	Restore *raftnode.Backup
	// MaxSchema makes the node announce and accept event schemas up to this
	// one only, as an older build would (rolling-upgrade tests); 0 is
	// fsm.SchemaVersion.
	MaxSchema uint32
}

// TLS holds a node's mutual TLS configurations.
type TLS struct {
	Server *tls.Config // accepts clients and peers with a certificate from the cluster CA
	Client *tls.Config // presents the node's certificate to peers
	// RaftHandshakeTimeout bounds a Raft peer's TLS handshake (default
	// raftnode.DefaultTLSHandshakeTimeout).
	RaftHandshakeTimeout time.Duration
}

// Server is one running node.
type Server struct {
	cfg  Config
	log  hclog.Logger
	fsm  *fsm.FSM
	node *raftnode.Node
	api  *rpc.Server
	// apiReady publishes api to the apply goroutine.
	apiReady atomic.Pointer[rpc.Server]
	serving  atomic.Bool // registered in the replicated state and serving
	// sched is the rotation scheduler, published to the apply goroutine.
	sched  atomic.Pointer[rotation.Scheduler]
	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener
	// AWS-protocol listener (aws.go), nil when off.
	awsLis  net.Listener
	awsHTTP *http.Server

	metrics    *metrics.Registry // nil when metrics are off (metrics.go)
	metricsLis *metrics.Listener

	// failed is closed when the node has refused to serve (failure.go).
	failed   chan struct{}
	failErr  error
	failOnce sync.Once
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

// Start builds and starts a node. It returns once the node listens; joining
// the cluster and registering its address go on in the background.
func Start(cfg Config) (*Server, error) {
	if cfg.NodeID == "" || cfg.DataDir == "" || cfg.RootKey == nil {
		return nil, errors.New("server: node ID, data dir and root key are required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	s := &Server{cfg: cfg, log: logger.With("node", cfg.NodeID), failed: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	var err error
	s.fsm, err = fsm.New(fsm.Config{MaxSchema: cfg.MaxSchema, OnChange: s.onChange})
	if err != nil {
		return nil, err
	}
	s.lis = cfg.Listener
	if s.lis == nil {
		if s.lis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return nil, fmt.Errorf("server: listen for gRPC: %w", err)
		}
	}
	advertise := cfg.GRPCAdvertise
	if advertise == "" {
		advertise = s.lis.Addr().String()
	}

	stream := cfg.StreamLayer
	if cfg.TLS != nil {
		if cfg.TLS.Server == nil || cfg.TLS.Client == nil {
			s.lis.Close()
			return nil, errors.New("server: TLS needs server and client configs")
		}
		// Only node certificates speak Raft, each for its own node ID.
		rtls := raftnode.TLSConfig{
			Server: cfg.TLS.Server, Client: cfg.TLS.Client, Trust: trustOf(cfg), NodeID: cfg.NodeID,
			HandshakeTimeout: cfg.TLS.RaftHandshakeTimeout,
			Logger:           logger.Named("raft").With("node", cfg.NodeID),
		}
		if stream != nil {
			stream, err = raftnode.WrapTLS(stream, rtls)
		} else {
			stream, err = raftnode.NewTLSStreamLayer(cfg.RaftAddr, "", rtls)
		}
		if err != nil {
			s.lis.Close()
			return nil, err
		}
	} else if cfg.Auth.Enabled {
		s.lis.Close()
		return nil, errors.New("server: authorization needs TLS client certificates")
	}
	rcfg := raftnode.Config{
		NodeID:       cfg.NodeID,
		RaftBindAddr: cfg.RaftAddr,
		DataDir:      cfg.DataDir,
		Peers:        cfg.Peers,
		FSM:          s.fsm,
		Logger:       logger.Named("raft").With("node", cfg.NodeID),
		StreamLayer:  stream,
	}
	if cfg.TuneRaft != nil {
		cfg.TuneRaft(&rcfg)
	}
	if cfg.Restore != nil {
		if err := CheckRestore(cfg.Restore, cfg.RootKey); err != nil {
			s.lis.Close()
			return nil, err
		}
		rcfg.Restore = cfg.Restore
	}
	s.node, err = raftnode.New(rcfg)
	if err != nil {
		s.lis.Close()
		return nil, err
	}

	s.api, err = rpc.New(rpc.Config{
		NodeID:       cfg.NodeID,
		GRPCAddr:     advertise,
		FSM:          s.fsm,
		Node:         s.node,
		Root:         cfg.RootKey,
		Limits:       cfg.Limits,
		StaleReads:   cfg.StaleReads,
		ReadMode:     cfg.ReadMode,
		Logger:       logger.Named("rpc").With("node", cfg.NodeID),
		Auth:         cfg.Auth,
		Audit:        cfg.Audit,
		AuditQueue:   cfg.AuditQueue,
		Now:          cfg.Now,
		DialOptions:  append(dialOptions(cfg.TLS, trustOf(cfg)), cfg.DialOptions...),
		MaxClockSkew: cfg.MaxClockSkew,
		ARN:          cfg.ARN,
	})
	if err != nil {
		s.node.Shutdown()
		s.lis.Close()
		return nil, err
	}
	s.apiReady.Store(s.api)
	sched, err := rotation.New(rotation.Config{
		Proposer:       s.node,
		Leadership:     s.node,
		State:          s.fsm,
		NewMaterial:    s.newMaterial,
		MayHaveApplied: func(err error) bool { return errors.Is(err, raftnode.ErrAmbiguous) },
		Now:            cfg.Now,
		ClockTrusted:   s.api.ClockReady,
		Logger:         logger.With("node", cfg.NodeID), // rotation names its logger
	})
	if err != nil {
		s.node.Shutdown()
		s.lis.Close()
		return nil, err
	}
	s.sched.Store(sched)
	metricOpts, err := s.newMetrics()
	if err != nil {
		s.node.Shutdown()
		s.lis.Close()
		return nil, err
	}
	// Metrics first, so that they count every call, refused ones included.
	opts := append(metricOpts, grpc.ChainUnaryInterceptor(s.api.UnaryInterceptor()), rpc.ServerCodec(),
		// Peers ping every 10 s (dialOptions); allow it.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}))
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS.Server)))
	}
	s.grpc = grpc.NewServer(opts...)
	s.api.Register(s.grpc)
	s.health = health.NewServer()
	for _, name := range healthServices {
		s.health.SetServingStatus(name, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	if err := s.startMetrics(sched); err != nil {
		s.node.Shutdown()
		s.lis.Close()
		return nil, err
	}

	if err := s.startAWS(); err != nil {
		s.node.Shutdown()
		s.lis.Close()
		return nil, err
	}
	s.wg.Add(6)
	go func() {
		defer s.wg.Done()
		s.watchHealth()
	}()
	go func() {
		defer s.wg.Done()
		s.api.RunReseal(s.ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.api.RunClock(s.ctx)
	}()
	go func() {
		defer s.wg.Done()
		if err := sched.Run(s.ctx); err != nil {
			s.log.Error("rotation scheduler stopped", "error", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		if err := s.grpc.Serve(s.lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("gRPC server stopped", "error", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.joinAndRegister()
	}()
	return s, nil
}

// trustOf is the node's pki.Trust: what a peer's certificate may be.
func trustOf(cfg Config) pki.Trust { return pki.Trust{Admins: cfg.Auth.Admins} }

// dialOptions reach other nodes: with the node's certificate under TLS, and
// only nodes (pki.Trust.NodeOnly): a forwarded write, a read index or a join
// never goes to a server presenting a client or admin certificate.
//
// A connection attempt gives up after two seconds, so a call forwarded to a
// leader that just died (whose address may drop packets rather than refuse)
// fails fast with Unavailable and the client retries, instead of waiting for
// TCP's own timeout.
func dialOptions(t *TLS, trust pki.Trust) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if t != nil {
		creds = credentials.NewTLS(trust.NodeOnly(t.Client, ""))
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// A peer that goes silent without resetting the connection (a
		// paused process, a dropped route) is noticed by keepalive pings.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
		grpc.WithConnectParams(grpc.ConnectParams{
			MinConnectTimeout: 2 * time.Second,
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
		}),
	}
}

// onChange receives the state machine's change notifications.
func (s *Server) onChange(keyID string) {
	// Raft may replay the log before Start has made the API server.
	if api := s.apiReady.Load(); api != nil {
		api.KeyChanged(keyID)
	}
	if r := s.sched.Load(); r != nil {
		r.KeyChanged(keyID)
	}
	if s.cfg.OnApply != nil {
		s.cfg.OnApply(keyID)
	}
}

// joinAndRegister joins the cluster when asked to, then records this node's
// gRPC address in the replicated state (so followers can forward to it when
// it leads) and marks the node as serving.
func (s *Server) joinAndRegister() {
	if s.cfg.Join != "" && len(s.cfg.Peers) == 0 {
		for s.ctx.Err() == nil {
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
			err := s.api.JoinVia(ctx, s.cfg.Join, s.node.Addr())
			cancel()
			if err == nil {
				break
			}
			if s.refuseWrongRootKey(err) {
				return
			}
			s.log.Warn("joining the cluster failed; retrying", "via", s.cfg.Join, "error", err)
			s.sleep(time.Second)
		}
	}
	for s.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		err := s.api.RegisterSelf(ctx)
		cancel()
		if err == nil {
			if !s.verifyRootKey() {
				return
			}
			s.serving.Store(true) // watchHealth turns the health status to SERVING
			s.log.Info("node registered and serving", "grpc", s.api.Addr())
			return
		}
		if s.refuseWrongRootKey(err) {
			return
		}
		s.log.Debug("registering node; retrying", "error", err)
		s.sleep(100 * time.Millisecond)
	}
}

func (s *Server) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
}

// Serving reports whether the node has registered its address with the
// cluster and answers health checks with SERVING.
func (s *Server) Serving() bool { return s.serving.Load() }

// Addr is the node's gRPC address.
func (s *Server) Addr() string { return s.api.Addr() }

// FSM is the node's state machine (read-only use).
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Node is the node's Raft wiring.
func (s *Server) Node() *raftnode.Node { return s.node }

// API is the node's gRPC service implementation.
func (s *Server) API() *rpc.Server { return s.api }

// Stop shuts the node down: the gRPC server first (in-flight calls finish,
// bounded), then the scheduler, then Raft.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.cancel()
		s.health.Shutdown()
		s.stopAWS()
		if s.metricsLis != nil {
			s.metricsLis.Close()
		}
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		// Calls in flight finish first: a write being acknowledged needs
		// the lease streams (the holders' reports). Then the streams end,
		// which a graceful stop would otherwise wait for.
		select {
		case <-done:
		case <-time.After(200 * time.Millisecond):
		}
		s.api.EndStreams()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			s.grpc.Stop()
		}
		s.api.Close()
		if err := s.node.Shutdown(); err != nil {
			s.log.Warn("raft shutdown", "error", err)
		}
		s.wg.Wait()
	})
}
