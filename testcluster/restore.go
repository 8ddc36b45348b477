package testcluster

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"testing"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/raftnode"
)

// restoreOption starts every node of an API cluster, on its first start
// only, from a saved snapshot (kmsd --restore).
type restoreOption struct {
	mu      sync.Mutex
	backup  *raftnode.Backup
	started map[int]bool
}

// take is the backup node i restores on this start: the first one only.
func (r *restoreOption) take(i int) *raftnode.Backup {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.backup == nil || r.started[i] {
		return nil
	}
	if r.started == nil {
		r.started = map[int]bool{}
	}
	r.started[i] = true
	return r.backup
}

// WithRestore makes a new cluster start from a snapshot file saved by
// SaveSnapshot (every node's data dir is new and empty).
func WithRestore(b *raftnode.Backup) APIOption {
	return func(a *apiOptions) { a.restore.backup = b }
}

// SaveSnapshot saves a consistent snapshot of the cluster's state through
// node i's SaveSnapshot stream into path, as kmsctl cluster snapshot save
// does, and returns its info.
func (c *Cluster) SaveSnapshot(t testing.TB, i int, path string) *clusterv1.SnapshotInfo {
	t.Helper()
	info, err := c.saveSnapshot(i, path)
	if err != nil {
		t.Fatalf("testcluster: SaveSnapshot via node %d: %v", i, err)
	}
	return info
}

func (c *Cluster) saveSnapshot(i int, path string) (*clusterv1.SnapshotInfo, error) {
	stream, err := c.ClusterAPI(i).SaveSnapshot(context.Background(), &clusterv1.SaveSnapshotRequest{})
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	info := first.GetInfo()
	if info == nil {
		return nil, errors.New("the stream does not start with the snapshot's info")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := raftnode.WriteBackupHeader(f, info); err != nil {
		return nil, err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return info, f.Close()
		}
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(msg.GetData()); err != nil {
			return nil, err
		}
	}
}
