package chaos

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// h builds hand-made histories: one op per line, on key "k".
type h []Op

func (hs h) add(client int, call, ret int64, in Input, out Output) h {
	if in.Kind != OpCreate || in.Key == "" {
		in.Key = "k"
	}
	return append(hs, Op{Client: client, In: in, Out: out, Call: call, Return: ret, Node: -1, RequestID: "r"})
}

func ok() Output                     { return Output{Outcome: OK} }
func okV(v uint32) Output            { return Output{Outcome: OK, Version: v} }
func rej(exc string) Output          { return Output{Outcome: Rejected, Exception: exc} }
func unknown() Output                { return Output{Outcome: Unknown} }
func desc(s string, v uint32) Output { return Output{Outcome: OK, State: s, Version: v} }

func in(k Kind) Input        { return Input{Kind: k} }
func decrypt(v uint32) Input { return Input{Kind: OpDecrypt, Version: v} }
func created() h             { return h{}.add(0, 0, 10, in(OpCreate), ok()) }

// TestModelRejectsIllegalHistories feeds the checker histories that a
// correct cluster can never produce, and some it can, and sees each judged
// right: the checker can fail.
func TestModelRejectsIllegalHistories(t *testing.T) {
	cases := []struct {
		name  string
		hist  h
		legal bool
	}{
		{"encrypt after an acknowledged disable", created().
			add(0, 20, 30, in(OpDisable), ok()).
			add(1, 40, 50, in(OpEncrypt), okV(1)), false},
		{"encrypt concurrent with a disable may see either", created().
			add(0, 20, 50, in(OpDisable), ok()).
			add(1, 30, 60, in(OpEncrypt), okV(1)), true},
		{"disabled exception before the disable was sent", created().
			add(1, 15, 18, in(OpEncrypt), rej(ExcDisabled)).
			add(0, 20, 30, in(OpDisable), ok()), false},
		{"decrypt fails for an acknowledged version", created().
			add(0, 20, 30, in(OpRotate), okV(2)).
			add(1, 40, 50, in(OpEncrypt), okV(2)).
			add(2, 60, 70, decrypt(2), rej(ExcInvalidCiphertext)), false},
		{"decrypt of a version that never existed may fail", created().
			add(2, 60, 70, decrypt(7), rej(ExcInvalidCiphertext)), true},
		{"a rotation appears twice", created().
			add(0, 20, 30, in(OpRotate), okV(2)).
			add(1, 40, 50, in(OpDescribe), desc(StateEnabled, 3)), false},
		{"a rotation vanishes", created().
			add(0, 20, 30, in(OpRotate), okV(2)).
			add(1, 40, 50, in(OpDescribe), desc(StateEnabled, 1)), false},
		{"two rotations report the same version", created().
			add(0, 20, 40, in(OpRotate), okV(2)).
			add(1, 25, 45, in(OpRotate), okV(2)), false},
		{"encrypt uses an old version after a rotation", created().
			add(0, 20, 30, in(OpRotate), okV(2)).
			add(1, 40, 50, in(OpEncrypt), okV(1)), false},
		{"wrong plaintext", created().
			add(1, 40, 50, decrypt(1), Output{Outcome: Corrupt}), false},
		{"key not found after it was created", created().
			add(1, 40, 50, in(OpEnable), rej("NotFoundException")), false},
		{"rotating a disabled key succeeds", created().
			add(0, 20, 30, in(OpDisable), ok()).
			add(1, 40, 50, in(OpRotate), okV(2)), false},
		{"cancel leaves the key disabled", created().
			add(0, 20, 30, in(OpSchedule), ok()).
			add(0, 40, 50, in(OpCancel), ok()).
			add(1, 60, 70, in(OpDescribe), desc(StateEnabled, 1)), false},
		{"an unknown rotation may have applied", created().
			add(0, 20, Never, in(OpRotate), unknown()).
			add(1, 40, 50, in(OpDescribe), desc(StateEnabled, 2)), true},
		{"an unknown rotation may not have applied", created().
			add(0, 20, Never, in(OpRotate), unknown()).
			add(1, 40, 50, in(OpDescribe), desc(StateEnabled, 1)), true},
		{"an unknown rotation applies at most once", created().
			add(0, 20, Never, in(OpRotate), unknown()).
			add(1, 40, 50, in(OpDescribe), desc(StateEnabled, 3)), false},
		{"an unknown rotation cannot apply before it was sent", created().
			add(1, 15, 18, in(OpDescribe), desc(StateEnabled, 2)).
			add(0, 20, Never, in(OpRotate), unknown()), false},
		{"an unknown disable is seen, then undone by an enable", created().
			add(0, 20, Never, in(OpDisable), unknown()).
			add(1, 30, 40, in(OpEncrypt), rej(ExcDisabled)).
			add(1, 50, 60, in(OpEnable), ok()).
			add(1, 70, 80, in(OpEncrypt), okV(1)), true},
		{"without automatic rotation versions do not grow", created().
			add(1, 70, 80, in(OpEncrypt), okV(2)), false},
		{"with automatic rotation versions may grow while enabled", created().
			add(0, 20, 30, in(OpEnableRotation), ok()).
			add(1, 70, 80, in(OpEncrypt), okV(3)), true},
		{"automatic rotation does not add versions to a disabled key", created().
			add(0, 20, 30, in(OpEnableRotation), ok()).
			add(0, 40, 50, in(OpDisable), ok()).
			add(1, 60, 70, in(OpDescribe), desc(StateDisabled, 1)).
			add(1, 80, 90, in(OpDescribe), desc(StateDisabled, 2)), false},
		{"automatic rotation never removes versions", created().
			add(0, 20, 30, in(OpEnableRotation), ok()).
			add(1, 40, 50, in(OpEncrypt), okV(3)).
			add(1, 60, 70, in(OpDescribe), desc(StateEnabled, 2)), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := CheckHistory(tc.hist, nil, t.TempDir(), "history", 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Result == porcupine.Ok; got != tc.legal {
				t.Fatalf("checker says %s, want legal=%v:\n%s", res.Result, tc.legal, formatOps(tc.hist, "k"))
			}
			if !tc.legal {
				if len(res.BadKeys) != 1 || res.BadKeys[0] != "k" {
					t.Fatalf("bad keys %v, want [k]", res.BadKeys)
				}
				html, err := os.ReadFile(res.HTML)
				if err != nil || !strings.Contains(string(html), "<html") {
					t.Fatalf("no visualization written at %s: %v", res.HTML, err)
				}
			}
		})
	}
}

// TestModelPartitionsByKey: a violation on one key is reported for that
// key alone, however many others are fine.
func TestModelPartitionsByKey(t *testing.T) {
	var hist h
	for _, k := range []string{"a", "b", "c"} {
		hist = append(hist, Op{In: Input{Kind: OpCreate, Key: k}, Out: ok(), Call: 0, Return: 10})
		hist = append(hist, Op{In: Input{Kind: OpRotate, Key: k}, Out: okV(2), Call: 20, Return: 30})
	}
	hist = append(hist, Op{In: Input{Kind: OpDescribe, Key: "b"}, Out: desc(StateEnabled, 1), Call: 40, Return: 50})
	res, err := CheckHistory(hist, []porcupine.Annotation{{Tag: "faults", Start: 25, Description: "kill node0"}}, t.TempDir(), "history", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != porcupine.Illegal || len(res.BadKeys) != 1 || res.BadKeys[0] != "b" {
		t.Fatalf("result %s, bad keys %v; want Illegal on b", res.Result, res.BadKeys)
	}
}
