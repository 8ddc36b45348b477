package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/raftnode"
)

// Cluster operations: disaster recovery (snapshot save; kmsd --restore
// starts a new cluster from the file).

func init() {
	register("cluster snapshot save", "Saves a consistent snapshot of the cluster's state to FILE, for kmsd --restore "+
		"(key material stays sealed under the root key).", "", snapshotSave)
	commands["cluster snapshot save"].args = []string{"FILE"}
}

// snapshotSaveDoc is what snapshot save prints.
type snapshotSaveDoc struct {
	File        string `json:"File"`
	Index       uint64 `json:"Index"`
	Term        uint64 `json:"Term"`
	StateDigest string `json:"StateDigest"`
	Size        uint64 `json:"Size"`
	RootKeyId   string `json:"RootKeyId"`
	NodeId      string `json:"NodeId"`
}

// snapshotSave streams the snapshot into a temporary file beside FILE,
// checks its bytes against the digest the node sent, and renames it into
// place only then, so FILE is a whole, checked snapshot or is not written.
func snapshotSave(e *env, p *params) (any, error) {
	path := p.args[0]
	stream, err := e.cluster().SaveSnapshot(e.ctx, &clusterv1.SaveSnapshotRequest{})
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	info := first.GetInfo()
	if info == nil {
		return nil, errors.New("the node's answer does not start with the snapshot's info")
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := raftnode.WriteBackupHeader(tmp, info); err != nil {
		return nil, err
	}
	h := sha256.New()
	w := io.MultiWriter(tmp, h)
	var n uint64
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		data := msg.GetData()
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
		n += uint64(len(data))
	}
	if n != info.Size || !bytes.Equal(h.Sum(nil), info.StateDigest) {
		return nil, fmt.Errorf("the snapshot received (%d bytes) does not match its info (%d bytes, digest %x); nothing was written to %s",
			n, info.Size, info.StateDigest, path)
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	ok = true
	return snapshotSaveDoc{File: path, Index: info.Index, Term: info.Term, StateDigest: hex.EncodeToString(info.StateDigest),
		Size: info.Size, RootKeyId: info.RootKeyId, NodeId: info.NodeId}, nil
}
