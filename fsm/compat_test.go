package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// The fixtures in testdata were written by the build before schema 2
// (commit d063a93): schema1.log is a log of schema-1 entries (length-prefixed)
// — a random mix of every event, then entries that the schema-2 rules would
// treat differently (one request ID for EnableKey then DisableKey, the same
// ID from another principal, alias guards that do not match, two different
// root-key checks, 60 tags, 1,100 events on one key, a stamp 30 days ahead
// followed by a DeleteKey) — and schema1.snap is that build's snapshot after
// it, schema1.digest its digest.

func readFixtureLog(t *testing.T) [][]byte {
	t.Helper()
	data, err := os.ReadFile("testdata/schema1.log")
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(data))
	var out [][]byte
	for {
		n, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e := make([]byte, n)
		if _, err := io.ReadFull(r, e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

// TestSchema1LogReplaysAsBefore: the old log gives this build the very
// snapshot bytes the old build wrote, and the old snapshot restores to the
// same digest.
func TestSchema1LogReplaysAsBefore(t *testing.T) {
	log := readFixtureLog(t)
	want, err := os.ReadFile("testdata/schema1.snap")
	if err != nil {
		t.Fatal(err)
	}
	digest, err := os.ReadFile("testdata/schema1.digest")
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range log {
		if env, err := DecodeEntry(data); err != nil || env.SchemaVersion != 1 {
			t.Fatalf("fixture entry is not schema 1: %v", err)
		}
	}
	f := applyAll(t, log)
	if got := snapshotBytes(t, f); !bytes.Equal(got, want) {
		t.Fatalf("replaying the schema-1 log gives another snapshot (%d bytes, the old build wrote %d)", len(got), len(want))
	}
	d := f.Digest()
	if hex.EncodeToString(d[:]) != strings.TrimSpace(string(digest)) {
		t.Fatalf("digest %x, the old build had %s", d, digest)
	}
	r, _ := New(Config{})
	if err := r.Restore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if r.Digest() != d || !bytes.Equal(snapshotBytes(t, r), want) {
		t.Fatal("the old snapshot restores to another state")
	}
	if c, _ := r.RootKeyCheck(); c != nil {
		t.Fatal("schema-1 entries set a root-key check")
	}
}

// TestSchema1RulesUnchanged spells out, entry by entry, that schema-1 entries
// keep the old rules wherever schema 2 changed them.
func TestSchema1RulesUnchanged(t *testing.T) {
	h := newHarness(t)
	old := func(env *eventsv1.Envelope) *Result { h.t.Helper(); return h.apply(schema1(env)) }

	// Request IDs: raw, unscoped, unbound.
	h.ok(createKey("k"))
	h.ok(createKey("k2"))
	if r := old(req(enable("k"), "alice", "same", "fp-enable")); r.Err != nil || r.Duplicate {
		t.Fatalf("first: %+v", r)
	}
	if r := old(req(disable("k"), "alice", "same", "fp-disable")); !r.Duplicate || r.Err != nil || h.state("k") != stEnabled {
		t.Fatalf("schema 1 same ID, other request: %+v, state %s", r, stateName(h.state("k")))
	}
	if r := old(req(createKey("bobs"), "bob", "same", "")); !r.Duplicate || r.KeyID != "k" {
		t.Fatalf("schema 1 same ID, other principal: %+v", r)
	}
	// A schema-2 entry with the same ID is a request of its own: the old
	// entry is not scoped to anyone, so it answers nobody.
	if r := h.apply(req(disable("k"), "alice", "same", "fp-disable")); r.Duplicate || r.Err != nil {
		t.Fatalf("schema 2 after schema 1 under one ID: %+v", r)
	}

	// Alias guards are ignored.
	h.ok(ev(&eventsv1.CreateAlias{AliasName: "alias/x", TargetKeyId: "k"}))
	if r := old(ev(&eventsv1.UpdateAlias{AliasName: "alias/x", TargetKeyId: "k2", ExpectedTargetKeyId: "nope"})); r.Err != nil {
		t.Fatalf("schema 1 update alias: %v", r.Err)
	}
	// Root-key checks are ignored.
	old(ev(&eventsv1.RegisterNode{NodeId: "n1", RootKeyCheck: []byte("A")}))
	old(ev(&eventsv1.RegisterNode{NodeId: "n2", RootKeyCheck: []byte("B")}))
	if c, _ := h.f.RootKeyCheck(); c != nil {
		t.Fatal("schema 1 set the root-key check")
	}
	// Tags and history are unbounded.
	tags := make([]*eventsv1.Tag, 60)
	for i := range tags {
		tags[i] = &eventsv1.Tag{Key: fmt.Sprint("t", i)}
	}
	if r := old(ev(&eventsv1.TagKey{KeyId: "k2", Tags: tags})); r.Err != nil {
		t.Fatalf("schema 1 60 tags: %v", r.Err)
	}
	for i := range MaxHistory + 10 {
		old(ev(&eventsv1.TagKey{KeyId: "k2", Tags: []*eventsv1.Tag{{Key: "n", Value: fmt.Sprint(i)}}}))
	}
	if k := h.key("k2"); len(k.History) < MaxHistory+10 || k.HistoryDropped != 0 {
		t.Fatalf("schema 1 history trimmed to %d", len(k.History))
	}
	// The clock follows a far-future stamp all the way, and a deletion
	// then applies at once.
	h.ok(schedule("k", 7*day))
	at := h.key("k").DeletionAt
	far := at + day*sec
	jump := ev(&eventsv1.RegisterNode{NodeId: "n0"})
	jump.TimeUnixNano = far
	old(jump)
	if h.f.Clock() != far {
		t.Fatalf("schema 1 clock %d, want %d", h.f.Clock(), far)
	}
	if r := old(deleteKey("k", at)); r.Err != nil || h.state("k") != stDeleted {
		t.Fatalf("schema 1 delete after the jump: %v", r.Err)
	}
	// Over-long request IDs are accepted as they were.
	if r := old(req(createKey("long"), "p", strings.Repeat("r", 4*maxRequestIDBytes), "")); r.Err != nil {
		t.Fatalf("schema 1 long request ID: %v", r.Err)
	}
}
