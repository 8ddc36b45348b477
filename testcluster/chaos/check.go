package chaos

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/raftkms/raftkms/fsm"
	"github.com/raftkms/raftkms/keycrypto"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rotation"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/testcluster"
	"google.golang.org/grpc/metadata"
)

// CheckTimeout bounds porcupine's search; a history it cannot decide in
// that time fails the check as inconclusive.
const CheckTimeout = 60 * time.Second

// LinearizabilityResult is the checker's verdict on a history.
type LinearizabilityResult struct {
	Result  porcupine.CheckResult
	BadKeys []string // keys whose own history is not linearizable
	HTML    string   // the visualization, written when the verdict is not Ok
}

// CheckHistory runs porcupine on ops with the key model. When the history
// is not linearizable (or the check times out) it writes the visualization,
// with the faults as annotations, to dir/name.html.
func CheckHistory(ops []Op, faults []porcupine.Annotation, dir, name string, timeout time.Duration) (LinearizabilityResult, error) {
	model := Model()
	hist := toPorcupine(ops)
	res, info := porcupine.CheckOperationsVerbose(model, hist, timeout)
	out := LinearizabilityResult{Result: res}
	if res == porcupine.Ok {
		return out, nil
	}
	for _, part := range partitionByKey(hist) {
		if porcupine.CheckOperationsTimeout(model, part, timeout) == porcupine.Illegal {
			out.BadKeys = append(out.BadKeys, part[0].Input.(Input).Key)
		}
	}
	info.AddAnnotations(faults)
	out.HTML = filepath.Join(dir, name+".html")
	return out, porcupine.VisualizePath(model, info, out.HTML)
}

// checkLinearizable is the test's porcupine check of a run.
func checkLinearizable(t *testing.T, rec *Recorder, outDir string) {
	t.Helper()
	ops := rec.Ops()
	start := time.Now()
	res, err := CheckHistory(ops, rec.Annotations(), outDir, sanitize(t.Name()), CheckTimeout)
	if err != nil {
		t.Errorf("writing the visualization: %v", err)
	}
	switch res.Result {
	case porcupine.Ok:
		t.Logf("porcupine: %d operations on %d keys are linearizable (checked in %v)",
			len(ops), len(partitionByKey(toPorcupine(ops))), time.Since(start).Round(time.Millisecond))
	case porcupine.Unknown:
		t.Errorf("porcupine could not decide in %v; visualization: %s", CheckTimeout, res.HTML)
	default:
		for _, k := range res.BadKeys {
			t.Errorf("key %s: history is NOT linearizable:\n%s", k, formatOps(ops, k))
		}
		t.Errorf("porcupine: history is NOT linearizable; visualization: %s", res.HTML)
	}
}

func sanitize(name string) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(name)
}

// formatOps lists one key's operations in call order, for a failure message.
func formatOps(ops []Op, key string) string {
	var mine []Op
	for _, op := range ops {
		if op.In.Key == key {
			mine = append(mine, op)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].Call < mine[j].Call })
	var b strings.Builder
	for _, op := range mine {
		ret := "   never"
		if op.Return != Never {
			ret = fmt.Sprintf("%8.3fs", float64(op.Return)/1e9)
		}
		fmt.Fprintf(&b, "  %8.3fs..%s client %d node %d: %s [%s, %d attempts] %s\n",
			float64(op.Call)/1e9, ret, op.Client, op.Node, describeOp(op.In, op.Out), op.RequestID, op.Attempts, op.LastErr)
	}
	return b.String()
}

// baseRequestID maps a history entry's request ID to its operation's: the
// same, or for RotateKeyOnDemand one of its internal retries after a
// conflict ("<id>/<n>").
func baseRequestID(id string) string {
	if i := strings.IndexByte(id, '/'); i > 0 && strings.HasPrefix(id, "chaos-") {
		return id[:i]
	}
	return id
}

// checkState compares every live node's state machine with the recorded
// operations: every acknowledged write is there exactly once, nothing that
// was refused or never asked for is, versions are 1..n without gaps or
// duplicates, automatic rotations keep their period, and keys nobody
// learned about come only from creates whose outcome stayed unknown.
func checkState(t *testing.T, c *testcluster.Cluster, w *Workload, rec *Recorder) {
	t.Helper()
	ops := rec.Ops()
	byReq := map[string]Op{}
	for _, op := range ops {
		byReq[op.RequestID] = op
	}
	lost := w.LostCreates()
	auto := w.AutoKeys()
	period := w.cfg.RotationPeriod
	nodes := 0
	for i := range c.N() {
		if !c.Alive(i) {
			continue
		}
		nodes++
		f := c.FSM(i)
		seen := map[string]int{}     // operation request ID -> entries with it
		onDemand := map[string]int{} // key -> ON_DEMAND versions
		f.ForEachKey(func(k *fsm.Key) bool {
			for _, h := range k.History {
				if h.Principal == rotation.Principal {
					continue
				}
				id := baseRequestID(h.RequestID)
				seen[id]++
				op, ok := byReq[id]
				switch {
				case lost[id] && h.Type == "CreateKey":
					// A create that was never acknowledged, and took effect.
				case !ok:
					t.Errorf("node %d key %s: %s event %s was never asked for by any client", i, k.ID, h.Type, h.RequestID)
				case op.Out.Outcome == Rejected:
					t.Errorf("node %d key %s: %s %s applied, but the client was told %s", i, k.ID, h.Type, h.RequestID, op.Out.Exception)
				}
			}
			checkVersions(t, i, k, auto[k.ID], period)
			for _, v := range k.Versions {
				if v.Type == eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND {
					onDemand[k.ID]++
				}
			}
			if _, known := w.byIDLocked(k.ID); !known && !lost[k.History[0].RequestID] {
				t.Errorf("node %d: key %s exists, but no create of this run made it (request %s)", i, k.ID, k.History[0].RequestID)
			}
			return true
		})
		acked, unknown := map[string]int{}, map[string]int{}
		for _, op := range ops {
			if !op.In.Kind.Mutates() {
				continue
			}
			switch n := seen[op.RequestID]; {
			case op.Out.Outcome == OK && n != 1:
				t.Errorf("node %d: acknowledged %s of key %s (%s) is applied %d times", i, op.In.Kind, op.In.Key, op.RequestID, n)
			case n > 1:
				t.Errorf("node %d: %s of key %s (%s) is applied %d times", i, op.In.Kind, op.In.Key, op.RequestID, n)
			}
			if op.In.Kind == OpRotate {
				switch op.Out.Outcome {
				case OK:
					acked[op.In.Key]++
					checkRotation(t, i, f, op)
				case Unknown:
					unknown[op.In.Key]++
				}
			}
		}
		for _, id := range w.Keys() {
			if n := onDemand[id]; n < acked[id] || n > acked[id]+unknown[id] {
				t.Errorf("node %d key %s: %d on-demand versions for %d acknowledged and %d unknown rotations", i, id, n, acked[id], unknown[id])
			}
		}
	}
	if nodes == 0 {
		t.Errorf("no live node to check")
	}
}

func (w *Workload) byIDLocked(id string) (*keyInfo, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k, ok := w.byID[id]
	return k, ok
}

// checkRotation: an acknowledged rotation to version v is there, on demand.
func checkRotation(t *testing.T, node int, f *fsm.FSM, op Op) {
	k, ok := f.Key(op.In.Key)
	if !ok {
		t.Errorf("node %d: rotated key %s is missing", node, op.In.Key)
		return
	}
	v := k.Version(op.Out.Version)
	if v == nil || v.Type != eventsv1.RotationType_ROTATION_TYPE_ON_DEMAND {
		t.Errorf("node %d key %s: acknowledged on-demand rotation to version %d (%s) is not there", node, k.ID, op.Out.Version, op.RequestID)
	}
	for _, h := range k.History {
		if baseRequestID(h.RequestID) == op.RequestID && h.Version != op.Out.Version {
			t.Errorf("node %d key %s: rotation %s made version %d, the client was told %d", node, k.ID, op.RequestID, h.Version, op.Out.Version)
		}
	}
}

// checkVersions: versions are numbered 1..n in order, version 1 is the
// initial one, every version has material, and automatic rotations (only on
// keys with rotation on) are at least a period apart in state time.
func checkVersions(t *testing.T, node int, k *fsm.Key, auto bool, period time.Duration) {
	var enabledAt int64
	for _, h := range k.History {
		if h.Type == "EnableKeyRotation" && enabledAt == 0 {
			enabledAt = h.Time
		}
	}
	last := enabledAt
	for n, v := range k.Versions {
		if v.Number != uint32(n+1) {
			t.Errorf("node %d key %s: version %d at position %d (duplicated or missing version)", node, k.ID, v.Number, n+1)
		}
		if len(v.Sealed) == 0 {
			t.Errorf("node %d key %s: version %d has no material", node, k.ID, v.Number)
		}
		switch v.Type {
		case eventsv1.RotationType_ROTATION_TYPE_INITIAL:
			if n != 0 {
				t.Errorf("node %d key %s: version %d is INITIAL", node, k.ID, v.Number)
			}
		case eventsv1.RotationType_ROTATION_TYPE_AUTOMATIC:
			if !auto {
				t.Errorf("node %d key %s: automatic rotation to version %d of a key without rotation", node, k.ID, v.Number)
			}
			if gap := time.Duration(v.CreatedAt - last); gap < period {
				t.Errorf("node %d key %s: automatic version %d came %v after the previous automatic rotation; period %v (double rotation)",
					node, k.ID, v.Number, gap, period)
			}
			last = v.CreatedAt
		}
	}
}

// checkCiphertexts: every ciphertext made during the run decrypts, through
// the API (each on one node, in turn) and, from every live node's own
// state, with that node's copy of the key material. Keys are enabled first
// (and deletions cancelled), outside the recorded history.
func checkCiphertexts(t *testing.T, c *testcluster.Cluster, w *Workload) {
	t.Helper()
	blobs := w.Ciphertexts()
	live := liveNodes(c)
	if len(live) == 0 {
		t.Errorf("no live node to decrypt on")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for n, id := range w.Keys() {
		kms := c.KMS(live[n%len(live)])
		if _, err := kms.CancelKeyDeletion(ctx, &kmsv1.CancelKeyDeletionRequest{KeyId: id}); err != nil && classifyName(err) != ExcInvalidState {
			t.Errorf("cancel deletion of %s: %v", id, err)
		}
		if _, err := kms.EnableKey(ctx, &kmsv1.EnableKeyRequest{KeyId: id}); err != nil {
			t.Errorf("enable %s: %v", id, err)
		}
	}
	c.WaitConverged(t)
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	const par = 3
	for p := range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := p; n < len(blobs); n += par {
				b := blobs[n]
				node := live[n%len(live)]
				// Nodes have converged: a stale-ok read is as good here, and cheaper.
				rctx := metadata.AppendToOutgoingContext(ctx, rpc.MDStaleOK, "true")
				resp, err := c.KMS(node).Decrypt(rctx, &kmsv1.DecryptRequest{CiphertextBlob: b.Blob, EncryptionContext: map[string]string{"key": b.Key}})
				if err != nil || string(resp.Plaintext) != b.Plaintext {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("key %s v%d on node %d: %v", b.Key, b.Version, node, err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	for _, f := range failed {
		t.Errorf("ciphertext does not decrypt: %s", f)
	}
	for _, i := range live {
		f := c.FSM(i)
		vks := map[string]*keycrypto.VersionKey{}
		bad := 0
		for _, b := range blobs {
			name := fmt.Sprintf("%s/%d", b.Key, b.Version)
			vk, ok := vks[name]
			if !ok {
				k, found := f.Key(b.Key)
				var v *fsm.Version
				if found {
					v = k.Version(b.Version)
				}
				if v == nil {
					t.Errorf("node %d: key %s version %d of a ciphertext is missing", i, b.Key, b.Version)
					bad++
					continue
				}
				material, err := c.Root().Open(b.Key, b.Version, v.Sealed)
				if err != nil {
					t.Errorf("node %d: unseal key %s version %d: %v", i, b.Key, b.Version, err)
					continue
				}
				if vk, err = keycrypto.NewVersionKey(b.Key, b.Version, material); err != nil {
					t.Errorf("node %d: key %s version %d: %v", i, b.Key, b.Version, err)
					continue
				}
				vks[name] = vk
			}
			hdr, body, err := keycrypto.ParseCiphertext(b.Blob)
			if err == nil {
				var pt []byte
				pt, err = vk.Decrypt(hdr, body, keycrypto.CanonicalContext(map[string]string{"key": b.Key}))
				if err == nil && string(pt) != b.Plaintext {
					err = fmt.Errorf("wrong plaintext")
				}
			}
			if err != nil {
				bad++
				if bad <= 5 {
					t.Errorf("node %d: ciphertext under %s v%d does not open with the node's material: %v", i, b.Key, b.Version, err)
				}
			}
		}
	}
	t.Logf("%d ciphertexts made during the run decrypt through the API and with every live node's material", len(blobs))
}

func classifyName(err error) string {
	_, name := classify(err)
	return name
}

func liveNodes(c *testcluster.Cluster) []int {
	var out []int
	for i := range c.N() {
		if c.Alive(i) {
			out = append(out, i)
		}
	}
	return out
}
