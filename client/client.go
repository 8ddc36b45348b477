// Package client is the Go client of a raftkms cluster. It talks to many
// endpoints and gives every call of the generated gRPC clients what a
// cluster needs (DESIGN §2, §5):
//
//   - one idempotency token (request ID) per logical call, sent on every
//     retry of that call, so a write retried across a leader change applies
//     once;
//   - retries of Unavailable answers with exponential backoff and jitter,
//     moving to another endpoint, or straight to the leader when the node
//     names it in the x-raftkms-leader trailer;
//   - an opt-in stale-ok header for reads that prefer throughput to
//     freshness.
//
// All of it is done by a unary client interceptor installed on the
// connection to each endpoint, so Client.KMS() and Client.Cluster() are the
// plain generated clients.
package client

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Defaults of Config.
const (
	DefaultMaxAttempts = 10
	DefaultBaseBackoff = 50 * time.Millisecond
	DefaultMaxBackoff  = 2 * time.Second
)

// Config configures a Client.
type Config struct {
	// Endpoints are the gRPC addresses (host:port) of cluster nodes. Calls
	// start at the first and move on when a node is unavailable.
	Endpoints []string
	// DialOptions are used for every connection (TLS credentials, for
	// example). Default: insecure transport, for loopback and tests.
	DialOptions []grpc.DialOption
	// MaxAttempts bounds the attempts of one logical call, the first one
	// included. Default DefaultMaxAttempts; 1 disables retries.
	MaxAttempts int
	// BaseBackoff is the wait before the first retry; it doubles with each
	// retry up to MaxBackoff, and each wait is jittered to between half and
	// all of it. Defaults DefaultBaseBackoff, DefaultMaxBackoff.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// AttemptTimeout, if set, bounds each attempt; an attempt that runs out
	// of it (while the caller's context still has time) is retried like an
	// Unavailable answer. Zero: attempts are bounded only by the caller.
	AttemptTimeout time.Duration
	// FailFast ends a call as soon as retrying cannot help it: at once when
	// a connection fails in a way no retry cures (a TLS handshake failure,
	// a plaintext client talking to a TLS node), and when every endpoint
	// has failed to connect during the call. Without it such failures are
	// retried like any Unavailable answer, which suits long-lived clients
	// that wait for nodes to come back; kmsctl sets it.
	FailFast bool
	// StaleOK sends the stale-ok header on every call, so reads skip the
	// linearizable read-index round (see WithStaleOK for one call).
	StaleOK bool
}

// Client is a connection to a raftkms cluster. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu        sync.Mutex
	conns     map[string]*grpc.ClientConn // by address: endpoints, and leaders learned from hints
	addrOf    map[*grpc.ClientConn]string
	preferred string // where the next call starts: the last node that answered
	closed    bool
}

// New validates cfg and prepares connections to its endpoints. Connections
// are made lazily, so New succeeds even while nodes are down.
func New(cfg Config) (*Client, error) {
	var eps []string
	seen := map[string]bool{}
	for _, e := range cfg.Endpoints {
		e = strings.TrimSpace(e)
		if e == "" || seen[e] {
			continue
		}
		seen[e] = true
		eps = append(eps, e)
	}
	if len(eps) == 0 {
		return nil, errors.New("client: at least one endpoint is required")
	}
	cfg.Endpoints = eps
	if cfg.MaxAttempts < 0 || cfg.BaseBackoff < 0 || cfg.MaxBackoff < 0 || cfg.AttemptTimeout < 0 {
		return nil, errors.New("client: MaxAttempts, backoffs and AttemptTimeout must not be negative")
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.BaseBackoff {
		cfg.MaxBackoff = cfg.BaseBackoff
	}
	if len(cfg.DialOptions) == 0 {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	c := &Client{
		cfg:       cfg,
		conns:     map[string]*grpc.ClientConn{},
		addrOf:    map[*grpc.ClientConn]string{},
		preferred: eps[0],
	}
	for _, e := range eps {
		if _, err := c.conn(e); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// KMS is the KeyManagementService client; every call goes through the
// retry and request-ID logic of this package.
func (c *Client) KMS() kmsv1.KeyManagementServiceClient {
	return kmsv1.NewKeyManagementServiceClient(router{c})
}

// Cluster is the ClusterService client, with the same retry logic.
func (c *Client) Cluster() clusterv1.ClusterServiceClient {
	return clusterv1.NewClusterServiceClient(router{c})
}

// Conn is the connection the generated clients use, for callers that build
// their own stubs. Calls start at the preferred node.
func (c *Client) Conn() grpc.ClientConnInterface { return router{c} }

// Endpoints are the configured endpoints, without duplicates.
func (c *Client) Endpoints() []string { return append([]string(nil), c.cfg.Endpoints...) }

// Close closes every connection. Calls made after Close fail.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var first error
	for addr, cc := range c.conns {
		if err := cc.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.conns, addr)
		delete(c.addrOf, cc)
	}
	return first
}

// conn returns the connection to addr, dialing it (with the interceptor)
// the first time.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("client: closed")
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	opts := append(append([]grpc.DialOption(nil), c.cfg.DialOptions...), grpc.WithChainUnaryInterceptor(c.intercept))
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: connect to %s: %w", addr, err)
	}
	c.conns[addr] = cc
	c.addrOf[cc] = addr
	return cc, nil
}

// address is the address a connection of this client was made for.
func (c *Client) address(cc *grpc.ClientConn) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.addrOf[cc]; ok {
		return a
	}
	return c.preferred
}

func (c *Client) preferredAddr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.preferred
}

func (c *Client) setPreferred(addr string) {
	c.mu.Lock()
	c.preferred = addr
	c.mu.Unlock()
}

// next is the endpoint after addr in the configured order, so retries
// without a hint visit every endpoint in turn. An address learned from a
// hint is followed by the first endpoint.
func (c *Client) next(addr string) string {
	eps := c.cfg.Endpoints
	for i, e := range eps {
		if e == addr {
			return eps[(i+1)%len(eps)]
		}
	}
	return eps[0]
}
