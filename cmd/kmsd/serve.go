package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/internal/buildinfo"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/server"
)

// commonFlags are the flags dev and serve share.
type commonFlags struct {
	minRotation   string
	minPending    string
	onDemandLimit uint
	logLevel      string
	logFormat     string
	staleReads    bool
	readMode      string
	maxClockSkew  time.Duration
	pprof         bool
	raft          raftFlags
}

func (c *commonFlags) register(fs *flag.FlagSet, defaultLevel string) {
	fs.StringVar(&c.minRotation, "min-rotation-period", "", "lowest rotation period allowed (e.g. 2s, 1h, 90d; default 90d)")
	fs.StringVar(&c.minPending, "min-pending-window", "", "shortest deletion waiting period allowed (e.g. 3s, 7d; default 7d)")
	fs.UintVar(&c.onDemandLimit, "on-demand-rotation-limit", rpc.DefaultOnDemandLimit, "on-demand rotations allowed per key")
	fs.StringVar(&c.logLevel, "log-level", defaultLevel, "log level: trace, debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text, or json (one JSON object per line)")
	fs.BoolVar(&c.staleReads, "stale-reads", false, "serve every read from local state without a read-index round (the same as --read-mode stale)")
	fs.StringVar(&c.readMode, "read-mode", rpc.ReadModeLease,
		"how this node serves linearizable reads: lease (under a read lease from the leader, no round trip), read-index (a read-index round per batch), or stale (local state, no freshness guarantee)")
	fs.DurationVar(&c.maxClockSkew, "max-clock-skew", rpc.DefaultMaxClockSkew,
		"how far a leader's clock may be from a quorum of the voters' clocks while it stamps events (deletions, expiries, rotations, writes)")
	fs.BoolVar(&c.pprof, "pprof", false, "serve Go's profiles under /debug/pprof/ on the metrics listener")
	c.raft.register(fs)
}

// check validates the flags that need it.
func (c *commonFlags) check() error {
	if c.logFormat != "text" && c.logFormat != "json" {
		return fmt.Errorf("--log-format must be text or json, not %q", c.logFormat)
	}
	if hclog.LevelFromString(c.logLevel) == hclog.NoLevel {
		return fmt.Errorf("--log-level must be trace, debug, info, warn or error, not %q", c.logLevel)
	}
	if _, err := rpc.ParseReadMode(c.readMode); err != nil {
		return fmt.Errorf("--read-mode: %w", err)
	}
	return c.raft.check()
}

func (c *commonFlags) limits() (rpc.Limits, error) {
	var l rpc.Limits
	var err error
	if c.minRotation != "" {
		if l.MinRotationPeriod, err = parseDuration(c.minRotation); err != nil {
			return l, fmt.Errorf("--min-rotation-period: %w", err)
		}
	}
	if c.minPending != "" {
		if l.MinPendingWindow, err = parseDuration(c.minPending); err != nil {
			return l, fmt.Errorf("--min-pending-window: %w", err)
		}
	}
	l.OnDemandLimit = uint32(c.onDemandLimit)
	if c.maxClockSkew <= 0 {
		return l, fmt.Errorf("--max-clock-skew must be positive")
	}
	return l, nil
}

func (c *commonFlags) logger(name string) hclog.Logger { return c.loggerTo(name, os.Stderr) }

// loggerTo is the logger of --log-level and --log-format writing to w.
func (c *commonFlags) loggerTo(name string, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.LevelFromString(c.logLevel), Output: w,
		JSONFormat: c.logFormat == "json"})
}

// parseDuration accepts Go durations (2s, 90m, 36h) and whole days (90d).
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("invalid number of days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	return d, nil
}

// parsePeers reads ID=HOST:PORT,ID=HOST:PORT.
func parsePeers(s string) ([]raftnode.Peer, error) {
	var peers []raftnode.Peer
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("peer %q is not ID=HOST:PORT", item)
		}
		if seen[id] {
			return nil, fmt.Errorf("peer %s is listed twice", id)
		}
		seen[id] = true
		peers = append(peers, raftnode.Peer{ID: id, Addr: addr})
	}
	return peers, nil
}

func runServe(args []string) int {
	fs := flag.NewFlagSet("kmsd serve", flag.ContinueOnError)
	var (
		c           commonFlags
		nodeID      = fs.String("node-id", "", "this node's ID (stable across restarts)")
		grpcAddr    = fs.String("grpc-addr", "", "gRPC listen address HOST:PORT")
		grpcAdv     = fs.String("grpc-advertise", "", "gRPC address other nodes use (default --grpc-addr)")
		raftAddr    = fs.String("raft-addr", "", "Raft address HOST:PORT (listened on and advertised)")
		dataDir     = fs.String("data-dir", "", "directory for the Raft log and snapshots")
		rootKeyFile = fs.String("root-key-file", "", "file holding the cluster root key (from kmsd gen-root-key)")
		peers       = fs.String("peers", "", "bootstrap voters ID=RAFTHOST:PORT,... (identical on every node)")
		join        = fs.String("join", "", "gRPC address of a cluster member to join through (instead of --peers)")
		awsAddr     = fs.String("aws-addr", "", "serve the AWS KMS protocol (SigV4) on HOST:PORT; HTTPS with the node's certificate under TLS")
		aws         awsFlags
		metricsAddr = fs.String("metrics-addr", "", "serve Prometheus metrics on HOST:PORT/metrics (off unless set)")
		_           = fs.String(configFlag, "", "read settings from this YAML file (keys are flag names; flags and RAFTKMS_* variables win)")
		rootPass    = fs.String("root-key-passphrase-file", "", "file holding the passphrase of a root key file sealed by 'kmsd seal-root-key'")
		restore     = fs.String("restore", "", "start a new cluster from a snapshot saved by 'kmsctl cluster snapshot save' (with --peers, on an empty --data-dir)")
	)
	aws.register(fs)
	var sec securityFlags
	sec.register(fs)
	c.register(fs, "info")
	if err := parseFlags(fs, args); err != nil {
		return usageErr(err)
	}
	if err := c.check(); err != nil {
		return usageErr(err)
	}
	if c.pprof && *metricsAddr == "" {
		return usageErr(errors.New("--pprof serves on the metrics listener: give --metrics-addr too"))
	}
	if *nodeID == "" || *grpcAddr == "" || *raftAddr == "" || *dataDir == "" || *rootKeyFile == "" {
		return usageErr(errors.New("--node-id, --grpc-addr, --raft-addr, --data-dir and --root-key-file are required"))
	}
	if (*peers == "") == (*join == "") {
		return usageErr(errors.New("give exactly one of --peers and --join"))
	}
	peerList, err := parsePeers(*peers)
	if err != nil {
		return usageErr(err)
	}
	if *restore != "" && *peers == "" {
		return usageErr(errors.New("--restore starts a new cluster: give it with --peers, not --join"))
	}
	limits, err := c.limits()
	if err != nil {
		return usageErr(err)
	}
	addrs := []string{*grpcAddr, *raftAddr, *grpcAdv, *join}
	if *awsAddr != "" {
		addrs = append(addrs, *awsAddr)
	}
	tlsCfg, auth, implicitInsecure, err := sec.build(addrs...)
	if err != nil {
		return usageErr(err)
	}
	audit, closeAudit, err := openAudit(sec.audit)
	if err != nil {
		return fail(err)
	}
	defer closeAudit()
	root, rootMode, err := readRootKeyFile(*rootKeyFile, *rootPass)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		return fail(err)
	}
	backup, err := openRestore(*restore)
	if err != nil {
		return fail(err)
	}
	log := c.logger("kmsd")
	logRootKeyFile(log, *rootKeyFile, rootMode, root)
	if implicitInsecure {
		log.Warn("no TLS configured: this node runs INSECURE (no client authentication, no key policies) and binds loopback only; " +
			"give --tls-cert, --tls-key and --tls-ca for a real cluster, or --insecure to say you mean it")
	}
	srv, err := server.Start(server.Config{
		NodeID:        *nodeID,
		GRPCAddr:      *grpcAddr,
		GRPCAdvertise: *grpcAdv,
		RaftAddr:      *raftAddr,
		DataDir:       *dataDir,
		RootKey:       root,
		Peers:         peerList,
		Join:          *join,
		Limits:        limits,
		StaleReads:    c.staleReads,
		ReadMode:      c.readMode,
		Logger:        log,
		TLS:           tlsCfg,
		Auth:          auth,
		Audit:         audit,
		AuditQueue:    rpc.DefaultAuditQueue,
		AWS:           server.AWS{Addr: *awsAddr},
		ARN:           aws.arn(),
		MaxClockSkew:  c.maxClockSkew,
		MetricsAddr:   *metricsAddr,
		PProf:         c.pprof,
		TuneRaft:      c.raft.tune,
		Restore:       backup,
	})
	if err != nil {
		return fail(err)
	}
	log.Info("kmsd serving", "version", buildinfo.Line("kmsd"), "node", *nodeID, "grpc", srv.Addr(), "raft", *raftAddr, "tls", tlsCfg != nil, "aws", srv.AWSURL())
	if !waitForSignalOr(srv.Failed()) {
		srv.Stop()
		return fail(srv.Err())
	}
	log.Info("shutting down")
	srv.Stop()
	return 0
}

func waitForSignal() { waitForSignalOr(nil) }

// waitForSignalOr waits for SIGINT or SIGTERM (true) or for failed to
// close (false).
func waitForSignalOr(failed <-chan struct{}) bool {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(ch)
	select {
	case <-ch:
		return true
	case <-failed:
		return false
	}
}

func usageErr(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(os.Stderr, "kmsd:", err)
	return 2
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "kmsd:", err)
	return 1
}
