package raftnode

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/raftkms/raftkms/fsm"
)

// snapshotMagic starts every snapshot this package writes. The header also
// carries the index of the last entry the state machine consumed, which
// raft's Restore does not tell the FSM.
var snapshotMagic = [8]byte{'R', 'K', 'M', 'S', 'N', 'A', 'P', '1'}

const snapshotHeaderSize = 16

// fsmAdapter presents the state machine to raft. It also tracks which index
// the state machine has really consumed: raft's AppliedIndex runs ahead of
// the FSM by whatever is queued to the FSM goroutine, and a linearizable read
// must wait for the FSM itself.
type fsmAdapter struct {
	f        *fsm.FSM
	applied  atomic.Uint64 // last command/configuration entry consumed, or the restored snapshot's
	restores atomic.Uint64 // snapshots restored since start

	mu     sync.Mutex
	waitCh chan struct{} // closed on the next advance; nil when nobody waits

	// restored, when a node starts from a saved snapshot (Config.Restore),
	// checks the first restore against it: raft restores the snapshot
	// before it applies any entry, so the state then is the saved one.
	restored *Backup
	logger   hclog.Logger
}

var (
	_ raft.FSM                = (*fsmAdapter)(nil)
	_ raft.ConfigurationStore = (*fsmAdapter)(nil)
)

// Apply is called by raft for LogCommand entries only.
func (a *fsmAdapter) Apply(l *raft.Log) interface{} {
	res := a.f.ApplyEntry(l.Index, l.Data)
	a.advance(l.Index)
	return res
}

// StoreConfiguration is called for configuration entries; the FSM has no use
// for them, but they count as consumed.
func (a *fsmAdapter) StoreConfiguration(index uint64, _ raft.Configuration) {
	a.advance(index)
}

// Snapshot runs on the FSM goroutine, so applied matches the captured state.
func (a *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: a.f.Snapshot(), index: a.applied.Load()}, nil
}

// Restore replaces the state with a snapshot written by fsmSnapshot.Persist.
// raft closes rc.
func (a *fsmAdapter) Restore(rc io.ReadCloser) error {
	var hdr [snapshotHeaderSize]byte
	if _, err := io.ReadFull(rc, hdr[:]); err != nil {
		return fmt.Errorf("raftnode: snapshot header: %w", err)
	}
	if [8]byte(hdr[:8]) != snapshotMagic {
		return fmt.Errorf("raftnode: snapshot has an unknown header %q", hdr[:8])
	}
	if err := a.f.RestoreAt(rc, binary.BigEndian.Uint64(hdr[8:])); err != nil {
		return err
	}
	if b := a.restored; b != nil && a.restores.Load() == 0 {
		d := a.f.Digest()
		if !bytes.Equal(d[:], b.Info.StateDigest) {
			return fmt.Errorf("%w: the restored state's digest is %x, the snapshot file names %x", ErrBadBackup, d, b.Info.StateDigest)
		}
		a.logger.Info("restored the saved snapshot", "index", b.Info.Index, "term", b.Info.Term,
			"state_digest", hex.EncodeToString(d[:]))
	}
	a.restores.Add(1)
	a.advance(binary.BigEndian.Uint64(hdr[8:]))
	return nil
}

func (a *fsmAdapter) advance(index uint64) {
	a.applied.Store(index)
	a.mu.Lock()
	if a.waitCh != nil {
		close(a.waitCh)
		a.waitCh = nil
	}
	a.mu.Unlock()
}

// changed returns a channel closed at the next advance.
func (a *fsmAdapter) changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waitCh == nil {
		a.waitCh = make(chan struct{})
	}
	return a.waitCh
}

// fsmSnapshot is a point-in-time capture; the state machine's keys are
// copy-on-write, so writing it out does not hold up Apply.
type fsmSnapshot struct {
	snap  *fsm.Snapshot
	index uint64
}

// Persist writes the header and the state; raft calls it off the FSM
// goroutine.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	var hdr [snapshotHeaderSize]byte
	copy(hdr[:8], snapshotMagic[:])
	binary.BigEndian.PutUint64(hdr[8:], s.index)
	if _, err := sink.Write(hdr[:]); err != nil {
		sink.Cancel()
		return err
	}
	if _, err := s.snap.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release drops the capture; there is nothing to free.
func (s *fsmSnapshot) Release() { s.snap = nil }
