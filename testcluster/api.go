package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/keycrypto"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// apiOptions make a cluster of whole raftkms nodes (state machine, Raft and
// the gRPC API) instead of bare Raft nodes.
type apiOptions struct {
	root    *keycrypto.RootKey
	limits  rpc.Limits
	onApply func(i int, keyID string)
	tls     *tlsMaterial // nil: insecure
	audit   io.Writer
	clock   func(i int) func() time.Time   // nil: every node on time.Now (clock.go)
	rootFor func(i int) *keycrypto.RootKey // nil: every node holds root (rootkey.go)
	// raftHandshake bounds Raft TLS handshakes (0: raftnode's default).
	raftHandshake time.Duration
	metrics       bool               // serve metrics on a free loopback port (WithMetrics)
	restore       restoreOption      // start from a saved snapshot (restore.go)
	maxSchema     func(i int) uint32 // node i's fsm.Config.MaxSchema; nil: this build's (schema.go)
	readMode      func(i int) string // node i's read mode; nil: the default (lease)

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// APIOption tunes an API cluster.
type APIOption func(*apiOptions)

// WithReadMode sets each node's read mode (rpc.ReadModeLease, ReadModeReadIndex
// or ReadModeStale).
func WithReadMode(mode func(i int) string) APIOption {
	return func(a *apiOptions) { a.readMode = mode }
}

func (a *apiOptions) readModeOf(i int) string {
	if a.readMode == nil {
		return ""
	}
	return a.readMode(i)
}

// WithLimits sets the cluster's rotation and deletion bounds.
func WithLimits(l rpc.Limits) APIOption { return func(a *apiOptions) { a.limits = l } }

// WithOnApply calls fn on node i's apply path after every event that
// changed a key; a slow fn slows that node's applying down.
func WithOnApply(fn func(i int, keyID string)) APIOption {
	return func(a *apiOptions) { a.onApply = fn }
}

// WithAPI runs every node as a whole raftkms node serving gRPC on
// 127.0.0.1, with one root key shared by the cluster (generated here).
func WithAPI(opts ...APIOption) Option {
	return func(o *options) {
		root, err := keycrypto.GenerateRootKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		a := &apiOptions{root: root, conns: map[string]*grpc.ClientConn{}}
		for _, opt := range opts {
			opt(a)
		}
		o.api = a
	}
}

// freeAddr finds a free port on 127.0.0.1.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testcluster: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startAPI starts node i as a whole raftkms node.
func (c *Cluster) startAPI(i int, ep *Endpoint) error {
	m := c.nodes[i]
	a := c.opts.api
	var onApply func(string)
	if a.onApply != nil {
		onApply = func(keyID string) { a.onApply(i, keyID) }
	}
	onApply = c.gatedApply(i, onApply)
	lis, err := c.listenGRPC(i)
	if err != nil {
		ep.Close()
		return err
	}
	var tlsCfg *server.TLS
	var auth rpc.Auth
	if a.tls != nil {
		tlsCfg = a.tls.nodeTLS(c.t, m.id)
		tlsCfg.RaftHandshakeTimeout = a.raftHandshake
		auth = rpc.Auth{Enabled: true, Admins: []string{"admin"}}
	}
	srv, err := server.Start(server.Config{
		TLS:         tlsCfg,
		Auth:        auth,
		Audit:       a.audit,
		NodeID:      m.id,
		GRPCAddr:    m.grpcAddr,
		Listener:    lis,
		DataDir:     m.dir,
		RootKey:     a.rootOf(i),
		Restore:     a.restore.take(i),
		MaxSchema:   a.maxSchemaOf(i),
		Peers:       c.bootstrapPeers(m),
		Join:        c.joinAddr(m),
		Now:         a.nowFor(i),
		Limits:      a.limits,
		ReadMode:    a.readModeOf(i),
		Logger:      hclog.New(&hclog.LoggerOptions{Name: m.id, Output: c.logw, Level: c.opts.level}),
		StreamLayer: ep,
		OnApply:     onApply,
		MetricsAddr: a.metricsAddr(),
		// Forwarding and read-index calls to other nodes cross the same
		// links as Raft, so a cut or a pause stops both planes.
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(c.net.Dialer(m.id))},
		TuneRaft: func(cfg *raftnode.Config) {
			tuned := c.raftConfig(i, cfg.FSM, ep)
			tuned.Logger = cfg.Logger
			// The server's stream layer: under TLS, the TLS layer on ep.
			tuned.StreamLayer = cfg.StreamLayer
			*cfg = tuned
		},
	})
	if err != nil {
		ep.Close()
		return err
	}
	c.mu.Lock()
	m.srv, m.node, m.fsm, m.alive = srv, srv.Node(), srv.FSM(), true
	c.mu.Unlock()
	if c.opts.afterStart != nil {
		c.opts.afterStart(i, srv.Node(), srv.FSM())
	}
	return nil
}

// Root is the API cluster's root key (tests unseal material with it to look
// for leaks).
func (c *Cluster) Root() *keycrypto.RootKey { return c.opts.api.root }

// GRPCAddr is node i's gRPC address (API clusters).
func (c *Cluster) GRPCAddr(i int) string { return c.nodes[i].grpcAddr }

// GRPCAddrs are every node's gRPC addresses.
func (c *Cluster) GRPCAddrs() []string {
	out := make([]string, len(c.nodes))
	for i, m := range c.nodes {
		out[i] = m.grpcAddr
	}
	return out
}

// Server is node i's current raftkms node (API clusters).
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// conn is a client connection to node i, closed when the test ends.
func (c *Cluster) conn(i int) *grpc.ClientConn {
	c.t.Helper()
	a := c.opts.api
	if a == nil {
		c.t.Fatalf("testcluster: not an API cluster (use WithAPI)")
	}
	addr := c.nodes[i].grpcAddr
	a.mu.Lock()
	defer a.mu.Unlock()
	if cc, ok := a.conns[addr]; ok {
		return cc
	}
	creds := insecure.NewCredentials()
	if a.tls != nil {
		creds = a.tls.clientCreds(c.t, "admin")
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds), grpc.WithUnaryInterceptor(retryUnavailable))
	if err != nil {
		c.t.Fatalf("testcluster: dial %s: %v", addr, err)
	}
	a.conns[addr] = cc
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// retryUnavailable retries a call that the node answered with Unavailable
// (no leader yet, leadership moving) on the same node, with the same request
// ID, for up to WaitTimeout: what the client library does, without moving to
// another node, so a test's "on node i" stays true.
func retryUnavailable(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if md, _ := metadata.FromOutgoingContext(ctx); len(md.Get(rpc.MDRequestID)) == 0 {
		var b [16]byte
		rand.Read(b[:])
		ctx = metadata.AppendToOutgoingContext(ctx, rpc.MDRequestID, hex.EncodeToString(b[:]))
	}
	deadline := time.Now().Add(WaitTimeout)
	delay := 10 * time.Millisecond
	for {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if status.Code(err) != codes.Unavailable || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(delay) // backoff before the retry
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// KMS is a KeyManagementService client talking to node i only; calls
// answered Unavailable are retried on that node.
func (c *Cluster) KMS(i int) kmsv1.KeyManagementServiceClient {
	c.t.Helper()
	return kmsv1.NewKeyManagementServiceClient(c.conn(i))
}

// ClusterAPI is a ClusterService client talking to node i only.
func (c *Cluster) ClusterAPI(i int) clusterv1.ClusterServiceClient {
	c.t.Helper()
	return clusterv1.NewClusterServiceClient(c.conn(i))
}

// WaitServing waits until every running node of an API cluster reports
// SERVING: it has a leader and its address is registered, so it can forward.
func (c *Cluster) WaitServing(t testing.TB) {
	t.Helper()
	c.WaitForLeader(t)
	ok := poll(WaitTimeout, func() bool {
		idx, _, _ := c.live()
		for _, i := range idx {
			if s := c.Server(i); s == nil || !s.Serving() {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("testcluster: nodes are not serving after %v:\n%s", WaitTimeout, c.describe())
	}
}
