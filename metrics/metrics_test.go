package metrics

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"github.com/raftkms/raftkms/rotation"
)

func TestNewestSnapshotSize(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "state.bin"), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := newestSnapshotSize(dir); ok {
		t.Fatal("a size from an empty store")
	}
	write("2-900-1700000000000", 10)
	write("2-1000-1700000000001", 20)
	write("10-50-1700000000002", 30) // a later term wins over a higher index (string order would not)
	write("11-60-1700000000003.tmp", 40)
	if got, ok := newestSnapshotSize(dir); !ok || got != 30 {
		t.Fatalf("newest snapshot size = %d, %v; want 30 (term 10), skipping the .tmp one", got, ok)
	}
}

type fakeRaft struct{ stats map[string]string }

func (f fakeRaft) Stats() map[string]string { return f.stats }
func (f fakeRaft) Leader() (string, string) { return "kms1", "a:1" }
func (f fakeRaft) VerifyRounds() uint64     { return 7 }
func (f fakeKeys) ForEachKey(fn func(*fsm.Key) bool) {
	for _, k := range f {
		if !fn(k) {
			return
		}
	}
}

type fakeKeys []*fsm.Key

type fakeSched struct{ st rotation.Stats }

func (f fakeSched) Stats() rotation.Stats { return f.st }
func (f fakeSched) Active() bool          { return true }

func TestNodeCollector(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := NewNodeCollector(NodeSources{
		Raft: fakeRaft{map[string]string{"state": "Leader", "term": "5", "commit_index": "42", "applied_index": "41",
			"last_contact": "0", "last_snapshot_index": "30", "fsm_pending": "1", "last_log_index": "42"}},
		Keys: fakeKeys{
			{State: eventsv1.KeyState_KEY_STATE_ENABLED, Origin: eventsv1.Origin_ORIGIN_GENERATED},
			{State: eventsv1.KeyState_KEY_STATE_ENABLED, Origin: eventsv1.Origin_ORIGIN_GENERATED},
			{State: eventsv1.KeyState_KEY_STATE_PENDING_IMPORT, Origin: eventsv1.Origin_ORIGIN_EXTERNAL},
		},
		Scheduler: fakeSched{rotation.Stats{Proposed: 3, InFlight: 2,
			Backlog: rotation.Backlog{Due: 4, Overdue: 1, OldestRotationDue: now.Add(-90 * time.Second).UnixNano()}}},
		Now: func() time.Time { return now },
	})
	want := `
# HELP raftkms_keys Keys in the replicated state by state and origin (deleted keys included).
# TYPE raftkms_keys gauge
raftkms_keys{origin="AWS_KMS",state="Enabled"} 2
raftkms_keys{origin="EXTERNAL",state="PendingImport"} 1
# HELP raftkms_raft_term Current Raft term.
# TYPE raftkms_raft_term gauge
raftkms_raft_term 5
# HELP raftkms_scheduler_oldest_overdue_rotation_seconds How long the oldest due automatic rotation has waited (0 when none is due).
# TYPE raftkms_scheduler_oldest_overdue_rotation_seconds gauge
raftkms_scheduler_oldest_overdue_rotation_seconds 90
# HELP raftkms_scheduler_due Scheduled changes (rotations, deletions, expiries) that are due and not yet done.
# TYPE raftkms_scheduler_due gauge
raftkms_scheduler_due 4
`
	// Only the zero-valued key series are filtered out of the comparison.
	got, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "raftkms_keys", "raftkms_raft_term",
		"raftkms_scheduler_oldest_overdue_rotation_seconds", "raftkms_scheduler_due")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(got), "\n") {
		if !strings.HasSuffix(l, "} 0") {
			lines = append(lines, l)
		}
	}
	for _, w := range strings.Split(strings.TrimSpace(want), "\n") {
		if !strings.Contains(strings.Join(lines, "\n"), w) {
			t.Errorf("missing %q in:\n%s", w, strings.Join(lines, "\n"))
		}
	}
	if n := testutil.CollectAndCount(c, "raftkms_raft_state"); n != 4 {
		t.Errorf("%d raftkms_raft_state series, want one per state", n)
	}
}

// pprof is served only when asked for.
func TestListenerPProf(t *testing.T) {
	reg, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		l, err := Listen(ListenerConfig{Addr: "127.0.0.1:0", Registry: reg, PProf: on})
		if err != nil {
			t.Fatal(err)
		}
		get := func(path string) int {
			resp, err := http.Get("http://" + l.Addr() + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get("/metrics"); code != http.StatusOK {
			t.Errorf("/metrics: %d", code)
		}
		want := http.StatusNotFound
		if on {
			want = http.StatusOK
		}
		if code := get("/debug/pprof/"); code != want {
			t.Errorf("pprof %v: /debug/pprof/ answered %d, want %d", on, code, want)
		}
		l.Close()
	}
}
