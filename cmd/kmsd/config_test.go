package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/raftnode"
	"github.com/raftkms/raftkms/server"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kmsd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The command line wins over the environment, which wins over the file,
// which wins over the defaults; lists become comma-separated values.
func TestConfigFilePrecedence(t *testing.T) {
	path := writeFile(t, `
node-id: from-file
grpc-addr: 127.0.0.1:1
raft-addr: 127.0.0.1:2
peers: [kms1=127.0.0.1:7101, kms2=127.0.0.1:7102]
raft-heartbeat-timeout: 1500ms
stale-reads: true
on-demand-rotation-limit: 7
`)
	fs := flag.NewFlagSet("kmsd serve", flag.ContinueOnError)
	var c commonFlags
	c.register(fs, "info")
	nodeID := fs.String("node-id", "", "")
	grpcAddr := fs.String("grpc-addr", "", "")
	raftAddr := fs.String("raft-addr", "", "")
	peers := fs.String("peers", "", "")
	dataDir := fs.String("data-dir", "/default", "")
	fs.String(configFlag, "", "")
	t.Setenv("RAFTKMS_GRPC_ADDR", "127.0.0.1:3")
	t.Setenv("RAFTKMS_CONFIG", path)
	if err := parseFlags(fs, []string{"--node-id", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"node-id (flag over file)", *nodeID, "from-flag"},
		{"grpc-addr (environment over file)", *grpcAddr, "127.0.0.1:3"},
		{"raft-addr (file)", *raftAddr, "127.0.0.1:2"},
		{"peers (list)", *peers, "kms1=127.0.0.1:7101,kms2=127.0.0.1:7102"},
		{"data-dir (default)", *dataDir, "/default"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if c.raft.heartbeat != 1500*time.Millisecond || !c.staleReads || c.onDemandLimit != 7 {
		t.Errorf("typed settings from the file: heartbeat %v stale-reads %v limit %d", c.raft.heartbeat, c.staleReads, c.onDemandLimit)
	}
	if _, err := parsePeers(*peers); err != nil {
		t.Errorf("peers from the file do not parse: %v", err)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for name, body := range map[string]string{
		"unknown setting":  "node-idd: kms1\n",
		"not YAML":         "node-id: [unclosed\n",
		"nested mapping":   "node-id: {a: b}\n",
		"config in config": "config: other.yaml\n",
		"bad duration":     "raft-heartbeat-timeout: soon\n",
		"comma in a list":  "peers: ['a=b:1,c=d:2']\n",
		"not a mapping":    "- node-id\n",
		"empty value":      "node-id:\n",
	} {
		t.Run(name, func(t *testing.T) {
			fs := flag.NewFlagSet("kmsd serve", flag.ContinueOnError)
			fs.String("node-id", "", "")
			fs.String("peers", "", "")
			fs.Duration("raft-heartbeat-timeout", time.Second, "")
			fs.String(configFlag, "", "")
			if err := parseFlags(fs, []string{"--config", writeFile(t, body)}); err == nil {
				t.Fatalf("config %q accepted", body)
			}
		})
	}
	// kmsd serve itself refuses the file with a usage error.
	if code := run([]string{"serve", "--config", writeFile(t, "no-such-flag: 1\n")}); code != 2 {
		t.Fatalf("kmsd serve with a bad config file exited %d, want 2", code)
	}
	if code := run([]string{"serve", "--config", filepath.Join(t.TempDir(), "missing.yaml")}); code != 2 {
		t.Fatalf("kmsd serve with a missing config file exited %d, want 2", code)
	}
}

func TestCommonFlagChecks(t *testing.T) {
	for _, args := range [][]string{
		{"--log-format", "xml"},
		{"--log-level", "loud"},
		{"--raft-heartbeat-timeout", "0s"},
		{"--raft-heartbeat-timeout", "100ms", "--raft-leader-lease-timeout", "200ms"},
		{"--raft-trailing-logs", "0"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		var c commonFlags
		c.register(fs, "info")
		if err := parseFlags(fs, args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if err := c.check(); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if code := run([]string{"serve", "--pprof", "--node-id", "a"}); code != 2 {
		t.Errorf("--pprof without --metrics-addr exited %d, want 2", code)
	}
	if code := run([]string{"--version"}); code != 0 {
		t.Errorf("kmsd --version exited %d", code)
	}
}

// lockedBuffer is a log sink shared by a node's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// --log-format json writes one JSON object per line, and each component's
// logger is named once under kmsd (kmsd.rotation, kmsd.raft, kmsd.rpc).
func TestJSONLogsNamedOnce(t *testing.T) {
	var out lockedBuffer
	c := commonFlags{logLevel: "info", logFormat: "json"}
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raftAddr, grpcAddr := freePort(t), freePort(t)
	srv, err := server.Start(server.Config{
		NodeID: "kms1", GRPCAddr: grpcAddr, RaftAddr: raftAddr, DataDir: t.TempDir(), RootKey: root,
		Peers:  []raftnode.Peer{{ID: "kms1", Addr: raftAddr}},
		Logger: c.loggerTo("kmsd", &out),
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), `"kmsd.rotation"`) || !srv.Serving() {
		if time.Now().After(deadline) {
			t.Fatalf("no rotation log line and no serving node:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Stop()
	modules := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		mod, _ := line["@module"].(string)
		modules[mod] = true
		parts := strings.Split(mod, ".")
		for i := 1; i < len(parts); i++ {
			if parts[i] == parts[i-1] {
				t.Errorf("logger name %q repeats %q", mod, parts[i])
			}
		}
	}
	for _, want := range []string{"kmsd.rotation", "kmsd.raft"} {
		if !modules[want] {
			t.Errorf("no log line from %s; modules: %v", want, modules)
		}
	}
}
