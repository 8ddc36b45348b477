package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/pki"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// memNode is an in-memory Raft node for rpc's tests: it is always the
// leader, and Propose applies the event to a real fsm.FSM at once, through
// the same encoding as the log. It remembers every envelope it was given.
type memNode struct {
	f *fsm.FSM

	mu      sync.Mutex
	index   uint64
	envs    []*eventsv1.Envelope
	members map[string]string // node ID → Raft address, from AddVoter
	// before, if set, runs before each proposal is applied, with the
	// envelope; what it returns is applied first (a concurrent write that
	// committed between the handler's check and its proposal).
	before func(env *eventsv1.Envelope) *eventsv1.Envelope
	// replicas, if set, apply every entry too, at the same index, before
	// Propose returns (the other nodes of an in-memory cluster).
	replicas []*fsm.FSM
}

func newMemNode(f *fsm.FSM) *memNode {
	return &memNode{f: f, members: map[string]string{"node1": "mem:1"}}
}

func (n *memNode) Propose(ctx context.Context, env *eventsv1.Envelope) (*fsm.Result, error) {
	data, err := fsm.EncodeEntry(env)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.before != nil {
		if first := n.before(env); first != nil {
			b, err := fsm.EncodeEntry(first)
			if err != nil {
				return nil, err
			}
			n.index++
			n.f.ApplyEntry(n.index, b)
		}
	}
	n.index++
	env, err = fsm.DecodeEntry(data) // what every node would apply
	if err != nil {
		return nil, err
	}
	n.envs = append(n.envs, env)
	res := n.f.ApplyEntry(n.index, data)
	for _, r := range n.replicas {
		r.ApplyEntry(n.index, data)
	}
	return res, nil
}

// proposed are the envelopes proposed so far.
func (n *memNode) proposed() []*eventsv1.Envelope {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*eventsv1.Envelope(nil), n.envs...)
}

func (n *memNode) last() *eventsv1.Envelope {
	envs := n.proposed()
	if len(envs) == 0 {
		return nil
	}
	return envs[len(envs)-1]
}

func (n *memNode) IsLeader() bool                            { return true }
func (n *memNode) Leader() (string, string)                  { return "node1", "mem:1" }
func (n *memNode) CatchUp(context.Context) error             { return nil }
func (n *memNode) Addr() string                              { return "mem:1" }
func (n *memNode) State() string                             { return "Leader" }
func (n *memNode) Term() uint64                              { return 1 }
func (n *memNode) LastSnapshotIndex() uint64                 { return 0 }
func (n *memNode) Snapshot() error                           { return nil }
func (n *memNode) WaitApplied(context.Context, uint64) error { return nil }

func (n *memNode) AppliedIndex() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.index
}

func (n *memNode) LastIndex() uint64 { return n.AppliedIndex() }

func (n *memNode) ReadIndex(context.Context) (uint64, error) { return n.AppliedIndex(), nil }

func (n *memNode) Members() ([]raftnode.Member, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []raftnode.Member
	for id, addr := range n.members {
		out = append(out, raftnode.Member{ID: id, Addr: addr, Voter: true})
	}
	return out, nil
}

func (n *memNode) AddVoter(_ context.Context, id, addr string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.members[id] = addr
	return nil
}

func (n *memNode) RemoveServer(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.members, id)
	return nil
}

func (n *memNode) TransferLeadership(context.Context, string) error { return nil }

func (n *memNode) Shutdown() error { return nil }

// SubscribeLeadership: the in-memory node leads from the start and never
// loses it.
func (n *memNode) SubscribeLeadership() (<-chan bool, func()) {
	ch := make(chan bool, 1)
	ch <- true
	return ch, func() {}
}

// harness serves one rpc.Server over an in-memory connection with mutual
// TLS, with certificates from its own CA: clients "owner" and "other", the
// admin "admin", and nodes node1 (the server itself) to node3.
type harness struct {
	t     *testing.T
	f     *fsm.FSM
	node  *memNode
	srv   *Server
	lis   *bufconn.Listener
	ca    *pki.Authority
	pool  *x509.CertPool
	clock *fakeClock
	audit *syncBuffer

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newHarness(t *testing.T, configure ...func(*Config)) *harness {
	t.Helper()
	f, err := fsm.New(fsm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := keycrypto.NewRootKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewAuthority("harness CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	h := &harness{t: t, f: f, node: newMemNode(f), ca: ca, pool: pool, conns: map[string]*grpc.ClientConn{},
		clock: &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}, audit: &syncBuffer{}}
	cfg := Config{NodeID: "node1", GRPCAddr: "mem:1", FSM: f, Node: h.node, Root: root, Now: h.clock.Now,
		Auth: Auth{Enabled: true, Admins: []string{"admin"}}, Audit: h.audit}
	for _, c := range configure {
		c(&cfg)
	}
	h.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serverCert := h.cert("node1", true)
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerConfig(serverCert, pool))),
		grpc.ChainUnaryInterceptor(h.srv.UnaryInterceptor()), ServerCodec())
	h.srv.Register(gs)
	h.lis = bufconn.Listen(1 << 20)
	go gs.Serve(h.lis)
	t.Cleanup(func() {
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
		gs.Stop()
		h.srv.Close()
	})
	return h
}

func (h *harness) cert(name string, node bool) tls.Certificate {
	h.t.Helper()
	var is *pki.Issued
	var err error
	if node {
		is, err = h.ca.IssueNode(name, nil, time.Hour)
	} else {
		is, err = h.ca.IssueClient(name, time.Hour)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// conn is a connection presenting a certificate for name: a node's
// ("node2") when name starts with "node", else a client's.
func (h *harness) conn(name string) *grpc.ClientConn {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.conns[name]; ok {
		return c
	}
	creds := credentials.NewTLS(pki.ClientConfig(h.cert(name, strings.HasPrefix(name, "node")), h.pool))
	c, err := grpc.NewClient("passthrough:///localhost", grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return h.lis.DialContext(ctx) }))
	if err != nil {
		h.t.Fatal(err)
	}
	h.conns[name] = c
	return c
}

func (h *harness) kms(name string) kmsv1.KeyManagementServiceClient {
	return kmsv1.NewKeyManagementServiceClient(h.conn(name))
}

func (h *harness) cluster(name string) clusterv1.ClusterServiceClient {
	return clusterv1.NewClusterServiceClient(h.conn(name))
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// forwarded is ctx as node "by" forwards a call made by principal.
func forwarded(ctx context.Context, by, principal string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, mdForwardedBy, by, mdPrincipal, principal)
}

// createKey makes a key owned by name (the default policy) and returns its ID.
func (h *harness) createKey(name string, req *kmsv1.CreateKeyRequest) string {
	h.t.Helper()
	if req == nil {
		req = &kmsv1.CreateKeyRequest{}
	}
	resp, err := h.kms(name).CreateKey(testCtx(h.t), req)
	if err != nil {
		h.t.Fatalf("%s CreateKey: %v", name, err)
	}
	return resp.KeyMetadata.KeyId
}

func (h *harness) aliasTarget(name string) string {
	h.t.Helper()
	k, err := h.f.ResolveKey(name)
	if err != nil {
		return ""
	}
	return k.ID
}

// wantCode checks a call's outcome: codes.OK, or the code and the exception
// name the status message starts with.
func wantCode(t *testing.T, what string, err error, code codes.Code, exception string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("%s: got %v (%s), want %v %s", what, st.Code(), st.Message(), code, exception)
		return
	}
	if exception != "" && !strings.HasPrefix(st.Message(), exception+":") {
		t.Errorf("%s: got %q, want %s", what, st.Message(), exception)
	}
}
