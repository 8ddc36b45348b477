package raftnode

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/raftkms/raftkms/pki"
)

// uncheckedTLS is the Raft TLS layer as it was before the node checks:
// mutual TLS, handshake in Accept, no request guard. Only the benchmark
// uses it, as the baseline.
type uncheckedTLS struct {
	net.Listener
	server *tls.Config
}

func (l *uncheckedTLS) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := tls.Server(c, l.server)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func (l *uncheckedTLS) Dial(string, time.Duration) (net.Conn, error) { panic("not used") }

// BenchmarkAppendEntries measures one follower's AppendEntries throughput
// over mutual TLS on loopback (64 entries of 512 bytes per request, one
// request in flight, as raftkms's transport runs), with the request guard
// (checked) and without it (unchecked).
func BenchmarkAppendEntries(b *testing.B) {
	const entries, size = 64, 512
	for _, mode := range []string{"checked", "unchecked"} {
		b.Run(mode, func(b *testing.B) {
			p := newTestPKI(b)
			var stream StreamLayer
			if mode == "checked" {
				stream = listenTLS(b, p.layerConfig("n1"))
			} else {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				stream = &uncheckedTLS{Listener: l, server: pki.ServerConfig(p.cert("n1", true), p.pool)}
			}
			addr, _ := testServer(b, stream)
			trans := client(b, p, p.cert("n2", true))
			hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("n2"), Addr: []byte("127.0.0.1:1")}
			data := bytes.Repeat([]byte{0x5a}, size)
			req := &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 2, PrevLogEntry: 10, PrevLogTerm: 2, LeaderCommitIndex: 10}
			for i := range entries {
				req.Entries = append(req.Entries, &raft.Log{Index: uint64(11 + i), Term: 2, Type: raft.LogCommand, Data: data})
			}
			var resp raft.AppendEntriesResponse
			if err := trans.AppendEntries("n1", raft.ServerAddress(addr), req, &resp); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(entries * size)
			b.ResetTimer()
			for range b.N {
				if err := trans.AppendEntries("n1", raft.ServerAddress(addr), req, &resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
