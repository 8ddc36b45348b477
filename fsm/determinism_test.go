package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
)

// randomLog makes n encoded entries of every event type over a few keys, so
// that many are accepted and many refused. The first fifth are schema-1
// entries (a log that spans an upgrade); the schema-2 rules get reused
// request IDs with other fingerprints, alias guards, root-key checks, tag
// limits and far-future stamps to decide on.
func randomLog(t testing.TB, seed int64, n int) [][]byte {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	now := int64(1_700_000_000) * sec
	keys := []string{"k0", "k1", "k2", "k3", "x0", "x1", "a0", "h0"}
	out := make([][]byte, 0, n)
	extra := rand.New(rand.NewSource(seed + 1_000_003))
	batches := rand.New(rand.NewSource(seed + 2_000_029))
	for i := 0; i < n; i++ {
		k := keys[rng.Intn(len(keys))]
		var env *eventsv1.Envelope
		switch rng.Intn(23) {
		case 0:
			switch k[0] {
			case 'x':
				env = createExternal(k)
			case 'a': // asymmetric: every rotation of it is refused
				env = createSpec(k, "RSA_2048", "SIGN_VERIFY", originGenerated)
			case 'h': // HMAC with imported material
				env = createSpec(k, "HMAC_256", "GENERATE_VERIFY_MAC", originExternal)
			default:
				env = createKey(k)
			}
		case 1:
			env = enable(k)
		case 2:
			env = disable(k)
		case 3:
			env = schedule(k, int64(1+rng.Intn(30)))
		case 4:
			env = cancelDel(k)
		case 5:
			env = deleteKey(k, now-int64(rng.Intn(20))*sec)
		case 6:
			env = enableRot(k, int64(1+rng.Intn(20)))
		case 7:
			env = disableRot(k)
		case 8:
			env = rotate(k, onDemand, uint32(rng.Intn(4)))
		case 9:
			env = rotate(k, automatic, uint32(rng.Intn(4)))
		case 10:
			env = importParams(k, "tok")
		case 11:
			env = importMat(k, "tok", existing, uint32(1+rng.Intn(2)), fmt.Sprint("fp", rng.Intn(3)), 0)
		case 12:
			env = importMat(k, "tok", newMat, uint32(1+rng.Intn(3)), fmt.Sprint("fp", rng.Intn(3)), now+int64(rng.Intn(50))*sec)
		case 13:
			env = ev(&eventsv1.ExpireKeyMaterial{KeyId: k, ExpectedValidToUnixNano: now - int64(rng.Intn(50))*sec})
		case 14:
			env = ev(&eventsv1.DeleteImportedKeyMaterial{KeyId: k})
		case 15:
			env = ev(&eventsv1.CreateAlias{AliasName: fmt.Sprint("alias/a", rng.Intn(3)), TargetKeyId: k})
		case 16:
			env = ev(&eventsv1.UpdateAlias{AliasName: fmt.Sprint("alias/a", rng.Intn(3)), TargetKeyId: k,
				ExpectedTargetKeyId: guard(rng, keys)})
		case 17:
			env = ev(&eventsv1.DeleteAlias{AliasName: fmt.Sprint("alias/a", rng.Intn(3)), ExpectedTargetKeyId: guard(rng, keys)})
		case 18:
			tags := []*eventsv1.Tag{{Key: fmt.Sprint("t", rng.Intn(3)), Value: "v"}}
			if rng.Intn(4) == 0 { // sometimes many, to reach the tag limit
				for range 20 {
					tags = append(tags, &eventsv1.Tag{Key: fmt.Sprint("m", rng.Intn(80)), Value: "v"})
				}
			}
			env = ev(&eventsv1.TagKey{KeyId: k, Tags: tags})
		case 19:
			env = ev(&eventsv1.PutKeyPolicy{KeyId: k, Policy: fmt.Sprint(`{"n":`, rng.Intn(9), `}`)})
		case 20:
			env = ev(&eventsv1.CreateAccessKey{AccessKeyId: fmt.Sprint("AK", rng.Intn(4)), Identity: "p" + strconv.Itoa(rng.Intn(2)),
				SealedSecret: []byte(fmt.Sprint("sealed", rng.Intn(9)))})
		case 21:
			env = ev(&eventsv1.DeleteAccessKey{AccessKeyId: fmt.Sprint("AK", rng.Intn(4))})
		default:
			var check []byte
			if c := rng.Intn(3); c > 0 {
				check = []byte{byte(c)} // two root keys: the first one seen wins
			}
			env = ev(&eventsv1.RegisterNode{NodeId: fmt.Sprint("n", rng.Intn(3)), GrpcAddr: "127.0.0.1:1",
				RootKeyCheck: check, RootKeyId: fmt.Sprint("rk", check)})
		}
		// Grants and version controls, drawn from their own generator so
		// the rest of the log keeps its shape.
		if extra.Intn(6) == 0 {
			env = grantOrVersionEvent(extra, k)
		}
		// Batched rotations, from a generator of their own too.
		batch := batches.Intn(12) == 0
		if batch {
			env = randomBatch(batches, keys)
		}
		// Time mostly moves forward, sometimes backwards (skewed proposers),
		// and now and then one stamp is a day ahead.
		now += int64(rng.Intn(3000)-500) * int64(1e6)
		env.TimeUnixNano = now
		if rng.Intn(200) == 0 {
			env.TimeUnixNano = now + 86400*sec
		}
		if rng.Intn(4) > 0 {
			// Some request IDs repeat: those entries must change nothing,
			// or (schema 2, another fingerprint) be refused.
			env.RequestId = "r" + strconv.Itoa(rng.Intn(n))
			env.RequestFingerprint = []byte{byte(rng.Intn(2))}
		}
		env.Principal = "p" + strconv.Itoa(rng.Intn(2))
		if i < n/5 {
			env.SchemaVersion = 1
		}
		if batch && batches.Intn(8) > 0 {
			// Mostly as the scheduler proposes them (no request ID); the
			// others are refused as a whole.
			env.RequestId, env.RequestFingerprint = "", nil
		}
		data, err := EncodeEntry(env)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// randomBatch is a RotateKeys event of 1 to 6 rotations of random keys with
// random expected versions, so that items apply and are refused side by side.
func randomBatch(rng *rand.Rand, keys []string) *eventsv1.Envelope {
	b := &eventsv1.RotateKeys{}
	for range 1 + rng.Intn(6) {
		k := keys[rng.Intn(len(keys))]
		typ := automatic
		if rng.Intn(3) == 0 {
			typ = onDemand
		}
		v := uint32(rng.Intn(4))
		b.Rotations = append(b.Rotations, &eventsv1.RotateKey{KeyId: k, RotationType: typ, ExpectedCurrentVersion: v,
			SealedMaterial: mat(k, v+1), OnDemandLimit: 10})
	}
	return &eventsv1.Envelope{Event: &eventsv1.Envelope_RotateKeys{RotateKeys: b}}
}

// guard is an alias's expected target: none, or one of the keys.
func guard(rng *rand.Rand, keys []string) string {
	if rng.Intn(2) == 0 {
		return ""
	}
	return keys[rng.Intn(len(keys))]
}

// hotLog is randomLog with one key written after every entry: its first
// 1,200 events are schema 1 (history unbounded), the rest schema 2, so the
// log crosses both the upgrade and the history bound.
func hotLog(t testing.TB, seed int64, n int) [][]byte {
	t.Helper()
	enc := func(env *eventsv1.Envelope, schema uint32) []byte {
		env.SchemaVersion, env.TimeUnixNano = schema, 1 // clamped to the state clock
		data, err := EncodeEntry(env)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	out := [][]byte{enc(createKey("hot"), 1)}
	for i, e := range randomLog(t, seed, n) {
		schema := uint32(SchemaVersion)
		if i < 1200 {
			schema = 1
		}
		hot := ev(&eventsv1.TagKey{KeyId: "hot", Tags: []*eventsv1.Tag{{Key: "i", Value: strconv.Itoa(i)}}})
		if i%50 == 0 {
			hot = ev(&eventsv1.RotateKey{KeyId: "hot", RotationType: onDemand, ExpectedCurrentVersion: uint32(1 + i/50),
				SealedMaterial: mat("hot", uint32(2+i/50))})
		}
		out = append(out, e, enc(hot, schema))
	}
	return out
}

func applyAll(t testing.TB, log [][]byte) *FSM {
	t.Helper()
	f, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i, data := range log {
		f.ApplyEntry(uint64(i+1), data)
	}
	return f
}

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDeterminism(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		checkDeterministic(t, seed, randomLog(t, seed, 3000))
	}
	// The random log exercises every schema-2 rule.
	f, _ := New(Config{})
	seen := map[Code]int{}
	for i, data := range randomLog(t, 1, 3000) {
		var rej *Rejection
		if r := f.ApplyEntry(uint64(i+1), data); errors.As(r.Err, &rej) && !r.Duplicate {
			seen[rej.Code]++
		}
	}
	for _, c := range []Code{CodeIdempotentParameterMismatch, CodeAliasTargetChanged, CodeRootKeyMismatch, CodeLimitExceeded} {
		if seen[c] == 0 {
			t.Errorf("the random log never gives code %d: %v", c, seen)
		}
	}
}

// TestDeterminismBoundedHistory: the same, with one key's history growing
// under schema 1, trimmed by its first schema-2 event and bounded after.
func TestDeterminismBoundedHistory(t *testing.T) {
	for seed := int64(1); seed <= 2; seed++ {
		log := hotLog(t, seed, 3000)
		f := checkDeterministic(t, seed, log)
		k, _ := f.Key("hot")
		if k == nil || k.HistoryDropped == 0 || len(k.History) > MaxHistory || k.CurrentVersion() < 50 {
			t.Fatalf("seed %d: the hot key does not exercise the bound: %+v", seed, k)
		}
	}
}

// checkDeterministic: the log gives two state machines the same digest and
// snapshot bytes; a restore of the snapshot gives the same state, which
// then goes on like the original.
func checkDeterministic(t *testing.T, seed int64, log [][]byte) *FSM {
	t.Helper()
	{
		a, b := applyAll(t, log), applyAll(t, log)
		if a.Digest() != b.Digest() {
			t.Fatalf("seed %d: same log, different digests", seed)
		}
		sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
		if !bytes.Equal(sa, sb) {
			t.Fatalf("seed %d: same log, different snapshot bytes", seed)
		}
		// Snapshot then restore gives the same digest and bytes.
		c, _ := New(Config{})
		if err := c.Restore(bytes.NewReader(sa)); err != nil {
			t.Fatal(err)
		}
		if c.Digest() != a.Digest() || !bytes.Equal(snapshotBytes(t, c), sa) {
			t.Fatalf("seed %d: restore changed the state", seed)
		}
		// And the restored machine goes on exactly like the original.
		more := randomLog(t, seed+100, 500)
		for i, data := range more {
			ra := a.ApplyEntry(uint64(len(log)+i+1), data)
			rc := c.ApplyEntry(uint64(len(log)+i+1), data)
			if fmt.Sprint(ra.Err) != fmt.Sprint(rc.Err) || ra.Version != rc.Version {
				t.Fatalf("seed %d entry %d: results differ after restore", seed, i)
			}
		}
		if a.Digest() != c.Digest() {
			t.Fatalf("seed %d: diverged after restore", seed)
		}
		checkVersionsContiguous(t, a)
		return a
	}
}

func checkVersionsContiguous(t *testing.T, f *FSM) {
	t.Helper()
	accepted := 0
	f.ForEachKey(func(k *Key) bool {
		for i, v := range k.Versions {
			if v.Number != uint32(i+1) {
				t.Fatalf("key %s: version %d at position %d", k.ID, v.Number, i+1)
			}
		}
		accepted += len(k.History)
		return true
	})
	if accepted == 0 {
		t.Fatal("random log applied nothing: the test exercises nothing")
	}
}

func TestRepeatedRequestIDChangesNothing(t *testing.T) {
	h := newHarness(t)
	first := createKey("k")
	first.RequestId = "req-1"
	r1 := h.ok(first)
	before := h.f.Digest()
	h.now += 10 * sec
	// Same request ID and fingerprint (none here), even with another body:
	// the first result, no change.
	again := createKey("other")
	again.RequestId = "req-1"
	r2 := h.apply(again)
	if !r2.Duplicate || r2.Err != nil || r2.KeyID != r1.KeyID || r2.Version != r1.Version {
		t.Fatalf("duplicate result %+v, first %+v", r2, r1)
	}
	if h.f.Digest() != before {
		t.Fatal("a repeated request ID changed the state")
	}
	if _, ok := h.f.Key("other"); ok {
		t.Fatal("duplicate applied")
	}
	// A refused request is remembered as refused.
	bad := enable("missing")
	bad.RequestId = "req-2"
	h.refused(bad, ErrNotFound)
	bad2 := createKey("missing")
	bad2.RequestId = "req-2"
	if r := h.apply(bad2); !r.Duplicate || !errors.Is(r.Err, ErrNotFound) {
		t.Fatalf("refusal not remembered: %+v", r)
	}
	// The clock passing the window alone does not forget it: the ID is
	// also kept for IdempotencyEntries entries.
	h.advance(int64(DefaultIdempotencyWindow) + sec)
	jumped := createKey("jumped")
	jumped.RequestId = "req-1"
	if r := h.apply(jumped); !r.Duplicate {
		t.Fatal("a clock jump made the state machine forget a request ID")
	}
}

// TestRequestIDForgottenWhenOldInTimeAndEntries: an ID is forgotten once it
// is past the window in entry time and IdempotencyEntries entries back, and
// not before either.
func TestRequestIDForgottenWhenOldInTimeAndEntries(t *testing.T) {
	f, err := New(Config{IdempotencyEntries: 5})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, f: f, now: 1_700_000_000 * sec}
	first := createKey("k")
	first.RequestId = "req"
	h.ok(first)
	retry := func() *Result {
		again := createKey("k2")
		again.RequestId = "req"
		return h.apply(again)
	}
	// Many entries, but within the window: remembered.
	for i := range 10 {
		h.ok(ev(&eventsv1.RegisterNode{NodeId: fmt.Sprintf("n%d", i)}))
	}
	if !retry().Duplicate {
		t.Fatal("forgotten within the time window")
	}
	// Past the window, and more than 5 entries back: forgotten.
	h.advance(int64(DefaultIdempotencyWindow) + sec)
	if r := retry(); r.Duplicate || r.Err != nil {
		t.Fatalf("remembered past both bounds: %+v", r)
	}

	// However recent in time, an ID is forgotten past IdempotencyMaxEntries.
	f, err = New(Config{IdempotencyEntries: 2, IdempotencyMaxEntries: 8})
	if err != nil {
		t.Fatal(err)
	}
	h = &harness{t: t, f: f, now: 1_700_000_000 * sec}
	h.ok(first)
	for i := range 4 {
		h.ok(ev(&eventsv1.RegisterNode{NodeId: fmt.Sprintf("n%d", i)}))
	}
	if !retry().Duplicate {
		t.Fatal("forgotten within IdempotencyMaxEntries")
	}
	for i := range 8 {
		h.ok(ev(&eventsv1.RegisterNode{NodeId: fmt.Sprintf("m%d", i)}))
	}
	if r := retry(); r.Duplicate {
		t.Fatal("remembered past IdempotencyMaxEntries")
	}
	if _, err := New(Config{IdempotencyEntries: 10, IdempotencyMaxEntries: 5}); err == nil {
		t.Fatal("a cap below the floor was accepted")
	}
}

func TestRestoreRejectsDamagedSnapshots(t *testing.T) {
	f := applyAll(t, randomLog(t, 7, 400))
	good := snapshotBytes(t, f)
	victim := applyAll(t, randomLog(t, 8, 100))
	want := victim.Digest()
	for _, cut := range []int{0, 1, 5, len(good) / 2, len(good) - 1} {
		if err := victim.Restore(bytes.NewReader(good[:cut])); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/3] ^= 0xff
	_ = victim.Restore(bytes.NewReader(flipped)) // may or may not parse; must not panic
	if err := victim.Restore(bytes.NewReader(good[:len(good)-1])); err == nil {
		t.Fatal("truncated snapshot accepted")
	}
	victim2 := applyAll(t, randomLog(t, 8, 100))
	if victim2.Digest() != want {
		t.Fatal("test setup not deterministic")
	}
}

func TestCorruptOrUnknownEntriesStopLoudly(t *testing.T) {
	mustPanic := func(name string, data []byte) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: applied without stopping", name)
			}
		}()
		f, _ := New(Config{})
		f.ApplyEntry(1, data)
	}
	mustPanic("empty", nil)
	mustPanic("bad format byte", []byte{0x7f, 1, 2})
	// An envelope with no event this build knows.
	unknown, _ := EncodeEntry(&eventsv1.Envelope{TimeUnixNano: 1})
	mustPanic("unknown event", unknown)
	newer, _ := EncodeEntry(&eventsv1.Envelope{SchemaVersion: SchemaVersion + 1, Event: enable("k").Event})
	mustPanic("newer schema", newer)
	// Unless it is marked skippable.
	skip, _ := EncodeEntry(&eventsv1.Envelope{TimeUnixNano: 1, Skippable: true})
	f, _ := New(Config{})
	before := f.Digest()
	if r := f.ApplyEntry(1, skip); !r.Skipped {
		t.Fatal("skippable entry not skipped")
	}
	if f.Digest() != before {
		t.Fatal("skipped entry changed state")
	}
}

func TestHistoryHashChain(t *testing.T) {
	log := randomLog(t, 3, 1000)
	a := applyAll(t, log)
	a.ForEachKey(func(k *Key) bool {
		for i := 1; i < len(k.History); i++ {
			if k.History[i].Hash == k.History[i-1].Hash {
				t.Fatalf("key %s: chain does not advance", k.ID)
			}
		}
		return true
	})
	// Changing one entry changes the chain head of that key.
	h := newHarness(t)
	h.ok(createKey("k"))
	h.ok(disable("k"))
	head1 := h.key("k").HistoryHead()
	h2 := newHarness(t)
	h2.ok(createKey("k"))
	h2.now += sec
	h2.ok(disable("k"))
	if head1 == h2.key("k").HistoryHead() {
		t.Fatal("different events, same chain head")
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, data := range randomLog(f, 1, 30) {
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte{entryFormatV1})
	f.Add([]byte{entryFormatV1, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := DecodeEntry(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("error %v is not ErrCorruptEntry", err)
			}
			return
		}
		if fd := env.ProtoReflect().WhichOneof(eventOneof); fd == nil || env.SchemaVersion > SchemaVersion {
			return // would stop the node loudly, by design
		}
		// A decodable known event is either applied or refused; never a panic.
		fsm, _ := New(Config{})
		fsm.ApplyEntry(1, data)
		fsm.ApplyEntry(2, data)
	})
}

// The state machine must stay pure: no clock, no randomness in non-test files.
func TestNoClockOrRandomness(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, name, src, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range file.Imports {
			switch p, _ := strconv.Unquote(imp.Path.Value); p {
			case "math/rand", "math/rand/v2", "crypto/rand", "os", "net", "net/http":
				t.Errorf("%s imports %s", name, p)
			}
		}
		full, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(full, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && id.Name == "time" {
					switch x.Sel.Name {
					case "Now", "Since", "Until", "Sleep", "After", "Tick", "NewTimer", "NewTicker", "AfterFunc":
						t.Errorf("%s: calls time.%s", fset.Position(x.Pos()), x.Sel.Name)
					}
				}
			case *ast.GoStmt:
				t.Errorf("%s: starts a goroutine", fset.Position(x.Pos()))
			}
			return true
		})
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d files checked; is the test in the right directory?", checked)
	}
}

// grantOrVersionEvent is a random grant or version-control event on key k,
// with grant IDs and names from small sets so that names match, IDs
// collide and retires find (or miss) their grants.
func grantOrVersionEvent(rng *rand.Rand, k string) *eventsv1.Envelope {
	id := strings.Repeat(string(rune('a'+rng.Intn(4))), 64)
	switch rng.Intn(6) {
	case 0, 1:
		ops := [][]string{{"Decrypt"}, {"Decrypt", "Encrypt"}, {"Encrypt", "Decrypt"}}[rng.Intn(3)]
		var cons *eventsv1.GrantConstraints
		if rng.Intn(2) == 0 {
			cons = &eventsv1.GrantConstraints{EncryptionContextSubset: []*eventsv1.Tag{{Key: "t", Value: strconv.Itoa(rng.Intn(2))}}}
		}
		return evg(&eventsv1.CreateGrant{KeyId: k, GrantId: id, GrantToken: "tok" + id[:1], Name: []string{"", "n"}[rng.Intn(2)],
			GranteePrincipal: "g" + strconv.Itoa(rng.Intn(2)), Operations: ops, Constraints: cons})
	case 2:
		return evg(&eventsv1.RetireGrant{KeyId: k, GrantId: id})
	case 3:
		return evg(&eventsv1.RevokeGrant{KeyId: k, GrantId: id})
	case 4:
		return evg(&eventsv1.UpdateKeyVersionPolicy{KeyId: k, MinDecryptionVersion: uint32(rng.Intn(4))})
	}
	return evg(&eventsv1.DestroyKeyVersion{KeyId: k, Version: uint32(rng.Intn(4))})
}
