package raftnode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/pki"
)

// Defaults of the Raft TLS listener.
const (
	// DefaultTLSHandshakeTimeout bounds one peer's TLS handshake on accept.
	DefaultTLSHandshakeTimeout = 10 * time.Second
	// DefaultMaxPendingHandshakes bounds the accepted connections whose
	// handshake is under way (or done, waiting for Raft to take them). Each
	// costs a goroutine and a few KiB of TLS buffers, so the bound caps a
	// flood at a few MiB; past it new connections are closed at once.
	DefaultMaxPendingHandshakes = 256
)

// TLSConfig configures the Raft transport's mutual TLS (WrapTLS).
type TLSConfig struct {
	// Server accepts peers; it must require and verify client certificates.
	Server *tls.Config
	// Client presents this node's certificate when dialling peers and
	// verifies them against the cluster CA.
	Client *tls.Config
	// Trust decides what a peer's certificate may be: only node
	// certificates speak Raft.
	Trust pki.Trust
	// NodeID is this node's ID; its certificates must be this node's.
	NodeID string
	// HandshakeTimeout bounds an accepted peer's handshake (default
	// DefaultTLSHandshakeTimeout).
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes bounds concurrent accepted handshakes (default
	// DefaultMaxPendingHandshakes).
	MaxPendingHandshakes int
	// Logger receives refusals (never message contents); nil discards.
	Logger hclog.Logger
}

// tlsLayer carries Raft's traffic over mutual TLS on top of another stream
// layer. Only node certificates pass either way: an accepted peer must hold
// a node certificate, and every Raft request it sends must name that node
// as its sender (rpcGuard); a dialled peer must hold a node certificate,
// the member's whose address was dialled when the Raft configuration names
// one.
//
// Handshakes never run in Accept: an accept loop hands each connection to
// its own goroutine, which handshakes under a deadline and delivers good
// connections to Accept, so a peer that never speaks holds up nobody.
type tlsLayer struct {
	inner  StreamLayer
	cfg    TLSConfig
	server *tls.Config // cfg.Server, node-only
	logger hclog.Logger
	// members maps a Raft address to the ID of the member there, "" when
	// unknown (set by New from the Raft configuration).
	members atomic.Pointer[func(addr string) string]

	ready   chan net.Conn // handshaken, verified connections for Accept
	slots   chan struct{} // one per pending handshake
	closeCh chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	pending map[net.Conn]struct{} // raw connections mid-handshake

	droppedAt atomic.Int64 // unix nanos of the last "too many handshakes" warning
}

// WrapTLS puts mutual TLS on a stream layer: the only way raftkms carries
// Raft over TLS, and it cannot be built without the node-only checks.
func WrapTLS(inner StreamLayer, cfg TLSConfig) (StreamLayer, error) {
	if inner == nil {
		return nil, errors.New("raftnode: TLS needs a stream layer beneath it")
	}
	if cfg.Server == nil || cfg.Client == nil {
		return nil, errors.New("raftnode: TLS needs server and client TLS configs")
	}
	if cfg.Server.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("raftnode: the Raft transport must require and verify peer certificates")
	}
	if cfg.Client.InsecureSkipVerify {
		return nil, errors.New("raftnode: the Raft transport must verify the peers it dials")
	}
	if cfg.NodeID == "" {
		return nil, errors.New("raftnode: TLS needs this node's ID")
	}
	for _, c := range []*tls.Config{cfg.Server, cfg.Client} {
		if err := cfg.Trust.OwnNode(c, cfg.NodeID); err != nil {
			return nil, fmt.Errorf("raftnode: %w", err)
		}
	}
	if cfg.HandshakeTimeout < 0 || cfg.MaxPendingHandshakes < 0 {
		return nil, errors.New("raftnode: HandshakeTimeout and MaxPendingHandshakes must not be negative")
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if cfg.MaxPendingHandshakes == 0 {
		cfg.MaxPendingHandshakes = DefaultMaxPendingHandshakes
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	l := &tlsLayer{
		inner:   inner,
		cfg:     cfg,
		server:  cfg.Trust.NodeOnly(cfg.Server, ""),
		logger:  cfg.Logger.Named("tls"),
		ready:   make(chan net.Conn),
		slots:   make(chan struct{}, cfg.MaxPendingHandshakes),
		closeCh: make(chan struct{}),
		pending: map[net.Conn]struct{}{},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// setMembers installs the address → member ID lookup Dial verifies
// against.
func (l *tlsLayer) setMembers(fn func(addr string) string) { l.members.Store(&fn) }

// Addr is the address peers reach this node at.
func (l *tlsLayer) Addr() net.Addr { return l.inner.Addr() }

// Accept returns the next peer that completed the handshake as a node; its
// Raft requests are checked as they are read.
func (l *tlsLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.closeCh:
		return nil, net.ErrClosed
	}
}

// Close stops accepting, closes every connection mid-handshake and waits
// for the accept loop and the handshakes to end. Connections already
// handed to Raft are Raft's to close.
func (l *tlsLayer) Close() error {
	l.shut()
	err := l.inner.Close()
	l.wg.Wait()
	return err
}

// shut marks the layer closed and closes the connections mid-handshake.
func (l *tlsLayer) shut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.closeCh)
	for c := range l.pending {
		c.Close()
	}
}

func (l *tlsLayer) acceptLoop() {
	defer l.wg.Done()
	const maxDelay = time.Second
	var delay time.Duration
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.closeCh:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				l.shut()
				return
			}
			// Out of file descriptors and the like: back off and retry.
			delay = min(max(2*delay, 5*time.Millisecond), maxDelay)
			l.logger.Warn("accepting a Raft connection failed; retrying", "error", err, "in", delay)
			select {
			case <-time.After(delay):
			case <-l.closeCh:
				return
			}
			continue
		}
		delay = 0
		select {
		case l.slots <- struct{}{}:
		default:
			raw.Close()
			l.warnDropped()
			continue
		}
		if !l.track(raw) {
			raw.Close()
			<-l.slots
			return
		}
		l.wg.Add(1)
		go l.handshake(raw)
	}
}

// warnDropped says, at most once a minute, that connections are being
// closed unheard because too many handshakes are pending.
func (l *tlsLayer) warnDropped() {
	now := time.Now().UnixNano()
	last := l.droppedAt.Load()
	if now-last < int64(time.Minute) || !l.droppedAt.CompareAndSwap(last, now) {
		return
	}
	l.logger.Warn("too many Raft TLS handshakes pending; closing new connections", "limit", l.cfg.MaxPendingHandshakes)
}

func (l *tlsLayer) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *tlsLayer) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

// handshake completes one accepted connection's TLS handshake under the
// deadline; a node's connection goes to Accept behind an rpcGuard.
func (l *tlsLayer) handshake(raw net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.slots }()
	tc := tls.Server(raw, l.server)
	raw.SetDeadline(time.Now().Add(l.cfg.HandshakeTimeout))
	err := tc.Handshake()
	l.untrack(raw)
	if err != nil {
		if errors.Is(err, pki.ErrNotNode) {
			l.logger.Warn("refused a peer on the Raft port", "remote", raw.RemoteAddr(), "error", err)
		} else {
			l.logger.Debug("Raft TLS handshake failed", "remote", raw.RemoteAddr(), "error", err)
		}
		raw.Close()
		return
	}
	raw.SetDeadline(time.Time{})
	// NodeOnly admitted only nodes; the guard holds the connection to the
	// node its certificate names.
	peer, err := l.cfg.Trust.RequireNode(tc.ConnectionState(), "")
	if err != nil {
		raw.Close()
		return
	}
	g := newRPCGuard(tc, peer.NodeID, l.logger)
	select {
	case l.ready <- g:
	case <-l.closeCh:
		tc.Close()
	}
}

// Dial opens a TLS connection to a peer, verifying its certificate against
// the CA and the host it was dialled by, that it is a node's, and that it
// is the node the Raft configuration has at addr when it names one.
func (l *tlsLayer) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	expect := ""
	if fn := l.members.Load(); fn != nil {
		expect = (*fn)(addr)
	}
	cfg := l.cfg.Trust.NodeOnly(l.cfg.Client, expect)
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		cfg.ServerName = host
	}
	c, err := l.inner.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("raftnode: TLS handshake with %s: %w", addr, err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// tcpLayer is a plain TCP stream layer.
type tcpLayer struct {
	net.Listener
	advertise net.Addr
}

func (l *tcpLayer) Addr() net.Addr { return l.advertise }

func (l *tcpLayer) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

// advertiseAddr is an address as peers know it: a host name stays a name
// (peers resolve it when they dial), so it matches the bootstrap peer list.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

// NewTLSStreamLayer listens on bind (TCP) and carries Raft over mutual TLS
// (WrapTLS). advertise is the address peers reach this node at (default:
// bind, as given: kms1:7101 stays kms1:7101).
func NewTLSStreamLayer(bind, advertise string, cfg TLSConfig) (StreamLayer, error) {
	if advertise == "" {
		advertise = bind
	}
	if _, _, err := net.SplitHostPort(advertise); err != nil {
		return nil, fmt.Errorf("raftnode: advertise address: %w", err)
	}
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raftnode: listen on %s: %w", bind, err)
	}
	s, err := WrapTLS(&tcpLayer{Listener: l, advertise: advertiseAddr(advertise)}, cfg)
	if err != nil {
		l.Close()
		return nil, err
	}
	return s, nil
}
