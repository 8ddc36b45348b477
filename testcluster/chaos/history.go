package chaos

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Never is the return time of an operation whose outcome is unknown: the
// checker may linearize it anywhere after its call, including after every
// other operation (which is the same as "it never took effect").
const Never int64 = math.MaxInt64 / 4

// Op is one client operation: a logical call, with every retry it took.
type Op struct {
	Client    int    // worker that made it (a lane in the visualization)
	In        Input  // what was asked
	Out       Output // what came back
	Call      int64  // invocation, nanoseconds since the recorder started
	Return    int64  // response (Never when the outcome is unknown)
	Node      int    // node that gave the final answer; -1 when not known
	RequestID string // idempotency token, the same on every retry
	Attempts  int    // tries, the first included
	LastErr   string // the last error, for the visualization and logs
}

// Recorder collects the operations of a run and the faults injected during
// it, on one monotonic clock. It is safe for concurrent use.
type Recorder struct {
	start time.Time

	mu     sync.Mutex
	ops    []Op
	faults []porcupine.Annotation
}

// NewRecorder starts the recorder's clock.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Now is the recorder's clock: nanoseconds since it started (monotonic).
func (r *Recorder) Now() int64 { return int64(time.Since(r.start)) }

// Add records a finished operation.
func (r *Recorder) Add(op Op) {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
}

// Fault notes a fault (or a heal) at the current time; the visualization
// shows it as an annotation.
func (r *Recorder) Fault(format string, args ...any) {
	now := r.Now()
	r.mu.Lock()
	r.faults = append(r.faults, porcupine.Annotation{
		Tag: "faults", Start: now, Description: fmt.Sprintf(format, args...), BackgroundColor: "#ffd6d6",
	})
	r.mu.Unlock()
}

// Ops returns a copy of the recorded operations.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Annotations are the faults noted, for the visualization.
func (r *Recorder) Annotations() []porcupine.Annotation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]porcupine.Annotation(nil), r.faults...)
}

// History is the recorded operations in porcupine's form.
func (r *Recorder) History() []porcupine.Operation {
	return toPorcupine(r.Ops())
}

func toPorcupine(ops []Op) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		meta := fmt.Sprintf("req %s, %d attempt(s)", op.RequestID, op.Attempts)
		if op.Node >= 0 {
			meta += fmt.Sprintf(", answered by node%d", op.Node)
		}
		if op.LastErr != "" {
			meta += ", last error: " + op.LastErr
		}
		out = append(out, porcupine.Operation{
			ClientId: op.Client, Input: op.In, Output: op.Out, Call: op.Call, Return: op.Return, Metadata: meta,
		})
	}
	return out
}
