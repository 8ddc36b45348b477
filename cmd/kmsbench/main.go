// Command kmsbench is raftkms's closed-loop load generator. It measures
// throughput and latency of raftkms and, in the same invocation and with the
// same concurrency and payload, of the bare systems that bound it: a bare
// gRPC server sealing with a cached AES-256-GCM AEAD (the limit for crypto
// RPCs) and bare hashicorp/raft on raft-boltdb (the limit for lifecycle
// writes).
//
//	kmsbench run      --spawn 3 --workload encrypt --concurrency 64 --payload-bytes 1024 --duration 10s
//	kmsbench run      --endpoints 127.0.0.1:7001,127.0.0.1:7002 --workload mixed --mix encrypt=80,decrypt=20
//	kmsbench compare  --spawn 3 --workload encrypt --concurrency 64 --payload-bytes 1024 --duration 10s [--json]
//	kmsbench failover --spawn 3 [--trials 3] [--json]
//
// Workloads: encrypt, decrypt, generate-data-key, create-key, rotate, mixed;
// baseline-grpc and baseline-raft run the baselines alone. Results print as
// a table, or as JSON with --json; a progress line goes to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `usage: kmsbench [run|compare|failover] [flags]

  run       measure one target (raftkms by default; --target or --workload
            baseline-grpc|baseline-raft for a baseline)
  compare   run raftkms and its baseline alternately (--rounds, A B A B) and
            print both and their ratio
  failover  stop the leader of a spawned cluster and time the first
            acknowledged CreateKey (--spawn 3, --trials)

Without a command, kmsbench runs "run". Run "kmsbench run -h" for the flags.
`

// run is kmsbench without the process around it (tests call it).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run", "compare", "failover":
	case "help":
		fmt.Fprint(stdout, usageText)
		return 0
	default:
		fmt.Fprintf(stderr, "kmsbench: unknown command %q\n%s", cmd, usageText)
		return 2
	}
	o := &options{}
	fs := newFlagSet("kmsbench "+cmd, o, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kmsbench: unexpected arguments %v\n", fs.Args())
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cmd == "failover" && !set["concurrency"] {
		o.concurrency = 4 // probers, not load
	}
	if err := o.validate(cmd); err != nil {
		fmt.Fprintf(stderr, "kmsbench: %v\n", err)
		return 2
	}
	var progress io.Writer = stderr
	if o.quiet {
		progress = nil
	}

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "kmsbench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "kmsbench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}

	var err error
	switch cmd {
	case "run":
		err = cmdRun(ctx, o, stdout, progress)
	case "compare":
		err = cmdCompare(ctx, o, stdout, progress)
	case "failover":
		err = cmdFailover(ctx, o, stdout, progress)
	}
	if err != nil {
		fmt.Fprintf(stderr, "kmsbench: %v\n", err)
		return 1
	}
	return 0
}

// system is a target set up and ready to be driven.
type system struct {
	name       string
	drv        driver
	entryBytes int
	close      func()
}

// writeKind is the lifecycle write a workload makes (create-key or rotate),
// or -1.
func (o *options) writeKind() opKind {
	if o.mix != nil {
		switch {
		case o.mix.weight[opCreateKey] > 0:
			return opCreateKey
		case o.mix.weight[opRotate] > 0:
			return opRotate
		}
		return -1
	}
	if o.kind == opCreateKey || o.kind == opRotate {
		return o.kind
	}
	return -1
}

// openSystem starts (or connects to) one target and runs the workload's
// setup.
func openSystem(ctx context.Context, o *options, target string) (*system, error) {
	sys := &system{name: target}
	if k := o.writeKind(); k >= 0 {
		entry, err := entryFor(k)
		if err != nil {
			return nil, err
		}
		sys.entryBytes = len(entry)
	}
	switch target {
	case targetRaftkms:
		endpoints := o.endpoints
		var cluster *spawned
		if o.spawn > 0 {
			var err error
			if cluster, err = spawnCluster(ctx, o); err != nil {
				return nil, err
			}
			endpoints = route(cluster.local.Endpoints(), cluster.local.Leader(), o.route)
		}
		pool, err := dialPool(endpoints, o.connCount())
		if err == nil {
			sys.drv, err = setupKMS(ctx, o, pool, o.kind, o.mix)
		}
		sys.close = func() {
			if pool != nil {
				pool.close()
			}
			if cluster != nil {
				cluster.stop()
			}
		}
		if err != nil {
			sys.close()
			return nil, err
		}
	case targetRaftkmsAWS:
		return openAWSSystem(ctx, o)
	case targetBaselineGRPC:
		b, err := startGRPCBaseline(o.nodes())
		if err != nil {
			return nil, err
		}
		pool, err := dialPool(b.endpoints, o.connCount())
		if err == nil {
			sys.drv, err = setupKMS(ctx, o, pool, o.kind, o.mix)
		}
		sys.close = func() {
			if pool != nil {
				pool.close()
			}
			b.stop()
		}
		if err != nil {
			sys.close()
			return nil, err
		}
	case targetBaselineRaft:
		k := o.writeKind()
		if k < 0 {
			return nil, fmt.Errorf("%s runs lifecycle writes only", target)
		}
		entry, err := entryFor(k)
		if err != nil {
			return nil, err
		}
		b, err := startRaftBaseline(ctx, o, o.nodes(), entry)
		if err != nil {
			return nil, err
		}
		sys.drv, sys.close = b, b.stop
	default:
		return nil, fmt.Errorf("unknown target %q", target)
	}
	return sys, nil
}

// route picks the endpoints calls go to: all, the leader's, or the others.
func route(endpoints []string, leader int, how string) []string {
	switch how {
	case "leader":
		return endpoints[leader : leader+1]
	case "followers":
		var out []string
		for i, e := range endpoints {
			if i != leader {
				out = append(out, e)
			}
		}
		return out
	}
	return endpoints
}

// connCount is --conns, or 2 per node: the same number of connections for
// raftkms, --leader-only and the gRPC baseline.
func (o *options) connCount() int {
	if o.conns > 0 {
		return o.conns
	}
	return 2 * o.nodes()
}

func (o *options) loadConfig(sys *system, progress io.Writer) loadConfig {
	return loadConfig{target: sys.name, workload: o.workload, nodes: o.nodes(), payload: o.payload,
		entryBytes: sys.entryBytes, concurrency: o.concurrency, warmup: o.warmup, duration: o.duration,
		timeout: o.timeout, progress: progress}
}

func cmdRun(ctx context.Context, o *options, stdout, progress io.Writer) error {
	sys, err := openSystem(ctx, o, o.target)
	if err != nil {
		return err
	}
	defer sys.close()
	r := runLoad(ctx, o.loadConfig(sys, progress), sys.drv)
	if o.jsonOut {
		return writeJSON(stdout, r)
	}
	printResult(stdout, r)
	return nil
}

// cmdCompare runs raftkms and its baseline back to back, alternating, so
// that drift of the machine (other load, thermal, page cache) falls on both.
func cmdCompare(ctx context.Context, o *options, stdout, progress io.Writer) error {
	baseline, err := o.baselineFor()
	if err != nil {
		return err
	}
	a, err := openSystem(ctx, o, targetRaftkms)
	if err != nil {
		return err
	}
	defer a.close()
	systems := []*system{a}
	if o.aws {
		// The AWS-protocol front, beside the gRPC one, in every round.
		aw, err := openSystem(ctx, o, targetRaftkmsAWS)
		if err != nil {
			return err
		}
		defer aw.close()
		systems = append(systems, aw)
	}
	b, err := openSystem(ctx, o, baseline)
	if err != nil {
		return err
	}
	defer b.close()
	systems = append(systems, b)
	var runs []*Result
	for round := 0; round < o.rounds && ctx.Err() == nil; round++ {
		for _, sys := range systems {
			runs = append(runs, runLoad(ctx, o.loadConfig(sys, progress), sys.drv))
		}
	}
	c := newComparison(o.rounds, runs)
	if o.jsonOut {
		return writeJSON(stdout, c)
	}
	printComparison(stdout, c)
	return nil
}

// since is the time from t0 to t in milliseconds.
func since(t0, t time.Time) float64 { return float64(t.Sub(t0).Microseconds()) / 1e3 }
