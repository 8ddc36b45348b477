package raftnode

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Probe speaks Raft to a node exactly as hashicorp/raft's own
// NetworkTransport does, over TLS with whatever certificate it is given and
// without any of WrapTLS's checks. It exists for tests that attack a
// cluster the way an outsider with a certificate of the cluster CA would (a
// client certificate on the Raft port, a node claiming to be another);
// raftkms itself never uses it. It lives here because raftnode is the only
// package that speaks hashicorp/raft.
type Probe struct {
	trans  *raft.NetworkTransport
	stream *probeStream
}

// ProbeConfig configures a Probe.
type ProbeConfig struct {
	// Dial opens the raw connection (default: TCP).
	Dial func(addr string, timeout time.Duration) (net.Conn, error)
	// TLS, if set, is the client configuration the probe handshakes with
	// (its certificate is the one presented); nil speaks plain TCP.
	TLS *tls.Config
	// Timeout bounds dialling and each request (default 5 s).
	Timeout time.Duration
}

// ProbeAppend is an AppendEntries request as a probe sends it.
type ProbeAppend struct {
	SenderID   string // RPCHeader.ID: the Raft server the request claims to come from
	SenderAddr string // RPCHeader.Addr
	Term       uint64
	PrevIndex  uint64
	PrevTerm   uint64
	Commit     uint64
	// Entries become command entries at PrevIndex+1, PrevIndex+2, … in Term.
	Entries [][]byte
}

// ProbeReply is a node's answer to an AppendEntries.
type ProbeReply struct {
	Term    uint64
	Success bool
}

// NewProbe makes a probe; Close it when done.
func NewProbe(cfg ProbeConfig) *Probe {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Dial == nil {
		cfg.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", addr, timeout)
		}
	}
	s := &probeStream{cfg: cfg, closeCh: make(chan struct{})}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s, MaxPool: 1, Timeout: cfg.Timeout, Logger: hclog.NewNullLogger(),
	})
	return &Probe{trans: trans, stream: s}
}

// AppendEntries sends one AppendEntries to the node at addr and returns its
// answer; an error means the node did not answer (refused, or the link
// broke).
func (p *Probe) AppendEntries(addr string, a ProbeAppend) (ProbeReply, error) {
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{
			ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(a.SenderID), Addr: []byte(a.SenderAddr)},
		Term: a.Term, PrevLogEntry: a.PrevIndex, PrevLogTerm: a.PrevTerm, LeaderCommitIndex: a.Commit,
	}
	for i, data := range a.Entries {
		req.Entries = append(req.Entries, &raft.Log{
			Index: a.PrevIndex + 1 + uint64(i), Term: a.Term, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()})
	}
	var resp raft.AppendEntriesResponse
	if err := p.trans.AppendEntries(raft.ServerID(a.SenderID), raft.ServerAddress(addr), req, &resp); err != nil {
		return ProbeReply{}, err
	}
	return ProbeReply{Term: resp.Term, Success: resp.Success}, nil
}

// Close closes the probe's connections.
func (p *Probe) Close() error { return p.trans.Close() }

// probeStream dials only; nothing connects to a probe.
type probeStream struct {
	cfg       ProbeConfig
	closeCh   chan struct{}
	closeOnce sync.Once
}

func (s *probeStream) Accept() (net.Conn, error) {
	<-s.closeCh
	return nil, net.ErrClosed
}

func (s *probeStream) Close() error {
	s.closeOnce.Do(func() { close(s.closeCh) })
	return nil
}

func (s *probeStream) Addr() net.Addr { return advertiseAddr("probe:0") }

func (s *probeStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.cfg.Dial(string(addr), timeout)
	if err != nil || s.cfg.TLS == nil {
		return c, err
	}
	cfg := s.cfg.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(addr))
		if err != nil {
			c.Close()
			return nil, err
		}
		cfg.ServerName = host
	}
	tc := tls.Client(c, cfg)
	tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("probe: TLS handshake with %s: %w", addr, err)
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

var _ raft.StreamLayer = (*probeStream)(nil)
