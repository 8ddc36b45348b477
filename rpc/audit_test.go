package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func auditMethods(t *testing.T) (read, write *method) {
	t.Helper()
	read, err := lookupMethod(kmsSvc + "Encrypt")
	if err != nil {
		t.Fatal(err)
	}
	write, err = lookupMethod(kmsSvc + "DisableKey")
	if err != nil {
		t.Fatal(err)
	}
	return read, write
}

// TestAuditLineIsJSON: the hand-built line is byte for byte what
// encoding/json makes of the record, whatever the strings hold.
func TestAuditLineIsJSON(t *testing.T) {
	read, write := auditMethods(t)
	a := &auditLog{node: "node1"}
	at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.FixedZone("x", 3600))
	for _, s := range []string{"", "app", `a"b`, `back\slash`, "<script>&", "tab\there", "nl\n", "ünï", "\xff\xfe", "\u2028", "spiffe://raftkms/node/1"} {
		for _, e := range []auditEntry{
			{at: at, c: caller{identity: s, via: s}, m: read, keyID: s, requestID: s},
			{at: at, c: caller{identity: s}, m: write, requestID: s, err: status.Error(codes.PermissionDenied, "AccessDeniedException: "+s), forwarded: true},
			{at: at, m: read, err: errors.New(s)},
		} {
			rec := a.recordOf(&e)
			rec.Time = e.at.UTC().Format(time.RFC3339Nano)
			want, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.appendLine(nil, &e); string(got) != string(want)+"\n" {
				t.Errorf("%q:\n got %s\nwant %s", s, got, want)
			}
		}
	}
}

// gateWriter blocks every Write until released, and keeps what it got.
type gateWriter struct {
	mu      sync.Mutex
	b       bytes.Buffer
	gate    chan struct{}
	entered chan struct{}
	fail    bool
}

func (w *gateWriter) Write(p []byte) (int, error) {
	if w.entered != nil {
		select {
		case w.entered <- struct{}{}:
		default:
		}
	}
	if w.gate != nil {
		<-w.gate
	}
	if w.fail {
		return 0, errors.New("disk full")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *gateWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *gateWriter) lines() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Count(w.b.String(), "\n")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAuditQueue: with a queue, a read's line is queued and the call goes
// on; a write's and a refusal's line are written before the call returns;
// a full queue makes calls wait (counted), never drops a line; Close
// writes what is queued.
func TestAuditQueue(t *testing.T) {
	read, write := auditMethods(t)
	w := &gateWriter{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	a := newAuditLog(w, "node1", time.Now, hclog.NewNullLogger(), 2)
	// The writer takes the first line and blocks in Write.
	a.record(caller{identity: "app"}, read, "r1", nil, nil, false)
	<-w.entered
	// Two more reads fill the queue and return at once.
	a.record(caller{identity: "app"}, read, "r2", nil, nil, false)
	a.record(caller{identity: "app"}, read, "r3", nil, nil, false)
	// A write waits for room, and then for its line.
	done := make(chan struct{})
	go func() {
		a.record(caller{identity: "app"}, write, "w1", nil, nil, false)
		close(done)
	}()
	waitFor(t, "a stall", func() bool { return a.stats().Stalls == 1 })
	select {
	case <-done:
		t.Fatal("a write returned before its audit line was written")
	default:
	}
	close(w.gate) // the sink recovers
	<-done
	if !strings.Contains(w.String(), `"request_id":"w1"`) {
		t.Fatalf("the write returned before its line was written:\n%s", w.String())
	}
	// A refusal is written before it returns too.
	a.record(caller{identity: "app"}, read, "d1", nil, status.Error(codes.PermissionDenied, "AccessDeniedException: no"), false)
	if !strings.Contains(w.String(), `"request_id":"d1"`) {
		t.Fatal("a refused call returned before its line was written")
	}
	a.record(caller{identity: "app"}, read, "r4", nil, nil, false)
	a.close()
	if n := w.lines(); n != 6 {
		t.Fatalf("%d lines written, want 6:\n%s", n, w.String())
	}
	if st := a.stats(); st.Lines != 6 || st.Stalls != 1 || st.WriteErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	// After Close, callers write their own lines.
	a.record(caller{identity: "app"}, read, "r5", nil, nil, false)
	if n := w.lines(); n != 7 {
		t.Errorf("%d lines after Close, want 7", n)
	}
}

// TestAuditWriteErrorsCounted: a sink that fails loses lines, and each
// failure is counted.
func TestAuditWriteErrorsCounted(t *testing.T) {
	read, write := auditMethods(t)
	for _, queue := range []int{0, 8} {
		a := newAuditLog(&gateWriter{fail: true}, "node1", time.Now, hclog.NewNullLogger(), queue)
		a.record(caller{identity: "app"}, write, "w1", nil, nil, false)
		a.record(caller{identity: "app"}, read, "r1", nil, nil, false)
		a.flush()
		a.close()
		if st := a.stats(); st.WriteErrors == 0 || st.Lines != 2 {
			t.Errorf("queue %d: stats %+v, want write errors counted", queue, st)
		}
	}
}
