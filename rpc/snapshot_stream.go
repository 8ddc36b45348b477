package rpc

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/raftnode"
)

// snapshotChunkSize is how much of a snapshot one SaveSnapshot message
// carries, well under gRPC's default 4 MiB message limit.
const snapshotChunkSize = 256 << 10

// snapshotOpener is what SaveSnapshot needs of the Raft node: a *raftnode.Node
// has it; rpc's in-memory test node does not, and answers Unimplemented.
type snapshotOpener interface {
	OpenSnapshot() (raftnode.SnapshotMeta, io.ReadCloser, error)
	OpenSnapshotID(id string) (raftnode.SnapshotMeta, io.ReadCloser, error)
}

// SaveSnapshot streams a consistent snapshot of this node's state: after a
// read-index round (so it holds every write acknowledged before the call),
// Raft captures the state at one index; the stream is its info, then its
// bytes. Streams do not pass the unary interceptor, so this handler
// authorizes and audits itself from the same method table.
func (s clusterService) SaveSnapshot(req *clusterv1.SaveSnapshotRequest, stream clusterv1.ClusterService_SaveSnapshotServer) (err error) {
	ctx := stream.Context()
	m, err := lookupMethod(clusterv1.ClusterService_SaveSnapshot_FullMethodName)
	if err != nil {
		return toStatus(err)
	}
	in := incomingOf(ctx)
	id := first(in.requestID)
	if checkRequestID(id) != nil || id == "" {
		id = newRequestID()
	}
	c, err := s.identify(ctx, in)
	if s.audit != nil {
		defer func() { s.audit.record(c, m, id, req, err, false) }()
	}
	if err == nil {
		err = s.authorizeMethod(c, m, req)
	}
	if err == nil {
		err = s.rootKeyErr()
	}
	if err == nil {
		err = s.readBarrier(ctx)
	}
	if err != nil {
		return toStatus(err)
	}
	opener, ok := s.node.(snapshotOpener)
	if !ok {
		return toStatus(internalErr("this node cannot stream snapshots"))
	}
	return toStatus(s.streamSnapshot(opener, stream))
}

func (s clusterService) streamSnapshot(opener snapshotOpener, stream clusterv1.ClusterService_SaveSnapshotServer) error {
	// The digest goes first in the stream, so the bytes are read twice:
	// once to hash them, once to send them.
	meta, rc, err := opener.OpenSnapshot()
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(h, rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("reading the snapshot: %w", err)
	}
	if n != meta.Size {
		return fmt.Errorf("the snapshot holds %d bytes, its metadata says %d", n, meta.Size)
	}
	_, rootID := s.fsm.RootKeyCheck()
	info := &clusterv1.SnapshotInfo{Index: meta.Index, Term: meta.Term, StateDigest: h.Sum(nil),
		Size: uint64(n), RootKeyId: rootID, NodeId: s.cfg.NodeID}
	if err := stream.Send(&clusterv1.SaveSnapshotChunk{Chunk: &clusterv1.SaveSnapshotChunk_Info{Info: info}}); err != nil {
		return err
	}
	meta2, rc, err := opener.OpenSnapshotID(meta.ID)
	if err != nil {
		// Reaped by newer snapshots in between (Raft keeps a few); a
		// retry captures a new one.
		return unavailableErr("the snapshot was replaced while it was sent (%v); retry", err)
	}
	defer rc.Close()
	if meta2.Index != meta.Index || meta2.Size != meta.Size {
		return unavailableErr("the snapshot changed while it was sent; retry")
	}
	buf := make([]byte, snapshotChunkSize)
	for {
		k, rerr := io.ReadFull(rc, buf)
		if k > 0 {
			if err := stream.Send(&clusterv1.SaveSnapshotChunk{Chunk: &clusterv1.SaveSnapshotChunk_Data{Data: buf[:k]}}); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading the snapshot: %w", rerr)
		}
	}
}
