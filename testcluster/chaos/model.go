package chaos

import (
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/anishathalye/porcupine"
)

// Kind is an API operation on one key.
type Kind uint8

// The operations the model knows.
const (
	OpCreate         Kind = iota + 1 // CreateKey
	OpEnable                         // EnableKey
	OpDisable                        // DisableKey
	OpRotate                         // RotateKeyOnDemand
	OpEncrypt                        // Encrypt (returns the version used)
	OpDecrypt                        // Decrypt of a ciphertext made during the run
	OpDescribe                       // DescribeKey (state and current version)
	OpSchedule                       // ScheduleKeyDeletion (a long window: it never ends in a run)
	OpCancel                         // CancelKeyDeletion
	OpEnableRotation                 // EnableKeyRotation: the scheduler may add versions from then on
)

var kindNames = map[Kind]string{
	OpCreate: "Create", OpEnable: "Enable", OpDisable: "Disable", OpRotate: "Rotate",
	OpEncrypt: "Encrypt", OpDecrypt: "Decrypt", OpDescribe: "Describe", OpSchedule: "ScheduleDeletion",
	OpCancel: "CancelDeletion", OpEnableRotation: "EnableRotation",
}

func (k Kind) String() string { return kindNames[k] }

// Mutates reports whether the operation can change the key: only those
// are kept in the history when their outcome is unknown.
func (k Kind) Mutates() bool {
	switch k {
	case OpEncrypt, OpDecrypt, OpDescribe:
		return false
	}
	return true
}

// Key states as the API spells them.
const (
	StateEnabled         = "Enabled"
	StateDisabled        = "Disabled"
	StatePendingDeletion = "PendingDeletion"
)

// Exception names the model gives a meaning to (DESIGN §7).
const (
	ExcDisabled          = "DisabledException"
	ExcInvalidState      = "KMSInvalidStateException"
	ExcConflict          = "ConflictException"
	ExcInvalidCiphertext = "InvalidCiphertextException"
)

// Input is one operation as the client sent it.
type Input struct {
	Kind    Kind
	Key     string // key ID
	Version uint32 // Decrypt: the version the ciphertext names
}

// Outcome says how an operation ended.
type Outcome uint8

const (
	// OK: the call succeeded.
	OK Outcome = iota + 1
	// Rejected: the cluster answered with a definite error (Exception).
	Rejected
	// Unknown: the call failed in a way that does not say whether it took
	// effect (Unavailable, a timeout, a dropped connection). Only mutating
	// operations are kept with this outcome; their return time is the end
	// of time, so the checker may place them anywhere after their call —
	// or after everything, which is the same as never.
	Unknown
	// Corrupt: the call succeeded with an impossible answer (a decrypt
	// that returned the wrong plaintext). Never legal.
	Corrupt
)

// Output is what the client saw.
type Output struct {
	Outcome   Outcome
	Exception string // Rejected: the AWS exception name
	Version   uint32 // OK Rotate: the new version; Encrypt: the version used; Describe: current version
	State     string // OK Describe: the key state
}

// KeyModel is the model's state of one key. It is comparable, so
// porcupine's default equality works.
type KeyModel struct {
	Created bool
	State   string
	// Version is the current version — exactly, unless Grow: then a lower
	// bound, because automatic rotations may have added versions unseen.
	Version uint32
	// Auto: automatic rotation is on, so the scheduler may add versions
	// whenever the key is enabled.
	Auto bool
	// Grow: since Version was last known exactly, the key was enabled with
	// automatic rotation on at some moment, so versions may have been added.
	Grow bool
}

// refusal maps a state that refuses crypto and rotation to the exception it
// is refused with ("" when the key is enabled).
func refusal(state string) string {
	switch state {
	case StateDisabled:
		return ExcDisabled
	case StatePendingDeletion:
		return ExcInvalidState
	}
	return ""
}

// enabled returns s in state Enabled: from now on automatic rotations may
// add versions.
func (s KeyModel) enabled() KeyModel {
	s.State = StateEnabled
	if s.Auto {
		s.Grow = true
	}
	return s
}

// observe pins the current version to v, which was seen at this instant;
// it is legal when v is the known version, or larger when rotations may
// have happened unseen.
func (s KeyModel) observe(v uint32) (bool, KeyModel) {
	if v != s.Version && !(s.Grow && v > s.Version) {
		return false, s
	}
	s.Version = v
	s.Grow = s.Auto && s.State == StateEnabled
	return true, s
}

// step is the sequential specification of one key.
func step(s KeyModel, in Input, out Output) (bool, KeyModel) {
	if out.Outcome == Corrupt {
		return false, s
	}
	if in.Kind == OpCreate {
		// Only creates whose key ID came back are in a history.
		if s.Created || out.Outcome != OK {
			return false, s
		}
		return true, KeyModel{Created: true, State: StateEnabled, Version: 1}
	}
	if !s.Created {
		return false, s
	}
	unknown := out.Outcome == Unknown
	rejectedAs := func(exc string) bool { return out.Outcome == Rejected && out.Exception == exc }

	switch in.Kind {
	case OpEnable, OpDisable:
		if s.State == StatePendingDeletion {
			return unknown || rejectedAs(ExcInvalidState), s
		}
		if out.Outcome != OK && !unknown {
			return false, s
		}
		if in.Kind == OpEnable {
			return true, s.enabled()
		}
		s.State = StateDisabled
		return true, s

	case OpSchedule:
		if s.State == StatePendingDeletion {
			return unknown || rejectedAs(ExcInvalidState), s
		}
		if out.Outcome != OK && !unknown {
			return false, s
		}
		s.State = StatePendingDeletion
		return true, s

	case OpCancel:
		if s.State != StatePendingDeletion {
			return unknown || rejectedAs(ExcInvalidState), s
		}
		if out.Outcome != OK && !unknown {
			return false, s
		}
		s.State = StateDisabled
		return true, s

	case OpEnableRotation:
		if exc := refusal(s.State); exc != "" {
			return unknown || rejectedAs(exc), s
		}
		if out.Outcome != OK && !unknown {
			return false, s
		}
		s.Auto, s.Grow = true, true
		return true, s

	case OpRotate:
		if exc := refusal(s.State); exc != "" {
			return unknown || rejectedAs(exc), s
		}
		switch {
		case unknown:
			s.Version++ // if it applied at all, it added exactly one version
			return true, s
		case rejectedAs(ExcConflict):
			// Every attempt met a concurrent rotation and changed nothing.
			return true, s
		case out.Outcome != OK:
			return false, s
		}
		if out.Version != s.Version+1 && !(s.Grow && out.Version > s.Version+1) {
			return false, s
		}
		s.Version = out.Version
		s.Grow = s.Auto
		return true, s

	case OpEncrypt:
		if exc := refusal(s.State); exc != "" {
			return rejectedAs(exc), s
		}
		if out.Outcome != OK {
			return false, s
		}
		return s.observe(out.Version)

	case OpDecrypt:
		exists := in.Version <= s.Version || s.Grow
		if exc := refusal(s.State); exc != "" {
			return rejectedAs(exc), s
		}
		if rejectedAs(ExcInvalidCiphertext) {
			// Only legal for a version the key has never had.
			return !exists, s
		}
		if out.Outcome != OK || !exists {
			return false, s
		}
		if in.Version > s.Version {
			s.Version = in.Version // seen to exist: a better lower bound
		}
		return true, s

	case OpDescribe:
		if out.Outcome != OK || out.State != s.State {
			return false, s
		}
		return s.observe(out.Version)
	}
	return false, s
}

// Model is the porcupine model of raftkms keys: operations are partitioned
// by key ID and each key is checked against step on its own.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() interface{} { return KeyModel{} },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			return step(state.(KeyModel), input.(Input), output.(Output))
		},
		Hash: func(state interface{}) uint64 {
			s := state.(KeyModel)
			h := fnv.New64a()
			fmt.Fprintf(h, "%t|%s|%d|%t|%t", s.Created, s.State, s.Version, s.Auto, s.Grow)
			return h.Sum64()
		},
		DescribeOperation: func(input, output interface{}) string {
			return describeOp(input.(Input), output.(Output))
		},
		DescribeState: func(state interface{}) string {
			s := state.(KeyModel)
			if !s.Created {
				return "not created"
			}
			v := fmt.Sprintf("v%d", s.Version)
			if s.Grow {
				v = fmt.Sprintf("v≥%d", s.Version)
			}
			auto := ""
			if s.Auto {
				auto = " auto"
			}
			return fmt.Sprintf("%s %s%s", s.State, v, auto)
		},
		DescribeOperationMetadata: func(info interface{}) string {
			if info == nil {
				return ""
			}
			return fmt.Sprint(info)
		},
	}
}

func partitionByKey(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(Input).Key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

func describeOp(in Input, out Output) string {
	call := in.Kind.String() + "()"
	if in.Kind == OpDecrypt {
		call = fmt.Sprintf("Decrypt(v%d)", in.Version)
	}
	var res string
	switch out.Outcome {
	case OK:
		switch in.Kind {
		case OpRotate, OpEncrypt:
			res = fmt.Sprintf("v%d", out.Version)
		case OpDescribe:
			res = fmt.Sprintf("%s v%d", out.State, out.Version)
		default:
			res = "ok"
		}
	case Rejected:
		res = out.Exception
	case Unknown:
		res = "unknown"
	case Corrupt:
		res = "WRONG PLAINTEXT"
	}
	return call + " → " + res
}
