package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func fakeRun(target string, ops uint64, seconds float64, lat time.Duration) *Result {
	r := &Result{Target: target, Workload: "encrypt", Nodes: 3, Concurrency: 64, PayloadBytes: 1024,
		Seconds: seconds, Ops: ops, hist: NewHistogram()}
	for i := uint64(0); i < ops; i++ {
		r.hist.Record(lat)
	}
	r.finish()
	return r
}

func TestRatio(t *testing.T) {
	cases := []struct{ a, b, want float64 }{
		{800, 1000, 0.8},
		{1000, 1000, 1},
		{1500, 1000, 1.5},
		{100, 0, 0}, // no baseline figure: no ratio rather than +Inf
		{0, 100, 0},
	}
	for _, c := range cases {
		if got := Ratio(c.a, c.b); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Ratio(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// The ratio is of the merged rounds: total operations over total measured
// time on each side, not a mean of per-round ratios.
func TestComparisonMergesRounds(t *testing.T) {
	runs := []*Result{
		fakeRun(targetRaftkms, 800, 1, time.Millisecond),
		fakeRun(targetBaselineGRPC, 1000, 1, 500*time.Microsecond),
		fakeRun(targetRaftkms, 1600, 2, time.Millisecond),
		fakeRun(targetBaselineGRPC, 3000, 2, 500*time.Microsecond),
	}
	c := newComparison(2, runs)
	if c.Raftkms.Ops != 2400 || c.Raftkms.Seconds != 3 || c.Baseline.Ops != 4000 {
		t.Fatalf("merged: raftkms %d ops in %vs, baseline %d ops", c.Raftkms.Ops, c.Raftkms.Seconds, c.Baseline.Ops)
	}
	if want := (2400.0 / 3) / (4000.0 / 3); math.Abs(c.Ratio-want) > 1e-9 {
		t.Errorf("ratio = %v, want %v", c.Ratio, want)
	}
	if math.Abs(c.P99Ratio-2) > 0.02 {
		t.Errorf("p99 ratio = %v, want about 2", c.P99Ratio)
	}
	if c.Workload != "encrypt" || c.Nodes != 3 || c.Concurrency != 64 || len(c.Runs) != 4 {
		t.Errorf("comparison header = %+v", c)
	}
}

func TestComparisonJSONShape(t *testing.T) {
	c := newComparison(1, []*Result{
		fakeRun(targetRaftkms, 900, 1, time.Millisecond),
		fakeRun(targetBaselineGRPC, 1000, 1, time.Millisecond),
	})
	var buf bytes.Buffer
	if err := writeJSON(&buf, c); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if r, ok := got["ratio"].(float64); !ok || math.Abs(r-0.9) > 1e-9 {
		t.Fatalf("ratio field = %v, want 0.9", got["ratio"])
	}
	for _, f := range []string{"workload", "nodes", "concurrency", "payload_bytes", "rounds", "raftkms", "baseline", "p99_ratio", "runs"} {
		if _, ok := got[f]; !ok {
			t.Errorf("field %q missing from %s", f, buf.String())
		}
	}
	side := got["raftkms"].(map[string]any)
	for _, f := range []string{"target", "ops_per_sec", "latency", "errors", "seconds", "ops"} {
		if _, ok := side[f]; !ok {
			t.Errorf("raftkms.%s missing", f)
		}
	}
	lat := side["latency"].(map[string]any)
	for _, f := range []string{"p50_us", "p99_us", "p999_us"} {
		if _, ok := lat[f]; !ok {
			t.Errorf("raftkms.latency.%s missing", f)
		}
	}
}

func TestOptions(t *testing.T) {
	cases := []struct {
		args     []string
		cmd      string
		target   string
		baseline string
		wantErr  string
	}{
		{args: []string{"--spawn", "3"}, cmd: "run", target: targetRaftkms},
		{args: []string{"--spawn", "3", "--workload", "baseline-raft"}, cmd: "run", target: targetBaselineRaft},
		{args: []string{"--spawn", "3", "--workload", "rotate"}, cmd: "compare", target: targetRaftkms, baseline: targetBaselineRaft},
		{args: []string{"--spawn", "3", "--workload", "decrypt"}, cmd: "compare", target: targetRaftkms, baseline: targetBaselineGRPC},
		{args: []string{"--spawn", "3", "--workload", "mixed", "--mix", "encrypt=1,create-key=1"}, cmd: "compare", wantErr: "no single baseline"},
		{args: []string{"--spawn", "3", "--workload", "mixed", "--mix", "encrypt=1,decrypt=3"}, cmd: "compare", target: targetRaftkms, baseline: targetBaselineGRPC},
		{args: []string{"--spawn", "3", "--target", "baseline-raft", "--workload", "encrypt"}, cmd: "run", wantErr: "cannot run"},
		{args: []string{"--workload", "encrypt"}, cmd: "run", wantErr: "--endpoints or --spawn"},
		{args: []string{"--spawn", "3", "--workload", "sign-rsa"}, cmd: "compare", wantErr: "no baseline"},
		{args: []string{"--spawn", "3", "--workload", "mixed", "--mix", "encrypt=1,generate-mac=1"}, cmd: "compare", wantErr: "no baseline"},
		{args: []string{"--spawn", "3", "--workload", "mixed", "--mix", "encrypt=1,sign-rsa=1,sign-ecc=1,generate-mac=1"}, cmd: "run", target: targetRaftkms},
		{args: []string{"--spawn", "3", "--payload-bytes", "5000"}, cmd: "run", wantErr: "payload"},
		{args: []string{"--spawn", "3", "--workload", "mixed", "--mix", "encrypt=x"}, cmd: "run", wantErr: "--mix"},
		{args: []string{"--endpoints", "a:1"}, cmd: "failover", wantErr: "--spawn 3"},
		{args: []string{"--spawn", "3", "--log-format", "json"}, cmd: "run", target: targetRaftkms},
		{args: []string{"--spawn", "3", "--log-format", "xml"}, cmd: "run", wantErr: "--log-format"},
	}
	for _, c := range cases {
		o := &options{}
		fs := newFlagSet("test", o, &bytes.Buffer{})
		if err := fs.Parse(c.args); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		err := o.validate(c.cmd)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s %v: error %v, want one mentioning %q", c.cmd, c.args, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %v: %v", c.cmd, c.args, err)
			continue
		}
		if o.target != c.target {
			t.Errorf("%s %v: target %q, want %q", c.cmd, c.args, o.target, c.target)
		}
		if c.baseline != "" {
			if b, _ := o.baselineFor(); b != c.baseline {
				t.Errorf("%s %v: baseline %q, want %q", c.cmd, c.args, b, c.baseline)
			}
		}
	}
}

func TestMixPick(t *testing.T) {
	m, err := parseMix("encrypt=3, decrypt=1")
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{rng: rand.New(rand.NewPCG(7, 7))}
	var n [numOps]int
	for i := 0; i < 40000; i++ {
		n[m.pick(w.rng)]++
	}
	if n[opEncrypt]+n[opDecrypt] != 40000 || math.Abs(float64(n[opEncrypt])/40000-0.75) > 0.02 {
		t.Errorf("picks = %v, want about 3:1 encrypt:decrypt", n)
	}
}

// The smoke test runs the whole compare command in-process, against a
// spawned 3-node cluster and its baseline, and checks the JSON it prints.
func TestCompareSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"compare", "--spawn", "3", "--duration", "1s", "--warmup", "200ms", "--concurrency", "4",
		"--keys", "4", "--json", "--data-dir", t.TempDir()}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var c Comparison
	if err := json.Unmarshal(stdout.Bytes(), &c); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if c.Ratio <= 0 || c.Raftkms == nil || c.Baseline == nil {
		t.Fatalf("comparison = %s", stdout.String())
	}
	if len(c.Runs) != 4 || c.Runs[0].Target != targetRaftkms || c.Runs[1].Target != targetBaselineGRPC {
		t.Errorf("runs are not A B A B: %d runs", len(c.Runs))
	}
	if c.Raftkms.Ops == 0 || c.Baseline.Ops == 0 || c.Raftkms.Errors != 0 || c.Baseline.Errors != 0 {
		t.Errorf("raftkms: %d ops %d errors (%s); baseline: %d ops %d errors", c.Raftkms.Ops, c.Raftkms.Errors,
			c.Raftkms.FirstError, c.Baseline.Ops, c.Baseline.Errors)
	}
	if !strings.Contains(stderr.String(), "ops/s") {
		t.Errorf("no progress line on stderr: %q", stderr.String())
	}
}

// The failover smoke test kills the leader once and checks the JSON report.
func TestFailoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"failover", "--spawn", "3", "--trials", "1", "--json", "--quiet", "--data-dir", t.TempDir()},
		&stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	var r FailoverResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
	}
	if len(r.Trials) != 1 || r.Trials[0].FirstAckMS <= 0 || r.Trials[0].Killed == "" {
		t.Fatalf("failover result = %s", stdout.String())
	}
}

func TestRoute(t *testing.T) {
	eps := []string{"a", "b", "c"}
	for _, c := range []struct {
		how  string
		want string
	}{{"any", "a,b,c"}, {"leader", "b"}, {"followers", "a,c"}} {
		if got := strings.Join(route(eps, 1, c.how), ","); got != c.want {
			t.Errorf("route %s = %s, want %s", c.how, got, c.want)
		}
	}
}
