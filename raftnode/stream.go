package raftnode

import (
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// StreamLayer is the network Raft's transport runs over: a listener for
// peers' connections and a dialer to reach them. It mirrors raft.StreamLayer
// with plain strings, so that packages providing one (TLS, or the fault
// network of testcluster) need not import hashicorp/raft.
type StreamLayer interface {
	net.Listener
	// Dial opens a connection to the peer at addr (host:port).
	Dial(addr string, timeout time.Duration) (net.Conn, error)
}

// streamAdapter presents a StreamLayer to raft's NetworkTransport.
type streamAdapter struct {
	StreamLayer
}

func (s streamAdapter) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.StreamLayer.Dial(string(addr), timeout)
}
