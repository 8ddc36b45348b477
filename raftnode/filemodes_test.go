package raftnode

import (
	"context"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// TestDataFilesArePrivate: snapshots/ and everything in it, and raft.db,
// are the node user's alone, even in a world-readable data directory, under
// a umask of 0 and with a raft.db that was world-readable before.
func TestDataFilesArePrivate(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "raft.db"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	f, _ := fsm.New(fsm.Config{})
	n, err := New(Config{NodeID: "solo", RaftBindAddr: addr, DataDir: dir, FSM: f,
		Peers: []Peer{{ID: "solo", Addr: addr}}, HeartbeatTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		// Poll until the single node has elected itself.
		var err error
		for {
			_, err = n.Propose(ctx, &eventsv1.Envelope{TimeUnixNano: 1, RequestId: "r" + string(rune('0'+i)),
				Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{
					KeyId: "k" + string(rune('0'+i)), Origin: eventsv1.Origin_ORIGIN_GENERATED, SealedMaterial: []byte("opaque")}}})
			if err == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(10 * time.Millisecond) // polling with a deadline
		}
		if err != nil {
			t.Fatalf("propose: %v", err)
		}
		if err := n.raft.Snapshot().Error(); err != nil {
			t.Fatalf("snapshot: %v", err)
		}
	}

	snaps := filepath.Join(dir, "snapshots")
	files := 0
	err = filepath.WalkDir(snaps, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		} else {
			files++
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Fatalf("found %d snapshot files; the test took no snapshot", files)
	}
	fi, err := os.Stat(filepath.Join(dir, "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("raft.db has mode %v, want 0600", fi.Mode().Perm())
	}
}
