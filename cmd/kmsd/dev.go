package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/server"
)

// runDev runs a whole cluster in one process on 127.0.0.1, with a generated
// root key. It is insecure and binds loopback only.
func runDev(args []string) int {
	fs := flag.NewFlagSet("kmsd dev", flag.ContinueOnError)
	var (
		c        commonFlags
		nodes    = fs.Int("nodes", 3, "number of nodes")
		grpcPort = fs.Int("grpc-port", 7001, "gRPC port of node 1; node i listens on grpc-port+i-1")
		raftPort = fs.Int("raft-port", 7101, "Raft port of node 1; node i listens on raft-port+i-1")
		dataDir  = fs.String("data-dir", "", "keep the cluster's data (and its root key) here; default: a temporary directory removed on exit")
		awsPort  = fs.Int("aws-port", 7201, "AWS KMS protocol (HTTP, SigV4) port of node 1; node i listens on aws-port+i-1; 0 turns it off")
		aws      awsFlags
		metrics  = fs.Int("metrics-port", 0, "serve Prometheus metrics of node 1 on this port (node i on metrics-port+i-1); off unless set")
		auditLog = fs.String("audit-log", "", "append one JSON line per call of every node to this file (- for stdout)")
		restore  = fs.String("restore", "", "start the cluster from a snapshot saved by 'kmsctl cluster snapshot save' (needs the saving cluster's --root-key-file)")
		rootFile = fs.String("root-key-file", "", "use this root key file instead of generating a root key")
	)
	aws.register(fs)
	c.register(fs, "warn")
	if err := parseFlags(fs, args); err != nil {
		return usageErr(err)
	}
	if *nodes < 1 || *nodes > 9 {
		return usageErr(fmt.Errorf("--nodes must be 1..9"))
	}
	if err := c.check(); err != nil {
		return usageErr(err)
	}
	if c.pprof && *metrics == 0 {
		return usageErr(errors.New("--pprof serves on the metrics listener: give --metrics-port too"))
	}
	if *metrics < 0 || *metrics+*nodes-1 > 65535 {
		return usageErr(fmt.Errorf("--metrics-port %d is not a port", *metrics))
	}
	audit, closeAudit, err := openAudit(*auditLog)
	if err != nil {
		return fail(err)
	}
	defer closeAudit()
	if audit != nil {
		audit = &syncWriter{w: audit} // every node writes to it
	}
	limits, err := c.limits()
	if err != nil {
		return usageErr(err)
	}
	dir := *dataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "raftkms-dev-"); err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
	}
	var root *keycrypto.RootKey
	if *rootFile != "" {
		root, _, err = readRootKeyFile(*rootFile, "")
	} else {
		root, err = devRootKey(dir, *dataDir != "")
	}
	if err != nil {
		return fail(err)
	}
	backup, err := openRestore(*restore)
	if err != nil {
		return fail(err)
	}

	cluster, err := server.StartLocal(server.LocalConfig{
		Nodes:        *nodes,
		Dir:          dir,
		GRPCPort:     *grpcPort,
		RaftPort:     *raftPort,
		RootKey:      root,
		Limits:       limits,
		StaleReads:   c.staleReads,
		ReadMode:     c.readMode,
		Logger:       c.logger("kmsd"),
		AWSPort:      *awsPort,
		ARN:          aws.arn(),
		MaxClockSkew: c.maxClockSkew,
		TuneRaft:     c.raft.tune,
		MetricsPort:  *metrics,
		PProf:        c.pprof,
		Audit:        audit,
		AuditQueue:   rpc.DefaultAuditQueue,
		Restore:      backup,
	})
	if err != nil {
		return fail(err)
	}
	defer cluster.Stop()
	endpoints := cluster.Endpoints()
	eps := strings.Join(endpoints, ",")
	fmt.Printf(`raftkms dev cluster: %d nodes on 127.0.0.1 (insecure, data in %s)
  endpoints: %s%s

try:
  export RAFTKMS_ENDPOINTS=%s
  go run ./cmd/kmsctl create-key --description demo
  go run ./cmd/kmsctl encrypt --key-id KEY_ID --plaintext $(printf hello | base64)
  go run ./cmd/kmsctl cluster status

`, *nodes, dir, eps, metricsLine(*metrics, *nodes), eps)
	if awsEps := cluster.AWSEndpoints(); len(awsEps) > 0 {
		key, err := createDevAccessKey(cluster)
		if err != nil {
			return fail(fmt.Errorf("creating the dev access key: %w", err))
		}
		printAWSSetup(key, aws.region, awsEps)
	}
	fmt.Println("\nCtrl-C stops the cluster.")
	waitForSignal()
	fmt.Println("stopping")
	return 0
}

// metricsLine says where a dev cluster's metrics are, if anywhere.
func metricsLine(port, nodes int) string {
	if port == 0 {
		return ""
	}
	urls := make([]string, nodes)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://127.0.0.1:%d/metrics", port+i)
	}
	return "\n  metrics:   " + strings.Join(urls, " ")
}

// syncWriter serializes writes from several nodes to one audit log.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// devRootKey makes a root key for a dev cluster; with a kept data dir it is
// stored there (mode 0600) so that the cluster can be restarted.
func devRootKey(dir string, keep bool) (*keycrypto.RootKey, error) {
	path := filepath.Join(dir, "root.key")
	if keep {
		if raw, err := os.ReadFile(path); err == nil {
			return keycrypto.ParseRootKey(raw)
		}
	}
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if keep {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, keycrypto.EncodeRootKey(root), 0o600); err != nil {
			return nil, err
		}
	}
	return root, nil
}
