package raftnode

import (
	"bufio"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// The request types of hashicorp/raft's NetworkTransport (v1.7.3's
// net_transport.go): each request is this byte, then the request in
// msgpack, then, for InstallSnapshot only, Size bytes of snapshot.
const (
	rpcAppendEntries   uint8 = 0
	rpcRequestVote     uint8 = 1
	rpcInstallSnapshot uint8 = 2
	rpcTimeoutNow      uint8 = 3
	rpcRequestPreVote  uint8 = 4
)

var rpcNames = map[uint8]string{
	rpcAppendEntries:   "AppendEntries",
	rpcRequestVote:     "RequestVote",
	rpcInstallSnapshot: "InstallSnapshot",
	rpcTimeoutNow:      "TimeoutNow",
	rpcRequestPreVote:  "RequestPreVote",
}

// maxKeptBuffer is the largest request buffer a connection keeps for the
// next request; a larger one (a big AppendEntries batch) is dropped once
// Raft has read it.
const maxKeptBuffer = 1 << 20

// ErrRPCRefused is why a guarded connection was closed: a request whose
// header names another sender than the node certificate's, of a type
// hashicorp/raft does not send, or that does not decode.
var ErrRPCRefused = errors.New("raftnode: Raft request refused")

// rpcGuard holds an accepted Raft connection to the node its certificate
// names. Raft's transport reads requests through it: before a request's
// bytes reach Raft, the guard decodes its header (with the msgpack handle
// hashicorp/raft uses) and checks that the sender ID in it is the peer's
// node ID; the bytes it consumed are then handed to Raft as they came, so
// nothing is re-encoded. A mismatch, an unknown type or an undecodable
// request closes the connection before Raft sees any of it. Writes (Raft's
// responses) go straight through.
//
// Only Raft's connection goroutine reads, so the guard needs no lock.
type rpcGuard struct {
	net.Conn
	peer   string // node ID of the peer's certificate
	logger hclog.Logger

	rec     recorder
	dec     *codec.Decoder
	pending []byte // checked request bytes Raft has not read yet
	body    int64  // snapshot bytes following a checked InstallSnapshot
	err     error  // sticky: once refused or broken, always
}

func newRPCGuard(c net.Conn, peer string, logger hclog.Logger) *rpcGuard {
	g := &rpcGuard{Conn: c, peer: peer, logger: logger}
	g.rec.r = bufio.NewReaderSize(c, 64*1024)
	// ReaderBufferSize 0 (raft's own setting): the decoder reads exactly
	// the bytes of one request, through rec, which records them.
	g.dec = codec.NewDecoder(&g.rec, &codec.MsgpackHandle{})
	return g
}

// headerOnly decodes a request's RPC header and skips the rest: raft
// encodes structs as maps and inlines the embedded RPCHeader.
type headerOnly struct {
	raft.RPCHeader
}

// snapshotHeader also takes the length of the snapshot that follows.
type snapshotHeader struct {
	raft.RPCHeader
	Size int64
}

// Read gives Raft checked bytes only.
func (g *rpcGuard) Read(p []byte) (int, error) {
	for {
		switch {
		case len(g.pending) > 0:
			n := copy(p, g.pending)
			g.pending = g.pending[n:]
			return n, nil
		case g.body > 0:
			if int64(len(p)) > g.body {
				p = p[:g.body]
			}
			n, err := g.rec.r.Read(p)
			g.body -= int64(n)
			return n, err
		case g.err != nil:
			return 0, g.err
		}
		g.err = g.next()
	}
}

// next reads and checks the next request.
func (g *rpcGuard) next() error {
	if cap(g.rec.buf) > maxKeptBuffer {
		g.rec.buf = nil
	}
	g.rec.buf = g.rec.buf[:0]
	typ, err := g.rec.ReadByte()
	if err != nil {
		return err // the peer hung up, or the link broke: no refusal
	}
	var hdr raft.RPCHeader
	switch typ {
	case rpcAppendEntries, rpcRequestVote, rpcRequestPreVote, rpcTimeoutNow:
		var req headerOnly
		err = g.dec.Decode(&req)
		hdr = req.RPCHeader
	case rpcInstallSnapshot:
		var req snapshotHeader
		err = g.dec.Decode(&req)
		hdr = req.RPCHeader
		if err == nil && req.Size < 0 {
			err = fmt.Errorf("negative snapshot size %d", req.Size)
		}
		g.body = req.Size
	default:
		return g.refuse(typ, "", fmt.Errorf("unknown request type %d", typ))
	}
	if err != nil {
		return g.refuse(typ, "", fmt.Errorf("undecodable request: %v", err))
	}
	if claimed := string(hdr.ID); claimed != g.peer {
		return g.refuse(typ, claimed, errors.New("the request's sender is not the certificate's node"))
	}
	g.pending = g.rec.buf
	return nil
}

// refuse closes the connection and says why, once (the connection ends
// with it). It names the peer, the request type and the claimed sender,
// never the request's contents.
func (g *rpcGuard) refuse(typ uint8, claimed string, why error) error {
	g.body = 0
	g.Conn.Close()
	name := rpcNames[typ]
	if name == "" {
		name = fmt.Sprintf("type %d", typ)
	}
	if len(claimed) > 128 {
		claimed = claimed[:128] + "…"
	}
	g.logger.Warn("refused a Raft request; closing the connection",
		"remote", g.Conn.RemoteAddr(), "node", g.peer, "rpc", name, "claimed_sender", claimed, "reason", why)
	return fmt.Errorf("%w: %s from node %q: %v", ErrRPCRefused, name, g.peer, why)
}

// recorder reads for the decoder and keeps every byte it consumed. It is
// an io.ByteScanner, so the decoder's one-byte look-backs are undone here
// and the record is exactly the request.
type recorder struct {
	r   *bufio.Reader
	buf []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

func (r *recorder) ReadByte() (byte, error) {
	b, err := r.r.ReadByte()
	if err == nil {
		r.buf = append(r.buf, b)
	}
	return b, err
}

func (r *recorder) UnreadByte() error {
	if len(r.buf) == 0 {
		return bufio.ErrInvalidUnreadByte
	}
	if err := r.r.UnreadByte(); err != nil {
		return err
	}
	r.buf = r.buf[:len(r.buf)-1]
	return nil
}
