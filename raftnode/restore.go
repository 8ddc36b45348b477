package raftnode

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/raft"
	"github.com/raftkms/raftkms/fsm"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"google.golang.org/protobuf/encoding/protodelim"
)

// Disaster recovery. A saved snapshot (kmsctl cluster snapshot save) is a
// file: backupMagic, one length-delimited SnapshotInfo (index, term,
// StateDigest, size), then the state machine's snapshot bytes, whose SHA-256
// is the StateDigest. Key material in it is sealed under the root key, as it
// is in the log and in Raft's own snapshots.
//
// Restoring starts a new cluster from it: every bootstrapping node writes the
// saved state into its empty snapshot store as a snapshot at the saved index
// and term, with the new cluster's voters as its configuration, and starts
// Raft on it. So every restored node starts with the saved state (the saved
// StateDigest) before it applies anything new, and the first entries of the
// new cluster follow the saved index.

// backupMagic starts every snapshot file.
var backupMagic = [8]byte{'R', 'K', 'M', 'S', 'B', 'A', 'K', '1'}

// ErrBadBackup is returned for a snapshot file that is not one, or is
// damaged (its bytes do not hash to the digest it names).
var ErrBadBackup = errors.New("raftnode: not a valid raftkms snapshot file")

// ErrRestoreNotEmpty refuses --restore on a node whose data directory already
// holds Raft state: restoring never overwrites a cluster.
var ErrRestoreNotEmpty = errors.New("raftnode: refusing to restore: the data directory already holds Raft state (restore only onto empty data directories)")

// WriteBackupHeader starts a snapshot file: the magic and info. The
// snapshot bytes follow.
func WriteBackupHeader(w io.Writer, info *clusterv1.SnapshotInfo) error {
	if _, err := w.Write(backupMagic[:]); err != nil {
		return err
	}
	_, err := protodelim.MarshalTo(w, info)
	return err
}

// Backup is a snapshot file checked for restoring: its stream decodes as a
// whole state whose digest is the one the file names.
type Backup struct {
	path   string
	offset int64 // where the snapshot bytes start
	// Info is the file's header.
	Info *clusterv1.SnapshotInfo
	// RootKeyCheck and RootKeyID are the root-key check value and ID the
	// saved state records (empty if it records none); a node whose root
	// key does not match must not restore it.
	RootKeyCheck []byte
	RootKeyID    string
}

// countingReader counts what bufio has taken from the file.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// OpenBackup reads and checks a snapshot file: the header, that the bytes
// decode into a state, and that they hash to the digest the header names.
func OpenBackup(path string) (*Backup, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("raftnode: open snapshot file: %w", err)
	}
	defer f.Close()
	cr := &countingReader{r: f}
	br := bufio.NewReader(cr)
	var magic [8]byte
	if _, err := io.ReadFull(br, magic[:]); err != nil || magic != backupMagic {
		return nil, fmt.Errorf("%w: %s does not start with a raftkms snapshot header", ErrBadBackup, path)
	}
	info := &clusterv1.SnapshotInfo{}
	if err := (protodelim.UnmarshalOptions{MaxSize: 1 << 20}).UnmarshalFrom(br, info); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadBackup, err)
	}
	if info.Index == 0 || info.Term == 0 || len(info.StateDigest) != sha256.Size {
		return nil, fmt.Errorf("%w: header without index, term or digest", ErrBadBackup)
	}
	offset := cr.n - int64(br.Buffered())
	h := sha256.New()
	scratch, err := fsm.New(fsm.Config{})
	if err != nil {
		return nil, err
	}
	body := io.TeeReader(io.LimitReader(br, int64(info.Size)), h)
	if err := scratch.Restore(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadBackup, err)
	}
	if n, _ := br.Read(make([]byte, 1)); n != 0 {
		return nil, fmt.Errorf("%w: bytes after the snapshot", ErrBadBackup)
	}
	if sum := h.Sum(nil); !bytes.Equal(sum, info.StateDigest) {
		return nil, fmt.Errorf("%w: the snapshot bytes hash to %x, the header names %x", ErrBadBackup, sum, info.StateDigest)
	}
	if d := scratch.Digest(); !bytes.Equal(d[:], info.StateDigest) {
		return nil, fmt.Errorf("%w: the restored state's digest is %x, the header names %x", ErrBadBackup, d, info.StateDigest)
	}
	check, id := scratch.RootKeyCheck()
	return &Backup{path: path, offset: offset, Info: info, RootKeyCheck: check, RootKeyID: id}, nil
}

// restoreInto writes the backup into an empty node's stores as a snapshot at
// the saved index and term whose configuration is the bootstrap voters, and
// sets the stored term to the saved one, so that the new cluster's terms go
// on rising from it (a node's log must never hold a lower term after a
// higher one).
func (b *Backup) restoreInto(cfg Config, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) error {
	var c raft.Configuration
	for _, p := range cfg.Peers {
		c.Servers = append(c.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	f, err := os.Open(b.path)
	if err != nil {
		return fmt.Errorf("raftnode: open snapshot file: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(b.offset, io.SeekStart); err != nil {
		return err
	}
	sink, err := snaps.Create(raft.SnapshotVersionMax, b.Info.Index, b.Info.Term, c, b.Info.Index, trans)
	if err != nil {
		return fmt.Errorf("raftnode: restore: %w", err)
	}
	var hdr [snapshotHeaderSize]byte
	copy(hdr[:8], snapshotMagic[:])
	binary.BigEndian.PutUint64(hdr[8:], b.Info.Index)
	h := sha256.New()
	_, err = sink.Write(hdr[:])
	if err == nil {
		_, err = io.Copy(io.MultiWriter(sink, h), io.LimitReader(f, int64(b.Info.Size)))
	}
	if err == nil && !bytes.Equal(h.Sum(nil), b.Info.StateDigest) {
		err = fmt.Errorf("%w: the file changed while it was restored", ErrBadBackup)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("raftnode: restore: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("raftnode: restore: %w", err)
	}
	// raft's own key for the current term in the stable store.
	if err := stable.SetUint64([]byte("CurrentTerm"), b.Info.Term); err != nil {
		return fmt.Errorf("raftnode: restore: %w", err)
	}
	return nil
}

// SnapshotMeta says which point of the log a snapshot captures.
type SnapshotMeta struct {
	ID    string // the snapshot store's ID, for OpenSnapshotID
	Index uint64
	Term  uint64
	Size  int64 // length of the state machine's bytes
}

// OpenSnapshot takes a Raft snapshot now (or, with nothing new to capture,
// uses the newest one) and opens the state machine's bytes in it: the state
// at exactly Index. The caller closes the reader.
func (n *Node) OpenSnapshot() (SnapshotMeta, io.ReadCloser, error) {
	err := n.raft.Snapshot().Error()
	if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return SnapshotMeta{}, nil, n.readErr(err)
	}
	list, err := n.snaps.List()
	if err != nil {
		return SnapshotMeta{}, nil, fmt.Errorf("raftnode: list snapshots: %w", err)
	}
	if len(list) == 0 {
		return SnapshotMeta{}, nil, errors.New("raftnode: no snapshot to open")
	}
	return n.OpenSnapshotID(list[0].ID)
}

// OpenSnapshotID opens the state machine's bytes of one stored snapshot
// again (it may have been reaped meanwhile: an error then).
func (n *Node) OpenSnapshotID(id string) (SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := n.snaps.Open(id)
	if err != nil {
		return SnapshotMeta{}, nil, fmt.Errorf("raftnode: open snapshot: %w", err)
	}
	var hdr [snapshotHeaderSize]byte
	if _, err := io.ReadFull(rc, hdr[:]); err != nil || [8]byte(hdr[:8]) != snapshotMagic {
		rc.Close()
		return SnapshotMeta{}, nil, fmt.Errorf("raftnode: snapshot %s has no raftkms header", meta.ID)
	}
	return SnapshotMeta{ID: meta.ID, Index: meta.Index, Term: meta.Term, Size: meta.Size - snapshotHeaderSize}, rc, nil
}
