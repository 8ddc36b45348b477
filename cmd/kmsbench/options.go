package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/rpc"
)

// Targets a run can measure.
const (
	targetRaftkms      = "raftkms"
	targetBaselineGRPC = "baseline-grpc"
	targetBaselineRaft = "baseline-raft"
)

// options are kmsbench's flags.
type options struct {
	endpoints   []string
	spawn       int
	aws         bool // compare: also the AWS-protocol front
	workload    string
	target      string // raftkms, baseline-grpc or baseline-raft; "" = from the workload
	mixSpec     string
	concurrency int
	payload     int
	duration    time.Duration
	warmup      time.Duration
	keys        int
	conns       int
	timeout     time.Duration
	rounds      int
	trials      int
	staleReads  bool
	readMode    string // --spawn: the nodes' read mode
	route       string // any, leader, followers
	jsonOut     bool
	quiet       bool
	logLevel    string
	logFormat   string
	heartbeat   time.Duration // spawned clusters' Raft timeouts (0: raftnode's defaults)
	election    time.Duration
	lease       time.Duration
	dataDir     string
	cpuProfile  string

	kind opKind // the workload's operation (not for mixed)
	mix  *mix   // for mixed
}

// workloads maps a workload name to its operation.
var workloads = map[string]opKind{
	"encrypt":           opEncrypt,
	"decrypt":           opDecrypt,
	"generate-data-key": opGenerateDataKey,
	"create-key":        opCreateKey,
	"rotate":            opRotate,
	"sign-rsa":          opSignRSA,
	"sign-ecc":          opSignECC,
	"generate-mac":      opGenerateMac,
}

const defaultMix = "encrypt=50,decrypt=40,generate-data-key=10"

func newFlagSet(name string, o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Func("endpoints", "`host:port,...`: gRPC addresses of a running cluster (insecure)", func(s string) error {
		o.endpoints = nil
		for _, e := range strings.Split(s, ",") {
			if e = strings.TrimSpace(e); e != "" {
				o.endpoints = append(o.endpoints, e)
			}
		}
		return nil
	})
	fs.IntVar(&o.spawn, "spawn", 0, "start an in-process cluster of this many nodes on 127.0.0.1 instead of using --endpoints")
	fs.StringVar(&o.workload, "workload", "encrypt",
		"encrypt, decrypt, generate-data-key, create-key, rotate, sign-rsa, sign-ecc, generate-mac, mixed; or baseline-grpc (encrypt) / baseline-raft (create-key)")
	fs.StringVar(&o.target, "target", "", "raftkms (default), baseline-grpc or baseline-raft: which system the run command measures")
	fs.StringVar(&o.mixSpec, "mix", defaultMix, "operation weights of the mixed workload")
	fs.IntVar(&o.concurrency, "concurrency", 64, "concurrent closed-loop clients")
	fs.IntVar(&o.payload, "payload-bytes", 1024, "plaintext size of encrypt and decrypt (1..4096)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each run")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "unrecorded load before each measured run")
	fs.IntVar(&o.keys, "keys", 64, "keys made in setup and used by the workers")
	fs.IntVar(&o.conns, "conns", 0, "gRPC connections, spread across endpoints (default: 2 per node)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "deadline of one operation")
	fs.IntVar(&o.rounds, "rounds", 2, "compare: rounds of (raftkms, baseline)")
	fs.IntVar(&o.trials, "trials", 3, "failover: leader kills")
	fs.BoolVar(&o.staleReads, "stale-reads", false, "ask for stale-ok crypto (skips the read-index round)")
	fs.StringVar(&o.readMode, "read-mode", "lease", "with --spawn: the nodes' read mode, lease, read-index or stale (as kmsd --read-mode)")
	fs.StringVar(&o.route, "route", "any", "with --spawn: send calls to any node, only the leader (no forwarding: as a leader-aware client), or only followers")
	fs.BoolVar(&o.aws, "aws", false, "compare: also run raftkms through its AWS-protocol front (aws-sdk-go-v2, SigV4) in every round; needs --spawn")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as JSON")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on stderr")
	fs.StringVar(&o.logLevel, "log-level", "off", "log level of a spawned cluster (off, error, warn, info, debug)")
	fs.DurationVar(&o.heartbeat, "raft-heartbeat-timeout", 0, "Raft heartbeat timeout of a spawned cluster (default: kmsd's)")
	fs.DurationVar(&o.election, "raft-election-timeout", 0, "Raft election timeout of a spawned cluster (default: kmsd's)")
	fs.DurationVar(&o.lease, "raft-leader-lease-timeout", 0, "Raft leader lease timeout of a spawned cluster (default: kmsd's; at most the heartbeat timeout)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format of a spawned cluster: text, or json (one JSON object per line)")
	fs.StringVar(&o.dataDir, "data-dir", "", "parent directory of the spawned clusters' data (default: the system temp dir)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole process (cluster included) to this file")
	return fs
}

// tuneRaft sets a spawned node's Raft timeouts from the flags.
func (o *options) tuneRaft(cfg *raftnode.Config) {
	if o.heartbeat > 0 {
		cfg.HeartbeatTimeout = o.heartbeat
	}
	if o.election > 0 {
		cfg.ElectionTimeout = o.election
	}
	if o.lease > 0 {
		cfg.LeaderLeaseTimeout = o.lease
	}
}

// validate checks the flags and resolves the workload.
func (o *options) validate(cmd string) error {
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("--log-format must be text or json, not %q", o.logFormat)
	}
	if o.spawn < 0 || o.spawn > 9 {
		return errors.New("--spawn must be 1..9")
	}
	if o.spawn == 0 && len(o.endpoints) == 0 {
		return errors.New("give --endpoints or --spawn N")
	}
	if o.spawn > 0 && len(o.endpoints) > 0 {
		return errors.New("--endpoints and --spawn exclude each other")
	}
	switch o.route {
	case "any", "":
		o.route = "any"
	case "leader", "followers":
		if o.spawn == 0 {
			return errors.New("--route leader|followers needs --spawn (kmsbench knows the leader of a cluster it started)")
		}
		if o.route == "followers" && o.spawn < 2 {
			return errors.New("--route followers needs --spawn 2 or more")
		}
	default:
		return fmt.Errorf("--route must be any, leader or followers, not %q", o.route)
	}
	if cmd == "failover" {
		if o.spawn < 3 {
			return errors.New("failover needs --spawn 3 (or more): it stops the leader node itself")
		}
		if o.trials < 1 {
			return errors.New("--trials must be at least 1")
		}
		return nil
	}
	switch o.workload {
	case targetBaselineGRPC, targetBaselineRaft:
		if o.target != "" && o.target != o.workload {
			return fmt.Errorf("--workload %s and --target %s disagree", o.workload, o.target)
		}
		o.target = o.workload
		o.workload = "encrypt"
		if o.target == targetBaselineRaft {
			o.workload = "create-key"
		}
	}
	if o.workload == "mixed" {
		m, err := parseMix(o.mixSpec)
		if err != nil {
			return err
		}
		o.mix = m
	} else {
		k, ok := workloads[o.workload]
		if !ok {
			return fmt.Errorf("unknown workload %q", o.workload)
		}
		o.kind = k
	}
	switch o.target {
	case "", targetRaftkms:
		o.target = targetRaftkms
	case targetRaftkmsAWS:
		if o.spawn == 0 {
			return fmt.Errorf("--target %s needs --spawn", targetRaftkmsAWS)
		}
	case targetBaselineGRPC, targetBaselineRaft:
	default:
		return fmt.Errorf("unknown target %q", o.target)
	}
	if _, err := rpc.ParseReadMode(o.readMode); err != nil {
		return fmt.Errorf("--read-mode: %w", err)
	}
	if o.aws && (cmd != "compare" || o.spawn == 0) {
		return errors.New("--aws is for compare with --spawn")
	}
	if cmd == "compare" || (o.target != targetRaftkms && o.target != targetRaftkmsAWS) {
		// The baseline must be able to run this workload.
		if _, err := o.baselineFor(); err != nil {
			return err
		}
		if o.target != targetRaftkms {
			if b, _ := o.baselineFor(); b != o.target {
				return fmt.Errorf("%s cannot run the %s workload (use %s)", o.target, o.workload, b)
			}
		}
	}
	if o.concurrency < 1 {
		return errors.New("--concurrency must be at least 1")
	}
	if o.payload < 1 || o.payload > 4096 {
		return errors.New("--payload-bytes must be 1..4096 (the Encrypt limit)")
	}
	if o.duration <= 0 || o.warmup < 0 || o.timeout <= 0 {
		return errors.New("--duration and --timeout must be positive, --warmup not negative")
	}
	if o.keys < 1 {
		return errors.New("--keys must be at least 1")
	}
	if o.rounds < 1 {
		return errors.New("--rounds must be at least 1")
	}
	return nil
}

// nodes is the cluster size: spawned, or the number of endpoints.
func (o *options) nodes() int {
	if o.spawn > 0 {
		return o.spawn
	}
	return len(o.endpoints)
}

// baselineFor names the bare system that bounds the workload: the gRPC
// baseline for crypto, the Raft baseline for lifecycle writes.
func (o *options) baselineFor() (string, error) {
	for k := opSignRSA; k <= opGenerateMac; k++ {
		if o.kind == k || (o.mix != nil && o.mix.weight[k] > 0) {
			return "", fmt.Errorf("%s has no baseline; measure it with run", k)
		}
	}
	if o.mix != nil {
		crypto, writes := false, false
		for k, w := range o.mix.weight {
			if w == 0 {
				continue
			}
			switch opKind(k) {
			case opCreateKey, opRotate:
				writes = true
			default:
				crypto = true
			}
		}
		if crypto && writes {
			return "", errors.New("a mix of crypto and lifecycle writes has no single baseline; compare them separately")
		}
		if writes {
			if o.mix.weight[opCreateKey] > 0 && o.mix.weight[opRotate] > 0 {
				return "", errors.New("compare a mix of create-key and rotate separately (their Raft entries differ)")
			}
			return targetBaselineRaft, nil
		}
		return targetBaselineGRPC, nil
	}
	switch o.kind {
	case opCreateKey, opRotate:
		return targetBaselineRaft, nil
	}
	return targetBaselineGRPC, nil
}

// mix is a weighted choice of operations.
type mix struct {
	weight [numOps]int
	total  int
}

// parseMix reads "encrypt=50,decrypt=40,generate-data-key=10".
func parseMix(s string) (*mix, error) {
	m := &mix{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		k, known := workloads[strings.TrimSpace(name)]
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if !ok || !known || err != nil || n < 0 {
			return nil, fmt.Errorf("--mix: %q is not OPERATION=WEIGHT (operations: encrypt, decrypt, generate-data-key, create-key, rotate, sign-rsa, sign-ecc, generate-mac)", part)
		}
		m.weight[k] += n
		m.total += n
	}
	if m.total == 0 {
		return nil, errors.New("--mix has no operation with a positive weight")
	}
	return m, nil
}

func (m *mix) pick(rng *rand.Rand) opKind {
	n := rng.IntN(m.total)
	for k, w := range m.weight {
		if n < w {
			return opKind(k)
		}
		n -= w
	}
	return opEncrypt // not reached
}
