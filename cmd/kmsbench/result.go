package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Latency is a latency summary in microseconds.
type Latency struct {
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Mean float64 `json:"mean_us"`
	Max  float64 `json:"max_us"`
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func summarize(h *Histogram) Latency {
	return Latency{P50: us(h.Percentile(0.50)), P99: us(h.Percentile(0.99)), P999: us(h.Percentile(0.999)),
		Mean: us(h.Mean()), Max: us(h.Max())}
}

// OpResult is one operation type's share of a mixed run.
type OpResult struct {
	Ops       uint64  `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	Latency   Latency `json:"latency"`
}

// Result is the outcome of one measured run (or of several runs merged).
type Result struct {
	Target       string              `json:"target"`   // raftkms, baseline-grpc or baseline-raft
	Workload     string              `json:"workload"` // encrypt, decrypt, …, mixed
	Nodes        int                 `json:"nodes"`
	Concurrency  int                 `json:"concurrency"`
	PayloadBytes int                 `json:"payload_bytes"`
	EntryBytes   int                 `json:"entry_bytes,omitempty"` // Raft entry size, for writes
	Seconds      float64             `json:"seconds"`               // measured time, warm-up excluded
	Ops          uint64              `json:"ops"`                   // successful operations
	OpsPerSec    float64             `json:"ops_per_sec"`
	Latency      Latency             `json:"latency"` // of successful operations
	Errors       uint64              `json:"errors"`
	ErrorCodes   map[string]uint64   `json:"error_codes,omitempty"` // gRPC code (or error) → count
	FirstError   string              `json:"first_error,omitempty"`
	PerOp        map[string]OpResult `json:"per_op,omitempty"` // mixed runs only
	// CPU time of the whole process (cluster or baseline, and the load
	// generator) per successful operation, and cores busy on average. Less
	// sensitive than ops/s to other load on a shared machine.
	CPUPerOp float64 `json:"cpu_us_per_op"`
	CPUCores float64 `json:"cpu_cores"`

	hist  *Histogram
	perOp map[string]*Histogram
}

// merge combines runs of the same target and workload (compare rounds):
// operations and time add up, histograms merge.
func merge(runs []*Result) *Result {
	if len(runs) == 0 {
		return nil
	}
	first := runs[0]
	out := &Result{Target: first.Target, Workload: first.Workload, Nodes: first.Nodes, Concurrency: first.Concurrency,
		PayloadBytes: first.PayloadBytes, EntryBytes: first.EntryBytes, hist: NewHistogram()}
	var cpu float64
	for _, r := range runs {
		cpu += r.CPUPerOp * float64(r.Ops)
		out.Seconds += r.Seconds
		out.Ops += r.Ops
		out.Errors += r.Errors
		for c, n := range r.ErrorCodes {
			if out.ErrorCodes == nil {
				out.ErrorCodes = map[string]uint64{}
			}
			out.ErrorCodes[c] += n
		}
		if out.FirstError == "" {
			out.FirstError = r.FirstError
		}
		if r.hist != nil {
			out.hist.Merge(r.hist)
		}
		for op, h := range r.perOp {
			if out.perOp == nil {
				out.perOp = map[string]*Histogram{}
			}
			if out.perOp[op] == nil {
				out.perOp[op] = NewHistogram()
			}
			out.perOp[op].Merge(h)
		}
	}
	out.finish()
	if out.Ops > 0 && out.Seconds > 0 {
		out.CPUPerOp = cpu / float64(out.Ops)
		out.CPUCores = cpu / 1e6 / out.Seconds
	}
	return out
}

// finish derives the reported figures from the counts and histograms.
func (r *Result) finish() {
	if r.Seconds > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Seconds
	}
	if r.hist != nil {
		r.Latency = summarize(r.hist)
	}
	if len(r.perOp) > 1 {
		r.PerOp = map[string]OpResult{}
		for op, h := range r.perOp {
			o := OpResult{Ops: h.Count(), Latency: summarize(h)}
			if r.Seconds > 0 {
				o.OpsPerSec = float64(o.Ops) / r.Seconds
			}
			r.PerOp[op] = o
		}
	}
}

// Ratio is a/b, or 0 when b is 0 (no baseline figure to compare with).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Comparison is the outcome of `kmsbench compare`.
type Comparison struct {
	Workload     string    `json:"workload"`
	Nodes        int       `json:"nodes"`
	Concurrency  int       `json:"concurrency"`
	PayloadBytes int       `json:"payload_bytes"`
	Rounds       int       `json:"rounds"`
	Raftkms      *Result   `json:"raftkms"`             // all raftkms rounds merged
	AWS          *Result   `json:"aws,omitempty"`       // all raftkms-aws rounds merged (--aws)
	AWSRatio     float64   `json:"aws_ratio,omitempty"` // raftkms-aws ops/s ÷ raftkms (gRPC) ops/s
	Baseline     *Result   `json:"baseline"`            // all baseline rounds merged
	Ratio        float64   `json:"ratio"`               // raftkms ops/s ÷ baseline ops/s
	P99Ratio     float64   `json:"p99_ratio"`
	Runs         []*Result `json:"runs"` // every run in the order it ran (A B A B …)
}

func newComparison(rounds int, runs []*Result) *Comparison {
	var a, b, aw []*Result
	for _, r := range runs {
		if r.Target == targetRaftkms {
			a = append(a, r)
		} else if r.Target == targetRaftkmsAWS {
			aw = append(aw, r)
		} else {
			b = append(b, r)
		}
	}
	c := &Comparison{Rounds: rounds, Runs: runs, Raftkms: merge(a), Baseline: merge(b), AWS: merge(aw)}
	if c.AWS != nil && c.Raftkms != nil {
		c.AWSRatio = Ratio(c.AWS.OpsPerSec, c.Raftkms.OpsPerSec)
	}
	if c.Raftkms != nil {
		c.Workload, c.Nodes, c.Concurrency, c.PayloadBytes = c.Raftkms.Workload, c.Raftkms.Nodes,
			c.Raftkms.Concurrency, c.Raftkms.PayloadBytes
	}
	if c.Raftkms != nil && c.Baseline != nil {
		c.Ratio = Ratio(c.Raftkms.OpsPerSec, c.Baseline.OpsPerSec)
		c.P99Ratio = Ratio(c.Raftkms.Latency.P99, c.Baseline.Latency.P99)
	}
	return c
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtUS prints microseconds at a readable scale.
func fmtUS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fs", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.2fms", v/1e3)
	}
	return fmt.Sprintf("%.0fµs", v)
}

func errorSummary(r *Result) string {
	if r.Errors == 0 {
		return "0"
	}
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(r.ErrorCodes)) {
		parts = append(parts, fmt.Sprintf("%s=%d", c, r.ErrorCodes[c]))
	}
	return fmt.Sprintf("%d (%s)", r.Errors, strings.Join(parts, " "))
}

func tableHeader(tw io.Writer, withLabel bool) {
	if withLabel {
		fmt.Fprint(tw, "run\t")
	}
	fmt.Fprintln(tw, "target\tworkload\tops/s\tp50\tp99\tp99.9\tmax\tCPU/op\tcores\terrors")
}

func tableRow(tw io.Writer, label string, r *Result, withLabel bool) {
	if withLabel {
		fmt.Fprintf(tw, "%s\t", label)
	}
	fmt.Fprintf(tw, "%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%.0fµs\t%.2f\t%s\n", r.Target, r.Workload, r.OpsPerSec,
		fmtUS(r.Latency.P50), fmtUS(r.Latency.P99), fmtUS(r.Latency.P999), fmtUS(r.Latency.Max), r.CPUPerOp, r.CPUCores,
		errorSummary(r))
	for _, op := range slices.Sorted(maps.Keys(r.PerOp)) {
		o := r.PerOp[op]
		if withLabel {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprintf(tw, "\t  %s\t%.0f\t%s\t%s\t%s\t%s\t\t\t\n", op, o.OpsPerSec,
			fmtUS(o.Latency.P50), fmtUS(o.Latency.P99), fmtUS(o.Latency.P999), fmtUS(o.Latency.Max))
	}
}

func describeSetup(r *Result) string {
	s := fmt.Sprintf("%d node(s), %d concurrent clients, %d B payload, %.1fs measured", r.Nodes, r.Concurrency,
		r.PayloadBytes, r.Seconds)
	if r.EntryBytes > 0 {
		s += fmt.Sprintf(", %d B Raft entries", r.EntryBytes)
	}
	return s
}

// printResult prints one run as a table.
func printResult(w io.Writer, r *Result) {
	fmt.Fprintf(w, "%s\n", describeSetup(r))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	tableHeader(tw, false)
	tableRow(tw, "", r, false)
	tw.Flush()
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

// printComparison prints every run, the merged figures and the ratio.
func printComparison(w io.Writer, c *Comparison) {
	if c.Raftkms != nil {
		fmt.Fprintf(w, "%s, %d rounds, alternating\n", describeSetup(c.Raftkms), c.Rounds)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	tableHeader(tw, true)
	perRound := 2
	if c.AWS != nil {
		perRound = 3
	}
	for i, r := range c.Runs {
		tableRow(tw, fmt.Sprintf("round %d", i/perRound+1), r, true)
	}
	for _, r := range []*Result{c.Raftkms, c.AWS, c.Baseline} {
		if r != nil {
			tableRow(tw, "all", r, true)
		}
	}
	tw.Flush()
	if c.Raftkms != nil && c.Baseline != nil {
		fmt.Fprintf(w, "ratio %s/%s: %.3f of the throughput, p99 ×%.2f, CPU per op ×%.2f\n", c.Raftkms.Target,
			c.Baseline.Target, c.Ratio, c.P99Ratio, Ratio(c.Raftkms.CPUPerOp, c.Baseline.CPUPerOp))
		if c.AWS != nil {
			fmt.Fprintf(w, "ratio %s/%s: %.3f of the throughput, p99 ×%.2f, CPU per op ×%.2f\n", c.AWS.Target,
				c.Raftkms.Target, c.AWSRatio, Ratio(c.AWS.Latency.P99, c.Raftkms.Latency.P99), Ratio(c.AWS.CPUPerOp, c.Raftkms.CPUPerOp))
		}
		for _, r := range []*Result{c.Raftkms, c.AWS, c.Baseline} {
			if r != nil && r.FirstError != "" {
				fmt.Fprintf(w, "%s first error: %s\n", r.Target, r.FirstError)
			}
		}
	}
}
