package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/status"
)

// opKind is one type of operation a load worker performs.
type opKind int

const (
	opEncrypt opKind = iota
	opDecrypt
	opGenerateDataKey
	opCreateKey
	opRotate
	opRaftApply
	opSignRSA     // Sign with an RSA_2048 key, RSASSA_PSS_SHA_256
	opSignECC     // Sign with an ECC_NIST_P256 key, ECDSA_SHA_256
	opGenerateMac // GenerateMac with an HMAC_256 key
	numOps
)

var opNames = [numOps]string{"encrypt", "decrypt", "generate-data-key", "create-key", "rotate", "raft-apply",
	"sign-rsa", "sign-ecc", "generate-mac"}

func (k opKind) String() string { return opNames[k] }

// driver performs operations against one target.
type driver interface {
	// do performs one operation for worker w and says which type it was.
	do(ctx context.Context, w *worker) (opKind, error)
}

// worker is one closed-loop client: it starts its next operation as soon as
// the previous one is answered.
type worker struct {
	id   int
	rng  *rand.Rand
	hist [numOps]*Histogram
	errs map[string]uint64
	err1 string // first error seen while measuring

	// Counted in every phase, read by the progress line.
	ops  atomic.Uint64
	nerr atomic.Uint64
	_    [48]byte // keep workers' counters off each other's cache lines
}

// loadConfig says how to drive one run.
type loadConfig struct {
	target      string // for reports: raftkms, baseline-grpc, baseline-raft
	workload    string
	nodes       int
	payload     int
	entryBytes  int
	concurrency int
	warmup      time.Duration
	duration    time.Duration
	timeout     time.Duration // per operation
	progress    io.Writer     // nil: no progress line
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

// runLoad runs cfg.concurrency workers against d: warm-up first (not
// recorded), then cfg.duration measured. An operation counts when it
// completes inside the measured window. It returns early, with what was
// measured so far, when ctx ends.
func runLoad(ctx context.Context, cfg loadConfig, d driver) *Result {
	var phase atomic.Int32
	if cfg.warmup <= 0 {
		phase.Store(phaseMeasure)
	}
	workers := make([]*worker, cfg.concurrency)
	// In-flight operations may outlive the run by up to their timeout; they
	// are cancelled only if they take longer still.
	opCtx, cancelOps := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelOps()
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, rng: rand.New(rand.NewPCG(uint64(i)+1, 0x6b6d7362656e6368)), errs: map[string]uint64{}}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for phase.Load() != phaseDone {
				octx, cancel := context.WithTimeout(opCtx, cfg.timeout)
				start := time.Now()
				kind, err := d.do(octx, w)
				lat := time.Since(start)
				cancel()
				if err != nil {
					w.nerr.Add(1)
				} else {
					w.ops.Add(1)
				}
				if phase.Load() != phaseMeasure {
					continue
				}
				if err != nil {
					code := errCode(err)
					w.errs[code]++
					if w.err1 == "" {
						w.err1 = err.Error()
					}
					continue
				}
				if w.hist[kind] == nil {
					w.hist[kind] = NewHistogram()
				}
				w.hist[kind].Record(lat)
			}
		}()
	}

	stopProgress := startProgress(cfg, workers, &phase)
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var measured, cpu time.Duration
	if cfg.warmup <= 0 || wait(cfg.warmup) {
		phase.Store(phaseMeasure)
		t0, cpu0 := time.Now(), processCPU()
		wait(cfg.duration)
		phase.Store(phaseDone)
		measured, cpu = time.Since(t0), processCPU()-cpu0
	}
	phase.Store(phaseDone)
	stopProgress()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(cfg.timeout + time.Second):
		cancelOps()
		<-done
	}

	r := &Result{Target: cfg.target, Workload: cfg.workload, Nodes: cfg.nodes, Concurrency: cfg.concurrency,
		PayloadBytes: cfg.payload, EntryBytes: cfg.entryBytes, Seconds: measured.Seconds(), hist: NewHistogram()}
	for _, w := range workers {
		for k, h := range w.hist {
			if h == nil {
				continue
			}
			r.Ops += h.Count()
			r.hist.Merge(h)
			if r.perOp == nil {
				r.perOp = map[string]*Histogram{}
			}
			name := opKind(k).String()
			if r.perOp[name] == nil {
				r.perOp[name] = NewHistogram()
			}
			r.perOp[name].Merge(h)
		}
		for c, n := range w.errs {
			if r.ErrorCodes == nil {
				r.ErrorCodes = map[string]uint64{}
			}
			r.ErrorCodes[c] += n
			r.Errors += n
		}
		if r.FirstError == "" {
			r.FirstError = w.err1
		}
	}
	r.finish()
	if r.Ops > 0 {
		r.CPUPerOp = us(cpu) / float64(r.Ops)
		r.CPUCores = cpu.Seconds() / r.Seconds
	}
	return r
}

// processCPU is the CPU time (user and system) this process has used: the
// cluster, the baseline and the load generator alike, as they share it.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// errCode names an error for the error counts: its gRPC code, or the error
// itself for non-gRPC failures (the raft baseline).
func errCode(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "DeadlineExceeded"
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	msg := err.Error()
	if len(msg) > 40 {
		msg = msg[:40]
	}
	return msg
}

// startProgress prints a progress line to cfg.progress every second: on a
// terminal it rewrites one line, otherwise it prints one line per second.
func startProgress(cfg loadConfig, workers []*worker, phase *atomic.Int32) (stop func()) {
	if cfg.progress == nil {
		return func() {}
	}
	tty := isTerminal(cfg.progress)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		start := time.Now()
		var lastOps, lastErr uint64
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(cfg.progress, "\r\033[K")
				}
				return
			case <-tick.C:
			}
			var ops, nerr uint64
			for _, w := range workers {
				ops += w.ops.Load()
				nerr += w.nerr.Load()
			}
			name := "warm-up"
			if phase.Load() == phaseMeasure {
				name = "measure"
			}
			line := fmt.Sprintf("kmsbench: %s %s %s %4.0fs  %8d ops/s  errors %d (total %d)", cfg.target, cfg.workload,
				name, time.Since(start).Seconds(), ops-lastOps, nerr-lastErr, nerr)
			lastOps, lastErr = ops, nerr
			if tty {
				fmt.Fprintf(cfg.progress, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(cfg.progress, line)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
