package raftnode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// tlsHandshakeTimeout bounds a peer's TLS handshake on accept.
const tlsHandshakeTimeout = 10 * time.Second

// tlsLayer carries Raft's traffic over mutual TLS on top of another stream
// layer: it accepts only peers whose certificate the server config verifies,
// and presents the node's own certificate when it dials.
type tlsLayer struct {
	StreamLayer
	server, client *tls.Config
}

// WrapTLS puts mutual TLS on a stream layer. server must require and verify
// client certificates; client presents this node's certificate and verifies
// peers against the cluster CA.
func WrapTLS(inner StreamLayer, server, client *tls.Config) (StreamLayer, error) {
	if server == nil || client == nil {
		return nil, errors.New("raftnode: TLS needs server and client TLS configs")
	}
	if server.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("raftnode: the Raft transport must require and verify peer certificates")
	}
	return &tlsLayer{StreamLayer: inner, server: server, client: client}, nil
}

// Accept waits for a peer and completes the TLS handshake, so a peer
// without a certificate from the cluster CA never reaches Raft.
func (l *tlsLayer) Accept() (net.Conn, error) {
	for {
		c, err := l.StreamLayer.Accept()
		if err != nil {
			return nil, err
		}
		tc := tls.Server(c, l.server)
		tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			continue
		}
		tc.SetDeadline(time.Time{})
		return tc, nil
	}
}

// Dial opens a TLS connection to a peer, verifying its certificate against
// the CA and the host it was dialled by.
func (l *tlsLayer) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := l.StreamLayer.Dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	cfg := l.client.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
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

// NewTLSStreamLayer listens on bind (TCP) and carries Raft over mutual TLS.
// advertise is the address peers reach this node at (default: bind, as
// given: kms1:7101 stays kms1:7101).
func NewTLSStreamLayer(bind, advertise string, server, client *tls.Config) (StreamLayer, error) {
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
	s, err := WrapTLS(&tcpLayer{Listener: l, advertise: advertiseAddr(advertise)}, server, client)
	if err != nil {
		l.Close()
		return nil, err
	}
	return s, nil
}
