package raftnode

import (
	"bufio"
	"errors"
	"fmt"
	"io"
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

// guardBufferSize is the read buffer of a guarded connection, as large as
// raft's own: a request that fits is checked in place and not copied.
const guardBufferSize = 256 * 1024

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
	dec     *codec.Decoder // reads the stream through rec
	fast    *codec.Decoder // reads whole requests in rec.r's buffer
	pending []byte         // checked request bytes Raft has not read yet
	body    int64          // snapshot bytes following a checked InstallSnapshot
	err     error          // sticky: once refused or broken, always
}

func newRPCGuard(c net.Conn, peer string, logger hclog.Logger) *rpcGuard {
	g := &rpcGuard{Conn: c, peer: peer, logger: logger}
	g.rec.r = bufio.NewReaderSize(c, guardBufferSize)
	// ReaderBufferSize 0 (raft's own setting): the decoder reads exactly
	// the bytes of one request, through rec, which records them.
	g.dec = codec.NewDecoder(&g.rec, &codec.MsgpackHandle{})
	g.fast = codec.NewDecoderBytes(nil, &codec.MsgpackHandle{})
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

// next reads and checks the next request. Most requests are already
// whole in the read buffer: they are decoded there and handed to Raft
// without a copy. A request that is not (a large batch, or one still
// arriving) is decoded from the stream, recording the bytes it consumes.
func (g *rpcGuard) next() error {
	br := g.rec.r
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			return err // the peer hung up, or the link broke: no refusal
		}
	}
	data, _ := br.Peek(br.Buffered())
	typ := data[0]
	if !knownRPC(typ) {
		return g.refuse(typ, "", fmt.Errorf("unknown request type %d", typ))
	}
	for {
		g.fast.ResetBytes(data[1:])
		hdr, size, err := decodeHeader(g.fast, typ)
		if err == nil {
			n := 1 + g.fast.NumBytesRead()
			if err := g.admit(typ, hdr, size); err != nil {
				return err
			}
			// Valid until br is read again, which is after Raft has read it.
			g.pending = data[:n]
			br.Discard(n)
			return nil
		}
		// Not all here yet: wait for more while the buffer has room.
		if !errors.Is(err, io.EOF) || len(data) == br.Size() {
			break
		}
		if data, err = br.Peek(len(data) + 1); err != nil {
			break // the stream decode below meets the same end
		}
		data, _ = br.Peek(br.Buffered())
	}

	if cap(g.rec.buf) > maxKeptBuffer {
		g.rec.buf = nil
	}
	g.rec.buf = g.rec.buf[:0]
	if _, err := g.rec.ReadByte(); err != nil {
		return err
	}
	hdr, size, err := decodeHeader(g.dec, typ)
	if err != nil {
		var ne net.Error
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) {
			g.Conn.Close()
			return err // the link ended mid-request: nothing to refuse
		}
		return g.refuse(typ, "", fmt.Errorf("undecodable request: %v", err))
	}
	if err := g.admit(typ, hdr, size); err != nil {
		return err
	}
	g.pending = g.rec.buf
	return nil
}

func knownRPC(typ uint8) bool { return rpcNames[typ] != "" }

// decodeHeader decodes the header (and, for InstallSnapshot, the size of
// the snapshot that follows) of a request of type typ.
func decodeHeader(dec *codec.Decoder, typ uint8) (raft.RPCHeader, int64, error) {
	if typ == rpcInstallSnapshot {
		var req snapshotHeader
		err := dec.Decode(&req)
		return req.RPCHeader, req.Size, err
	}
	var req headerOnly
	err := dec.Decode(&req)
	return req.RPCHeader, 0, err
}

// admit checks a decoded request: its sender must be the peer's node.
func (g *rpcGuard) admit(typ uint8, hdr raft.RPCHeader, size int64) error {
	if size < 0 {
		return g.refuse(typ, "", fmt.Errorf("negative snapshot size %d", size))
	}
	if claimed := string(hdr.ID); claimed != g.peer {
		return g.refuse(typ, claimed, errors.New("the request's sender is not the certificate's node"))
	}
	g.body = size
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
