package raftnode

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Modes of the node's files: they hold sealed key material and the whole
// state, for this node's user alone, whatever the data directory's mode or
// the process's umask.
const (
	privateDirMode  fs.FileMode = 0o700
	privateFileMode fs.FileMode = 0o600
)

// privateSnapshots is raft's FileSnapshotStore with private modes: raft
// makes snapshots/ and each snapshot's directory 0755 and its files
// 0666 less the umask; every Create (own snapshots and ones installed by
// the leader) and every finished snapshot puts them back to 0700 and 0600.
// snapshots/ itself is 0700 before any snapshot is written, so the files
// are never readable by others, even in the moment before their own modes
// are fixed.
type privateSnapshots struct {
	raft.SnapshotStore
	dir    string // <data dir>/snapshots
	logger hclog.Logger
}

func newPrivateSnapshots(dataDir string, retain int, logger hclog.Logger) (*privateSnapshots, error) {
	store, err := raft.NewFileSnapshotStoreWithLogger(dataDir, retain, logger)
	if err != nil {
		return nil, err
	}
	s := &privateSnapshots{SnapshotStore: store, dir: filepath.Join(dataDir, "snapshots"), logger: logger}
	if err := s.fix(); err != nil {
		return nil, err
	}
	return s, nil
}

// Create starts a snapshot with private modes.
func (s *privateSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		return nil, err
	}
	if err := s.fix(); err != nil {
		sink.Cancel()
		return nil, err
	}
	return &privateSink{SnapshotSink: sink, store: s}, nil
}

// fix sets snapshots/ and every directory under it to 0700 and every file
// to 0600.
func (s *privateSnapshots) fix() error {
	err := filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != s.dir {
				return nil // reaped meanwhile
			}
			return err
		}
		mode := privateFileMode
		if d.IsDir() {
			mode = privateDirMode
		} else if !d.Type().IsRegular() {
			return nil
		}
		return chmodIfNot(path, mode)
	})
	if err != nil {
		return fmt.Errorf("raftnode: snapshot file modes: %w", err)
	}
	return nil
}

// privateSink fixes the modes of the finished snapshot (raft writes
// meta.json on Close, and renames the directory).
type privateSink struct {
	raft.SnapshotSink
	store *privateSnapshots
}

func (k *privateSink) Close() error {
	err := k.SnapshotSink.Close()
	if ferr := k.store.fix(); ferr != nil {
		k.store.logger.Error("snapshot written with loose file modes", "error", ferr)
		err = errors.Join(err, ferr)
	}
	return err
}

// chmodIfNot sets path's permission bits to mode unless they already are.
func chmodIfNot(path string, mode fs.FileMode) error {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if fi.Mode().Perm() == mode {
		return nil
	}
	return os.Chmod(path, mode)
}
