package fsm

// Benchmarks of the state machine on its own: apply per event type, snapshot
// and restore, and heap per key. Entries are encoded before the timer starts,
// so the figures are what Raft's FSM goroutine pays per entry (decode,
// apply, history hash).
//
// The 1,000,000-key benchmarks take tens of seconds and a few GB; they run
// only when -bench names them (e.g. -bench 1M) or RAFTKMS_BENCH_LARGE=1.
//
//	go test ./fsm -run '^$' -bench Apply -benchmem
//	go test ./fsm -run '^$' -bench 1M -benchtime 1x -timeout 30m

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// benchClock is the event time of the first entry; each entry is 1 ms later.
const benchClock = int64(1_800_000_000) * 1e9

// benchState applies encoded entries to one FSM with consecutive indexes.
type benchState struct {
	tb  testing.TB
	f   *FSM
	idx uint64
	now int64
}

func newBenchState(tb testing.TB) *benchState {
	tb.Helper()
	f, err := New(Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return &benchState{tb: tb, f: f, now: benchClock}
}

// benchKeyID is a UUID-shaped key ID, as the API makes them.
func benchKeyID(i int) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[8:], uint64(i))
	binary.BigEndian.PutUint64(b[:8], 0x9e3779b97f4a7c15*uint64(i+1))
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// benchSealed stands in for material sealed under the root key: 61 bytes,
// the size keycrypto's Seal produces for 32 bytes of material.
func benchSealed(i int) []byte {
	s := make([]byte, 61)
	binary.BigEndian.PutUint64(s, uint64(i))
	s[60] = 1
	return s
}

// encode stamps an envelope as the API does (time, request ID, principal)
// and encodes it. withRequestID false leaves the request ID out, as a
// state built without idempotency entries.
func (s *benchState) encode(env *eventsv1.Envelope, withRequestID bool) []byte {
	s.now += 1e6
	env.TimeUnixNano = s.now
	env.Principal = "anonymous"
	if withRequestID {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:], uint64(s.now))
		binary.BigEndian.PutUint64(b[8:], 0xabcdef0123456789)
		env.RequestId = hex.EncodeToString(b[:])
	}
	data, err := EncodeEntry(env)
	if err != nil {
		s.tb.Fatal(err)
	}
	return data
}

func (s *benchState) apply(data []byte) *Result {
	s.idx++
	return s.f.ApplyEntry(s.idx, data)
}

func (s *benchState) mustApply(data []byte) {
	if r := s.apply(data); r.Err != nil {
		s.tb.Fatalf("apply: %v", r.Err)
	}
}

func benchCreate(i int) *eventsv1.Envelope {
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{
		KeyId: benchKeyID(i), Description: "kmsbench", Origin: OriginGenerated, SealedMaterial: benchSealed(i)}}}
}

// populate creates n keys.
func (s *benchState) populate(n int, withRequestID bool) {
	for i := 0; i < n; i++ {
		s.mustApply(s.encode(benchCreate(i), withRequestID))
	}
}

// benchKeys is how many keys the per-event benchmarks start from, so maps
// have a realistic size.
const benchKeys = 10_000

// BenchmarkApply measures ApplyEntry per event type on a state of 10,000
// keys. Events on existing keys cycle through them; pairs of events that undo
// each other (disable/enable, schedule/cancel) are measured as a pair.
func BenchmarkApply(b *testing.B) {
	cases := []struct {
		name string
		// gen makes the i-th entry to apply; it may apply set-up entries of
		// its own (outside the timer).
		gen func(s *benchState, i int) []*eventsv1.Envelope
	}{
		{"CreateKey", func(s *benchState, i int) []*eventsv1.Envelope {
			return []*eventsv1.Envelope{benchCreate(benchKeys + i)}
		}},
		{"RotateKey", func(s *benchState, i int) []*eventsv1.Envelope {
			k := i % benchKeys
			return []*eventsv1.Envelope{{Event: &eventsv1.Envelope_RotateKey{RotateKey: &eventsv1.RotateKey{
				KeyId: benchKeyID(k), RotationType: eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND,
				ExpectedCurrentVersion: uint32(1 + i/benchKeys), SealedMaterial: benchSealed(i)}}}}
		}},
		{"DisableEnableKey", func(s *benchState, i int) []*eventsv1.Envelope {
			id := benchKeyID(i % benchKeys)
			return []*eventsv1.Envelope{
				{Event: &eventsv1.Envelope_DisableKey{DisableKey: &eventsv1.DisableKey{KeyId: id}}},
				{Event: &eventsv1.Envelope_EnableKey{EnableKey: &eventsv1.EnableKey{KeyId: id}}},
			}
		}},
		{"ScheduleCancelDeletion", func(s *benchState, i int) []*eventsv1.Envelope {
			id := benchKeyID(i % benchKeys)
			return []*eventsv1.Envelope{
				{Event: &eventsv1.Envelope_ScheduleKeyDeletion{ScheduleKeyDeletion: &eventsv1.ScheduleKeyDeletion{KeyId: id, PendingWindowSeconds: 7 * 86400}}},
				{Event: &eventsv1.Envelope_CancelKeyDeletion{CancelKeyDeletion: &eventsv1.CancelKeyDeletion{KeyId: id}}},
				{Event: &eventsv1.Envelope_EnableKey{EnableKey: &eventsv1.EnableKey{KeyId: id}}},
			}
		}},
		{"EnableKeyRotation", func(s *benchState, i int) []*eventsv1.Envelope {
			return []*eventsv1.Envelope{{Event: &eventsv1.Envelope_EnableKeyRotation{EnableKeyRotation: &eventsv1.EnableKeyRotation{
				KeyId: benchKeyID(i % benchKeys), RotationPeriodSeconds: int64(90+i%100) * 86400}}}}
		}},
		{"UpdateKeyDescription", func(s *benchState, i int) []*eventsv1.Envelope {
			return []*eventsv1.Envelope{{Event: &eventsv1.Envelope_UpdateKeyDescription{UpdateKeyDescription: &eventsv1.UpdateKeyDescription{
				KeyId: benchKeyID(i % benchKeys), Description: fmt.Sprintf("description %d", i)}}}}
		}},
		{"TagKey", func(s *benchState, i int) []*eventsv1.Envelope {
			return []*eventsv1.Envelope{{Event: &eventsv1.Envelope_TagKey{TagKey: &eventsv1.TagKey{
				KeyId: benchKeyID(i % benchKeys), Tags: []*eventsv1.Tag{{Key: "team", Value: fmt.Sprint(i % 7)}}}}}}
		}},
		{"PutKeyPolicy", func(s *benchState, i int) []*eventsv1.Envelope {
			return []*eventsv1.Envelope{{Event: &eventsv1.Envelope_PutKeyPolicy{PutKeyPolicy: &eventsv1.PutKeyPolicy{
				KeyId: benchKeyID(i % benchKeys), PolicyName: "default", Policy: fmt.Sprintf(`{"Version":"2012-10-17","Id":"p%d"}`, i)}}}}
		}},
		{"CreateAlias", func(s *benchState, i int) []*eventsv1.Envelope {
			return []*eventsv1.Envelope{{Event: &eventsv1.Envelope_CreateAlias{CreateAlias: &eventsv1.CreateAlias{
				AliasName: fmt.Sprintf("alias/bench-%d", i), TargetKeyId: benchKeyID(i % benchKeys)}}}}
		}},
		{"RegisterNode", func(s *benchState, i int) []*eventsv1.Envelope {
			return []*eventsv1.Envelope{{Event: &eventsv1.Envelope_RegisterNode{RegisterNode: &eventsv1.RegisterNode{
				NodeId: fmt.Sprintf("kms%d", i%5), GrpcAddr: fmt.Sprintf("10.0.0.%d:7001", i%250), RaftAddr: "10.0.0.1:7101"}}}}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s := newBenchState(b)
			s.populate(benchKeys, false)
			entries := make([][]byte, 0, b.N)
			for i := 0; i < b.N; i++ {
				for _, env := range c.gen(s, i) {
					entries = append(entries, s.encode(env, true))
				}
			}
			perOp := len(entries) / max(b.N, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for _, data := range entries {
				if r := s.apply(data); r.Err != nil {
					b.Fatalf("apply: %v", r.Err)
				}
			}
			b.StopTimer()
			if perOp > 1 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(entries)), "ns/event")
			}
		})
	}
}

// BenchmarkApplyDuplicate is a retried request: the idempotency lookup only.
func BenchmarkApplyDuplicate(b *testing.B) {
	s := newBenchState(b)
	s.populate(benchKeys, false)
	data := s.encode(benchCreate(benchKeys), true)
	s.mustApply(data)
	b.ReportAllocs()
	for b.Loop() {
		if r := s.apply(data); !r.Duplicate {
			b.Fatal("not recognised as a duplicate")
		}
	}
}

// large reports whether the 1,000,000-key benchmarks should run: -bench
// names them, or RAFTKMS_BENCH_LARGE=1.
func large() bool {
	if os.Getenv("RAFTKMS_BENCH_LARGE") == "1" {
		return true
	}
	f := flag.Lookup("test.bench")
	return f != nil && strings.Contains(f.Value.String(), "1M")
}

const millionKeys = 1_000_000

func skipUnlessLarge(b *testing.B) {
	b.Helper()
	if !large() {
		b.Skip("1,000,000 keys: run with -bench 1M or RAFTKMS_BENCH_LARGE=1")
	}
}

// millionKeyState builds a state of 1,000,000 keys, each made by a CreateKey
// with a request ID, as through the API.
func millionKeyState(b *testing.B) *benchState {
	b.Helper()
	s := newBenchState(b)
	s.populate(millionKeys, true)
	return s
}

// BenchmarkSnapshot1M writes a snapshot of 1,000,000 keys: to memory, and to
// a file synced to disk as Raft's file snapshot store does.
func BenchmarkSnapshot1M(b *testing.B) {
	skipUnlessLarge(b)
	s := millionKeyState(b)
	b.Run("memory", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			if _, err := s.f.Snapshot().WriteTo(&buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(buf.Len())/millionKeys, "B/key")
		b.ReportMetric(float64(buf.Len())/(1<<20), "MiB")
	})
	b.Run("file", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "state.snap")
		for b.Loop() {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.f.Snapshot().WriteTo(f); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
}

// BenchmarkRestore1M restores a snapshot of 1,000,000 keys from memory.
func BenchmarkRestore1M(b *testing.B) {
	skipUnlessLarge(b)
	s := millionKeyState(b)
	var buf bytes.Buffer
	if _, err := s.f.Snapshot().WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	want := s.f.Digest()
	s = nil
	runtime.GC()
	for b.Loop() {
		f, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Restore(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if f.KeyCount() != millionKeys || f.Digest() != want {
			b.Fatalf("restored %d keys, digest mismatch %v", f.KeyCount(), f.Digest() != want)
		}
		f = nil
		runtime.GC()
		b.StartTimer()
	}
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerKey1M reports the heap a state of 1,000,000 keys (one
// version each) holds per key: applied with request IDs (as the API makes
// them: each is remembered for the idempotency window), without, and after a
// restore from a snapshot.
func BenchmarkMemoryPerKey1M(b *testing.B) {
	skipUnlessLarge(b)
	for _, c := range []struct {
		name    string
		reqIDs  bool
		restore bool
	}{
		{"applied-with-request-ids", true, false},
		{"applied-without-request-ids", false, false},
		{"restored-from-snapshot", true, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				var snap []byte
				if c.restore {
					s := newBenchState(b)
					s.populate(millionKeys, c.reqIDs)
					var buf bytes.Buffer
					if _, err := s.f.Snapshot().WriteTo(&buf); err != nil {
						b.Fatal(err)
					}
					snap = buf.Bytes()
				}
				snapLen := uint64(len(snap))
				before := heapInUse()
				var f *FSM
				if c.restore {
					var err error
					if f, err = New(Config{}); err != nil {
						b.Fatal(err)
					}
					if err := f.Restore(bytes.NewReader(snap)); err != nil {
						b.Fatal(err)
					}
					snap = nil
				} else {
					s := newBenchState(b)
					s.populate(millionKeys, c.reqIDs)
					f = s.f
				}
				after := heapInUse()
				if f.KeyCount() != millionKeys {
					b.Fatalf("%d keys", f.KeyCount())
				}
				// A restore's snapshot bytes are live in "before" and garbage
				// in "after": count from the heap without them.
				perKey := (float64(after) - float64(before-snapLen)) / millionKeys
				b.ReportMetric(perKey, "B/key")
				runtime.KeepAlive(f)
			}
		})
	}
}

// BenchmarkApplyRotateKeys is one RotateKeys entry of n on-demand rotations
// on a state of 10,000 keys, decode included; ns/rotation compares it with
// BenchmarkApply/RotateKey, one entry per rotation. The entry's apply holds
// the state's lock throughout, so ns/op is also how long it holds reads up.
func BenchmarkApplyRotateKeys(b *testing.B) {
	for _, n := range []int{64, 256, 1024} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := newBenchState(b)
			s.populate(benchKeys, false)
			entries := make([][]byte, 0, b.N)
			for i := 0; i < b.N; i++ {
				rk := &eventsv1.RotateKeys{}
				for j := 0; j < n; j++ {
					r := i*n + j
					rk.Rotations = append(rk.Rotations, &eventsv1.RotateKey{
						KeyId: benchKeyID(r % benchKeys), RotationType: eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND,
						ExpectedCurrentVersion: uint32(1 + r/benchKeys), SealedMaterial: benchSealed(r)})
				}
				entries = append(entries, s.encode(&eventsv1.Envelope{Event: &eventsv1.Envelope_RotateKeys{RotateKeys: rk}}, false))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for _, data := range entries {
				r := s.apply(data)
				if r.Err != nil {
					b.Fatalf("apply: %v", r.Err)
				}
				for _, it := range r.Items {
					if it.Err != nil {
						b.Fatalf("item: %v", it.Err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/rotation")
		})
	}
}
