package raftnode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// TLSStreamLayer carries Raft's traffic over mutual TLS: it accepts only
// peers whose certificate the server config verifies, and presents the
// node's own certificate when it dials.
type TLSStreamLayer struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

// NewTLSStreamLayer listens on bind with server (which must require and
// verify client certificates) and dials peers with client. advertise is the
// address peers reach this node at (default: the listener's).
func NewTLSStreamLayer(bind, advertise string, server, client *tls.Config) (*TLSStreamLayer, error) {
	if server == nil || client == nil {
		return nil, errors.New("raftnode: TLS stream layer needs server and client TLS configs")
	}
	if server.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("raftnode: the Raft transport must require and verify peer certificates")
	}
	l, err := tls.Listen("tcp", bind, server)
	if err != nil {
		return nil, fmt.Errorf("raftnode: listen on %s: %w", bind, err)
	}
	s := &TLSStreamLayer{Listener: l, advertise: l.Addr(), client: client}
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("raftnode: advertise address: %w", err)
		}
		s.advertise = a
	}
	return s, nil
}

// Accept waits for a peer and completes the TLS handshake, so that a peer
// without a valid certificate never reaches Raft.
func (s *TLSStreamLayer) Accept() (net.Conn, error) {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			continue
		}
		tc.SetDeadline(time.Time{})
		return tc, nil
	}
}

// Addr is the address peers dial.
func (s *TLSStreamLayer) Addr() net.Addr { return s.advertise }

// Dial opens a TLS connection to a peer, verifying its certificate against
// the CA and its address.
func (s *TLSStreamLayer) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	cfg := s.client.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		cfg.ServerName = host
	}
	return tls.DialWithDialer(d, "tcp", addr, cfg)
}
