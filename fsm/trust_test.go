package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// req sets the idempotency fields of an envelope.
func req(env *eventsv1.Envelope, principal, id, fingerprint string) *eventsv1.Envelope {
	env.Principal, env.RequestId = principal, id
	if fingerprint != "" {
		env.RequestFingerprint = []byte(fingerprint)
	}
	return env
}

// schema1 marks an envelope as written by a build before schema 2.
func schema1(env *eventsv1.Envelope) *eventsv1.Envelope {
	env.SchemaVersion = 1
	return env
}

// TestRequestIDScopedAndBound: from schema 2 on a request ID belongs to its
// principal and to one request (fingerprint).
func TestRequestIDScopedAndBound(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second *eventsv1.Envelope
		want          *Rejection // for second; nil: applies or duplicates
		duplicate     bool       // second returns first's result
		check         func(t *testing.T, h *harness)
	}{
		{name: "same principal, ID and fingerprint: the first result",
			first:  req(disable("k"), "alice", "r1", "fp-disable"),
			second: req(disable("k"), "alice", "r1", "fp-disable"), duplicate: true},
		{name: "no fingerprints on either: the first result",
			first:  req(disable("k"), "alice", "r1", ""),
			second: req(enable("k"), "alice", "r1", ""), duplicate: true,
			check: func(t *testing.T, h *harness) {
				if h.state("k") != stDisabled {
					t.Fatal("a duplicate changed the key")
				}
			}},
		{name: "enable then disable under one ID: mismatch, the key stays as the first left it",
			first:  req(enable("k"), "alice", "r1", "fp-enable"),
			second: req(disable("k"), "alice", "r1", "fp-disable"), want: ErrIdempotentParameterMismatch,
			check: func(t *testing.T, h *harness) {
				if h.state("k") != stEnabled {
					t.Fatal("the mismatched request changed the key")
				}
			}},
		{name: "fingerprint on the retry only: mismatch",
			first:  req(disable("k"), "alice", "r1", ""),
			second: req(disable("k"), "alice", "r1", "fp"), want: ErrIdempotentParameterMismatch},
		{name: "another principal with the same ID is another request",
			first:  req(createKey("alices"), "alice", "r1", "fp-create"),
			second: req(createKey("bobs"), "bob", "r1", "fp-create"),
			check: func(t *testing.T, h *harness) {
				if _, ok := h.f.Key("bobs"); !ok {
					t.Fatal("bob's CreateKey answered with alice's result")
				}
			}},
		{name: "a refusal is remembered for its principal only",
			first:  req(enable("missing"), "alice", "r1", "fp"),
			second: req(createKey("missing"), "bob", "r1", "fp"),
			check: func(t *testing.T, h *harness) {
				if _, ok := h.f.Key("missing"); !ok {
					t.Fatal("bob received alice's refusal")
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.ok(createKey("k"))
			r1 := h.apply(tc.first)
			h.now += sec
			before := h.f.Digest()
			r2 := h.apply(tc.second)
			switch {
			case tc.want != nil:
				if !errors.Is(r2.Err, tc.want) || r2.Duplicate {
					t.Fatalf("got %+v, want %v", r2, tc.want.Code)
				}
				// Nothing changes: not the key, not the clock, not the table.
				if h.f.Digest() != before {
					t.Fatal("a mismatched request ID changed the state")
				}
				// And the first request is still remembered as it was.
				again := h.apply(tc.first)
				if !again.Duplicate || fmt.Sprint(again.Err) != fmt.Sprint(r1.Err) || again.KeyID != r1.KeyID {
					t.Fatalf("first request after the mismatch: %+v, was %+v", again, r1)
				}
			case tc.duplicate:
				if !r2.Duplicate || fmt.Sprint(r2.Err) != fmt.Sprint(r1.Err) || r2.KeyID != r1.KeyID || r2.Version != r1.Version {
					t.Fatalf("duplicate %+v, first %+v", r2, r1)
				}
				if h.f.Digest() != before {
					t.Fatal("a duplicate changed the state")
				}
			default:
				if r2.Duplicate || r2.Err != nil {
					t.Fatalf("second request %+v, want applied", r2)
				}
			}
			if tc.check != nil {
				tc.check(t, h)
			}
			// A restored state has the same table: the same answers follow.
			restored := restoreCopy(t, h.f)
			if restored.Digest() != h.f.Digest() {
				t.Fatal("restore changed the digest")
			}
			data, _ := EncodeEntry(tc.second)
			a, b := h.f.ApplyEntry(h.idx+1, data), restored.ApplyEntry(h.idx+1, data)
			if fmt.Sprint(a.Err) != fmt.Sprint(b.Err) || a.Duplicate != b.Duplicate || a.KeyID != b.KeyID {
				t.Fatalf("after restore: %+v, original: %+v", b, a)
			}
		})
	}
}

func restoreCopy(t *testing.T, f *FSM) *FSM {
	t.Helper()
	n, err := New(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Restore(bytes.NewReader(snapshotBytes(t, f))); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestAliasGuards(t *testing.T) {
	setup := []*eventsv1.Envelope{createKey("key-a"), createKey("key-b"), createKey("key-c"),
		ev(&eventsv1.CreateAlias{AliasName: "alias/x", TargetKeyId: "key-a"})}
	update := func(expected string) *eventsv1.Envelope {
		return ev(&eventsv1.UpdateAlias{AliasName: "alias/x", TargetKeyId: "key-b", ExpectedTargetKeyId: expected})
	}
	del := func(expected string) *eventsv1.Envelope {
		return ev(&eventsv1.DeleteAlias{AliasName: "alias/x", ExpectedTargetKeyId: expected})
	}
	target := func(want string) func(t *testing.T, h *harness) {
		return func(t *testing.T, h *harness) {
			t.Helper()
			k, err := h.f.ResolveKey("alias/x")
			switch {
			case want == "" && err == nil:
				t.Fatalf("alias/x still points to %s", k.ID)
			case want != "" && (err != nil || k.ID != want):
				t.Fatalf("alias/x: %v %v, want %s", k, err, want)
			}
		}
	}
	runCases(t, []transitionCase{
		{name: "update with the current target", setup: setup, event: update("key-a"), check: target("key-b")},
		{name: "update without a guard", setup: setup, event: update(""), check: target("key-b")},
		{name: "update after the alias moved", setup: setup, event: update("key-c"), want: ErrAliasTargetChanged},
		{name: "delete with the current target", setup: setup, event: del("key-a"), check: target("")},
		{name: "delete without a guard", setup: setup, event: del(""), check: target("")},
		{name: "delete after the alias moved", setup: setup, event: del("key-c"), want: ErrAliasTargetChanged},
		{name: "missing alias is still not found", setup: setup[:3], event: update("key-a"), want: ErrNotFound},
		{name: "schema 1 ignores the guard (update)", setup: setup, event: schema1(update("key-c")), check: target("key-b")},
		{name: "schema 1 ignores the guard (delete)", setup: setup, event: schema1(del("key-c")), check: target("")},
	})
	// The refusal names neither key beyond the one the caller expected.
	h := newHarness(t)
	for _, e := range setup {
		h.ok(e)
	}
	if r := h.apply(update("key-c")); r.Err == nil || strings.Contains(r.Err.Error(), "key-a") {
		t.Fatalf("refusal %v reveals the current target", r.Err)
	}
}

// TestClockStepCap: one far-future stamp moves the state clock by at most
// MaxClockStep, and nothing time-driven falls due early because of it.
func TestClockStepCap(t *testing.T) {
	h := newHarness(t)
	start := h.f.Clock()
	far := start + 30*day*sec

	h.ok(createKey("doomed"))
	h.ok(schedule("doomed", 7*day))
	deletionAt := h.key("doomed").DeletionAt
	h.ok(createKey("rotating"))
	h.ok(enableRot("rotating", day))
	h.ok(createExternal("ext"))
	h.ok(importParams("ext", "tok"))
	validTo := h.now + 2*3600*sec
	h.ok(importMat("ext", "tok", existing, 1, "fp", validTo))
	h.ok(importParams("ext", "tok2")) // expires in a day
	clock := h.f.Clock()

	// A far-future stamp on any entry moves the clock by MaxClockStep.
	jump := ev(&eventsv1.TagKey{KeyId: "rotating", Tags: []*eventsv1.Tag{{Key: "skew", Value: "ahead"}}})
	jump.TimeUnixNano = far
	h.ok(jump)
	if got := h.f.Clock(); got != clock+int64(MaxClockStep) {
		t.Fatalf("clock moved %v, want %v", got-clock, MaxClockStep)
	}
	// Each of these, stamped far ahead too, finds nothing due.
	stamped := func(env *eventsv1.Envelope) *eventsv1.Envelope { env.TimeUnixNano = far; return env }
	h.refused(stamped(deleteKey("doomed", deletionAt)), ErrConflict)
	h.refused(stamped(rotate("rotating", automatic, 1)), ErrConflict)
	h.refused(stamped(ev(&eventsv1.ExpireKeyMaterial{KeyId: "ext", ExpectedValidToUnixNano: validTo})), ErrConflict)
	// The import token made a moment ago is still valid.
	h.ok(stamped(importMat("ext", "tok2", newMat, 2, "fp2", 0)))
	// A waiting period runs from the capped time, not from the stamp.
	h.ok(createKey("later"))
	h.ok(stamped(schedule("later", 7*day)))
	if at, c := h.key("later").DeletionAt, h.f.Clock(); at != c+7*day*sec || at >= far {
		t.Fatalf("deletion at %d, clock %d, far %d", at, c, far)
	}
	if moved := h.f.Clock() - clock; moved != 6*int64(MaxClockStep) {
		t.Fatalf("clock moved %v on 6 far-future entries", moved)
	}
	// Time never goes backwards either.
	back := createKey("back")
	back.TimeUnixNano = start - day*sec
	before := h.f.Clock()
	h.ok(back)
	if h.f.Clock() != before || h.key("back").CreatedAt != before {
		t.Fatal("a stamp in the past moved the clock back")
	}
	// Catch-up entries (the leader's, with a clock its peers agree with)
	// make things due in real time.
	h.advance(deletionAt - h.f.Clock())
	h.ok(deleteKey("doomed", deletionAt))

	// The very first entry sets the clock, however far from zero.
	f, _ := New(Config{})
	data, _ := EncodeEntry(&eventsv1.Envelope{TimeUnixNano: far, Event: createKey("k").Event})
	f.ApplyEntry(1, data)
	if f.Clock() != far {
		t.Fatalf("first entry set the clock to %d, want %d", f.Clock(), far)
	}
}

func TestRootKeyCheck(t *testing.T) {
	reg := func(node, check, id string) *eventsv1.Envelope {
		var c []byte
		if check != "" {
			c = []byte(check)
		}
		return ev(&eventsv1.RegisterNode{NodeId: node, GrpcAddr: node + ":7001", RootKeyCheck: c, RootKeyId: id})
	}
	h := newHarness(t)
	if c, id := h.f.RootKeyCheck(); c != nil || id != "" {
		t.Fatalf("unset check is %x %q", c, id)
	}
	h.ok(reg("n1", "", ""))
	if c, _ := h.f.RootKeyCheck(); c != nil {
		t.Fatal("a registration without a check set one")
	}
	h.ok(reg("n1", "check-A", "rk-A"))
	h.ok(reg("n2", "check-A", "rk-A"))
	h.ok(reg("n3", "", "")) // a node that does not send one yet
	h.refused(reg("n4", "check-B", "rk-B"), ErrRootKeyMismatch)
	if _, ok := h.f.Node("n4"); ok {
		t.Fatal("a node with another root key was registered")
	}
	// Re-registering a member with another root key does not re-point it.
	h.refused(reg("n1", "check-B", "rk-B"), ErrRootKeyMismatch)
	if n, _ := h.f.Node("n1"); n.GRPCAddr != "n1:7001" {
		t.Fatalf("node n1 is %+v", n)
	}
	c, id := h.f.RootKeyCheck()
	if string(c) != "check-A" || id != "rk-A" {
		t.Fatalf("cluster check %q %q", c, id)
	}
	c[0] = 'X' // the accessor returns a copy
	if c2, _ := h.f.RootKeyCheck(); string(c2) != "check-A" {
		t.Fatal("the accessor exposed the state's bytes")
	}
	// Snapshot and restore keep it; the digest covers it.
	r := restoreCopy(t, h.f)
	if c, id := r.RootKeyCheck(); string(c) != "check-A" || id != "rk-A" || r.Digest() != h.f.Digest() {
		t.Fatalf("restored check %q %q", c, id)
	}
	other := newHarness(t)
	other.ok(reg("n1", "check-B", "rk-A"))
	mine := newHarness(t)
	mine.ok(reg("n1", "check-A", "rk-A"))
	if other.f.Digest() == mine.f.Digest() {
		t.Fatal("the digest does not cover the root-key check")
	}
	// Schema 1 entries never set or check it.
	old := newHarness(t)
	old.ok(schema1(reg("n1", "check-A", "rk-A")))
	old.ok(schema1(reg("n2", "check-B", "rk-B")))
	if c, _ := old.f.RootKeyCheck(); c != nil {
		t.Fatal("a schema 1 entry set the root-key check")
	}
}

// TestTagLimit: at most MaxTags tags per key (schema 2 on).
func TestTagLimit(t *testing.T) {
	tags := func(from, n int) []*eventsv1.Tag {
		out := make([]*eventsv1.Tag, n)
		for i := range out {
			out[i] = &eventsv1.Tag{Key: fmt.Sprintf("t%03d", from+i), Value: "v"}
		}
		return out
	}
	tagKey := func(from, n int) *eventsv1.Envelope { return ev(&eventsv1.TagKey{KeyId: "k", Tags: tags(from, n)}) }
	createWith := func(n int) *eventsv1.Envelope {
		env := createKey("k")
		env.GetCreateKey().Tags = tags(0, n)
		return env
	}
	count := func(want int) func(t *testing.T, h *harness) {
		return func(t *testing.T, h *harness) {
			if got := len(h.key("k").Tags); got != want {
				t.Fatalf("%d tags, want %d", got, want)
			}
		}
	}
	runCases(t, []transitionCase{
		{name: "create with the limit", event: createWith(MaxTags), check: count(MaxTags)},
		{name: "create over the limit", event: createWith(MaxTags + 1), want: ErrLimitExceeded},
		{name: "tag up to the limit", setup: []*eventsv1.Envelope{createWith(40)}, event: tagKey(40, 10), check: count(MaxTags)},
		{name: "tag past the limit", setup: []*eventsv1.Envelope{createWith(40)}, event: tagKey(40, 11), want: ErrLimitExceeded},
		{name: "overwriting at the limit", setup: []*eventsv1.Envelope{createWith(MaxTags)}, event: tagKey(0, MaxTags), check: count(MaxTags)},
		{name: "schema 1 has no limit", setup: []*eventsv1.Envelope{schema1(createWith(40))}, event: schema1(tagKey(40, 20)), check: count(60)},
	})
}

// TestEnvelopeBounds: over-long request IDs, principals and fingerprints
// in schema-2 entries are refused and change nothing.
func TestEnvelopeBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  *eventsv1.Envelope
	}{
		{"request ID", req(createKey("x"), "p", strings.Repeat("r", maxRequestIDBytes+1), "")},
		{"principal", req(createKey("x"), strings.Repeat("p", maxPrincipalBytes+1), "r", "")},
		{"fingerprint", req(createKey("x"), "p", "r", strings.Repeat("f", maxFingerprintBytes+1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			before := h.f.Digest()
			tc.env.TimeUnixNano = h.now + sec
			if r := h.apply(tc.env); !errors.Is(r.Err, ErrValidation) {
				t.Fatalf("got %+v", r)
			}
			if h.f.Digest() != before {
				t.Fatal("refused envelope changed the state")
			}
			h.ok(schema1(tc.env)) // the old rules had no bound
		})
	}
	h := newHarness(t)
	h.ok(req(createKey("x"), strings.Repeat("p", maxPrincipalBytes), strings.Repeat("r", maxRequestIDBytes),
		strings.Repeat("f", maxFingerprintBytes)))
}

// hotKey applies events to one key until n of them were accepted, and
// returns the entry bytes of every event in the key's chain.
func hotKey(h *harness, id string, n int, schema uint32) [][]byte {
	h.t.Helper()
	var chain [][]byte
	add := func(env *eventsv1.Envelope) {
		env.SchemaVersion = schema
		env.TimeUnixNano = h.now
		data, err := EncodeEntry(env)
		if err != nil {
			h.t.Fatal(err)
		}
		h.idx++
		if r := h.f.ApplyEntry(h.idx, data); r.Err != nil {
			h.t.Fatalf("entry %d: %v", h.idx, r.Err)
		}
		chain = append(chain, data)
		h.now += sec
	}
	c := createKey(id)
	c.Principal = "creator"
	add(c)
	for i := 1; len(chain) < n; i++ {
		if i%97 == 0 {
			r := rotate(id, onDemand, h.key(id).CurrentVersion())
			r.GetRotateKey().OnDemandLimit = 0
			add(r)
			continue
		}
		add(req(ev(&eventsv1.TagKey{KeyId: id, Tags: []*eventsv1.Tag{{Key: "hot", Value: fmt.Sprint(i)}}}),
			"looper", fmt.Sprint("tag-", id, i), ""))
	}
	return chain
}

// chainHashes is h_i = SHA-256(h_{i-1} || entry_i), h_{-1} = 0.
func chainHashes(entries [][]byte) [][32]byte {
	out := make([][32]byte, len(entries))
	var prev [32]byte
	for i, e := range entries {
		out[i] = sha256.Sum256(append(prev[:len(prev):len(prev)], e...))
		prev = out[i]
	}
	return out
}

// checkHistory checks a bounded history against the full chain of events.
func checkHistory(t *testing.T, k *Key, chain [][]byte) {
	t.Helper()
	hashes := chainHashes(chain)
	n := len(k.History)
	if uint64(n)+k.HistoryDropped != uint64(len(chain)) {
		t.Fatalf("%d retained + %d dropped, %d events", n, k.HistoryDropped, len(chain))
	}
	if k.History[0].Type != "CreateKey" || k.Creator() != "creator" || k.History[0].Hash != hashes[0] {
		t.Fatalf("first entry %+v is not the creation", k.History[0])
	}
	if k.HistoryDropped > 0 && k.HistoryDroppedHead != hashes[k.HistoryDropped] {
		t.Fatal("dropped head is not the chain head of the last dropped entry")
	}
	for i := 1; i < n; i++ {
		if k.History[i].Hash != hashes[uint64(i)+k.HistoryDropped] {
			t.Fatalf("retained entry %d does not continue the chain", i)
		}
	}
	if k.HistoryHead() != hashes[len(hashes)-1] {
		t.Fatal("history head is not the chain head")
	}
}

func TestHistoryBound(t *testing.T) {
	h := newHarness(t)
	chain := hotKey(h, "hot", 2500, SchemaVersion)
	k := h.key("hot")
	if n := len(k.History); n > MaxHistory || n < MaxHistory-historyTrimBatch {
		t.Fatalf("%d entries retained, bound %d", n, MaxHistory)
	}
	checkHistory(t, k, chain)
	rotations := 0
	for _, data := range chain {
		env, _ := DecodeEntry(data)
		if env.GetRotateKey() != nil {
			rotations++
		}
	}
	if k.CurrentVersion() != uint32(1+rotations) || rotations < 20 {
		t.Fatalf("%d versions after %d rotations", k.CurrentVersion(), rotations)
	}
	// Restore keeps the bounded history, the count and the dropped head.
	r := restoreCopy(t, h.f)
	rk, _ := r.Key("hot")
	if r.Digest() != h.f.Digest() || rk.HistoryDropped != k.HistoryDropped || rk.HistoryDroppedHead != k.HistoryDroppedHead {
		t.Fatal("restore changed the history")
	}
	checkHistory(t, rk, chain)

	// A key whose history grew under schema 1 is unbounded until its first
	// schema-2 event, which trims it; a node restored from a snapshot taken
	// before that event trims it the same way.
	old := newHarness(t)
	chain = hotKey(old, "old", MaxHistory+300, 1)
	if got := len(old.key("old").History); got != MaxHistory+300 {
		t.Fatalf("schema 1 history has %d entries, want all %d", got, MaxHistory+300)
	}
	peer := restoreCopy(t, old.f)
	next := ev(&eventsv1.TagKey{KeyId: "old", Tags: []*eventsv1.Tag{{Key: "new", Value: "rules"}}})
	next.TimeUnixNano = old.now
	data, _ := EncodeEntry(next)
	chain = append(chain, data)
	old.f.ApplyEntry(old.idx+1, data)
	peer.ApplyEntry(old.idx+1, data)
	ok, _ := old.f.Key("old")
	checkHistory(t, ok, chain)
	if len(ok.History) != MaxHistory-historyTrimBatch || old.f.Digest() != peer.Digest() {
		t.Fatalf("first schema-2 event left %d entries; digests equal %v", len(ok.History), old.f.Digest() == peer.Digest())
	}
}

// TestLargestKeyRecordRestores builds the largest key the state machine
// lets the API make (history at its bound with the longest request IDs and
// principals, MaxTags tags of AWS's largest size, a 32 KiB policy, an 8 KiB
// description, thousands of versions), and checks that its snapshot record
// restores; and that the writer refuses what the reader would refuse.
func TestLargestKeyRecordRestores(t *testing.T) {
	h := newHarness(t)
	create := createKey("big")
	ck := create.GetCreateKey()
	ck.Description = strings.Repeat("d", 8192)
	ck.Policy = `{"p":"` + strings.Repeat("x", 32*1024-8) + `"}`
	for i := range MaxTags {
		ck.Tags = append(ck.Tags, &eventsv1.Tag{Key: fmt.Sprintf("%03d", i) + strings.Repeat("k", 125), Value: strings.Repeat("v", 256)})
	}
	h.ok(req(create, strings.Repeat("P", maxPrincipalBytes), strings.Repeat("R", maxRequestIDBytes), ""))
	const versions = 5000
	for i := 1; i < versions; i++ {
		r := rotate("big", onDemand, uint32(i))
		r.GetRotateKey().OnDemandLimit = 0
		r.GetRotateKey().SealedMaterial = bytes.Repeat([]byte{byte(i)}, 128)
		h.ok(req(r, strings.Repeat("P", maxPrincipalBytes), fmt.Sprintf("%0*d", maxRequestIDBytes, i), ""))
	}
	k := h.key("big")
	if k.CurrentVersion() != versions || len(k.History) > MaxHistory || k.HistoryDropped == 0 {
		t.Fatalf("%d versions, %d history entries", k.CurrentVersion(), len(k.History))
	}
	var kr keyRecorder
	size := marshalOpts.Size(&eventsv1.SnapshotRecord{Record: &eventsv1.SnapshotRecord_Key{Key: kr.record(k)}})
	t.Logf("largest key record: %d bytes (%.1f%% of the %d a restore accepts)", size, 100*float64(size)/maxRecordSize, maxRecordSize)
	if size > maxRecordSize/10 {
		t.Fatalf("record of %d bytes leaves too little room for versions", size)
	}
	r := restoreCopy(t, h.f)
	if r.Digest() != h.f.Digest() {
		t.Fatal("restore changed the digest")
	}

	// With a limit just below that record, the writer and the reader both
	// refuse it; at the record's size both accept it.
	s := h.f.Snapshot()
	var buf bytes.Buffer
	if _, err := s.writeTo(&buf, size-1); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("writer with a smaller limit: %v", err)
	}
	buf.Reset()
	if _, err := s.writeTo(&buf, size); err != nil {
		t.Fatal(err)
	}
	n, _ := New(Config{})
	if err := n.restore(bytes.NewReader(buf.Bytes()), size-1, 0); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("reader with a smaller limit: %v", err)
	}
	if err := n.restore(bytes.NewReader(buf.Bytes()), size, 0); err != nil || n.Digest() != h.f.Digest() {
		t.Fatalf("reader at the limit: %v", err)
	}
}
