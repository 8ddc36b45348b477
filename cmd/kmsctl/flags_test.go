package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestGlobalFlagsBeforeAndAfterCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--endpoints", "h1:1,h2:2", "--output", "text", "--query", "KeyId", "--stale-ok", "--timeout", "5s", "describe-key", "--key-id", "k"},
		{"describe-key", "--endpoints", "h1:1,h2:2", "--key-id", "k", "--output", "text", "--query", "KeyId", "--stale-ok", "--timeout=5s"},
		{"describe-key", "--key-id", "k", "--endpoints=h1:1,h2:2", "--output=text", "--query=KeyId", "--stale-ok", "--timeout", "5s"},
		{"--output", "text", "describe-key", "--query", "KeyId", "--key-id=k", "--endpoints", "h1:1,h2:2", "--stale-ok=true", "--timeout", "5s"},
	} {
		p, err := parseArgs(args)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		g := p.params.global
		if p.cmd == nil || p.cmd.name != "describe-key" || p.params.str("key-id") != "k" {
			t.Fatalf("%q: command or --key-id lost", args)
		}
		if g.endpoints != "h1:1,h2:2" || g.output != "text" || g.query != "KeyId" || !g.hasQuery || !g.staleOK || g.timeout != 5*time.Second {
			t.Fatalf("%q: globals = %+v", args, g)
		}
	}
}

func TestParseArgs(t *testing.T) {
	p, err := parseArgs([]string{"cluster", "--output", "json", "status"})
	if err != nil || p.cmd == nil || p.cmd.name != "cluster status" {
		t.Fatalf("cluster status: %+v, %v", p, err)
	}
	p, err = parseArgs([]string{"tag-resource", "--key-id", "k", "--tags", "TagKey=a,TagValue=1", "TagKey=b,TagValue=2", "--output", "text"})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.params.list("tags"); !reflect.DeepEqual(got, []string{"TagKey=a,TagValue=1", "TagKey=b,TagValue=2"}) {
		t.Fatalf("--tags = %q", got)
	}
	p, err = parseArgs([]string{"create-key", "--managed", "--no-bypass-policy-lockout-safety-check"})
	if err != nil || !p.params.flag("managed") || p.params.flag("bypass-policy-lockout-safety-check") || !p.params.has("bypass-policy-lockout-safety-check") {
		t.Fatalf("bools: %+v, %v", p, err)
	}
	p, err = parseArgs([]string{"encrypt", "--key-id", "k", "--plaintext", "-not-a-flag"})
	if err != nil || p.params.str("plaintext") != "-not-a-flag" {
		t.Fatalf("value with a dash: %v", err)
	}
	if p, err = parseArgs([]string{"encrypt", "help"}); err != nil || !p.help {
		t.Fatalf("help after a command: %v", err)
	}
	if _, err = parseArgs([]string{"list-keys", "--region", "us-east-1", "--profile", "x", "--no-cli-pager"}); err != nil {
		t.Fatalf("ignored AWS globals: %v", err)
	}

	for _, bad := range [][]string{
		{"no-such-command"},
		{"describe-key"},                                     // --key-id is required
		{"describe-key", "--key-id"},                         // no value
		{"describe-key", "--key-id", "--output", "json"},     // a flag where a value belongs
		{"describe-key", "--key-id", "k", "--bogus", "1"},    // unknown flag
		{"--key-id", "k", "describe-key"},                    // command flags go after the command
		{"describe-key", "--key-id", "k", "extra"},           // stray positional
		{"describe-key", "--key-id", "k", "--output", "xml"}, // bad choice
		{"describe-key", "--key-id", "k", "--cli-binary-format", "raw"},
		{"describe-key", "--key-id", "k", "--query", "Keys["},
		{"describe-key", "--key-id", "k", "--timeout", "soon"},
		{"cluster", "explode"},
		{"tag-resource", "--key-id", "k", "--tags"},
		{"create-key", "--managed=maybe"},
	} {
		if _, err := parseArgs(bad); !isUsage(err) {
			t.Errorf("parseArgs(%q) = %v, want a usage error", bad, err)
		}
	}
}

func TestEndpointsDefault(t *testing.T) {
	t.Setenv("RAFTKMS_ENDPOINTS", "")
	if g := defaultGlobals(); g.endpoints != "127.0.0.1:7001" {
		t.Fatalf("default endpoints %q", g.endpoints)
	}
	t.Setenv("RAFTKMS_ENDPOINTS", "a:1,b:2")
	if g := defaultGlobals(); g.endpoints != "a:1,b:2" {
		t.Fatalf("endpoints from the environment %q", g.endpoints)
	}
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUsageExitCodes(t *testing.T) {
	if code, out, _ := runCLI("help"); code != 0 || !strings.Contains(out, "encrypt") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, out, _ := runCLI("encrypt", "help"); code != 0 || !strings.Contains(out, "--plaintext") {
		t.Fatalf("encrypt help: %d %q", code, out)
	}
	if code, _, errOut := runCLI(); code != exitUsage || !strings.Contains(errOut, "usage:") {
		t.Fatalf("no command: %d %q", code, errOut)
	}
	code, _, errOut := runCLI("frobnicate-key")
	if code != exitUsage || !strings.Contains(errOut, "kmsctl: error: argument command: Invalid choice") {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	code, _, errOut = runCLI("encrypt", "--key-id", "k", "--plaintext", "not base64!", "--endpoints", "127.0.0.1:1")
	if code != exitOther || errOut != "\nInvalid base64: \"not base64!\" (--plaintext takes base64; use fileb://PATH for raw bytes)\n" {
		t.Fatalf("bad base64: %d %q", code, errOut)
	}
}

// fakeKMS records requests and answers from fixed values, to test what the
// CLI sends and prints without a cluster.
type fakeKMS struct {
	kmsv1.UnimplementedKeyManagementServiceServer
	mu      sync.Mutex
	encrypt *kmsv1.EncryptRequest
	md      metadata.MD
	pages   int
}

func (f *fakeKMS) Encrypt(ctx context.Context, req *kmsv1.EncryptRequest) (*kmsv1.EncryptResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.encrypt = req
	f.md, _ = metadata.FromIncomingContext(ctx)
	return &kmsv1.EncryptResponse{CiphertextBlob: []byte("blob"), KeyId: "arn:" + req.KeyId, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}, nil
}

func (f *fakeKMS) DescribeKey(ctx context.Context, req *kmsv1.DescribeKeyRequest) (*kmsv1.DescribeKeyResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.md, _ = metadata.FromIncomingContext(ctx)
	return nil, status.Error(codes.NotFound, "NotFoundException: key "+req.KeyId+" is not found")
}

// ListKeys serves keys k0..k4 two at a time.
func (f *fakeKMS) ListKeys(_ context.Context, req *kmsv1.ListKeysRequest) (*kmsv1.ListKeysResponse, error) {
	f.mu.Lock()
	f.pages++
	f.mu.Unlock()
	start := 0
	if req.Marker != "" {
		start = int(req.Marker[1] - '0')
	}
	limit := int(req.Limit)
	if limit == 0 || limit > 2 {
		limit = 2
	}
	resp := &kmsv1.ListKeysResponse{}
	end := min(start+limit, 5)
	for i := start; i < end; i++ {
		id := "k" + string(rune('0'+i))
		resp.Keys = append(resp.Keys, &kmsv1.KeyListEntry{KeyId: id, KeyArn: "arn:" + id})
	}
	if end < 5 {
		resp.Truncated, resp.NextMarker = true, "m"+string(rune('0'+end))
	}
	return resp, nil
}

func startFakeKMS(t *testing.T) (*fakeKMS, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKMS{}
	gs := grpc.NewServer()
	kmsv1.RegisterKeyManagementServiceServer(gs, f)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return f, lis.Addr().String()
}

func TestRunAgainstFake(t *testing.T) {
	f, addr := startFakeKMS(t)
	plainPath := filepath.Join(t.TempDir(), "plain.bin")
	if err := os.WriteFile(plainPath, []byte{0, 1, 2}, 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := runCLI("encrypt", "--key-id", "alias/app", "--plaintext", "fileb://"+plainPath,
		"--encryption-context", "purpose=test,dept=IT", "--endpoints", addr, "--stale-ok")
	if code != 0 {
		t.Fatalf("encrypt: %d %s", code, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if doc["CiphertextBlob"] != "YmxvYg==" || doc["KeyId"] != "arn:alias/app" || doc["EncryptionAlgorithm"] != "SYMMETRIC_DEFAULT" {
		t.Fatalf("encrypt output %s", out)
	}
	f.mu.Lock()
	req, md := f.encrypt, f.md
	f.mu.Unlock()
	if !bytes.Equal(req.Plaintext, []byte{0, 1, 2}) || !reflect.DeepEqual(req.EncryptionContext, map[string]string{"purpose": "test", "dept": "IT"}) {
		t.Fatalf("server got %v", req)
	}
	if got := md.Get("x-raftkms-stale-ok"); len(got) != 1 || got[0] != "true" {
		t.Fatalf("stale-ok header %q", got)
	}
	if got := md.Get("x-raftkms-request-id"); len(got) != 1 || len(got[0]) != 32 {
		t.Fatalf("request id %q", got)
	}

	code, out, _ = runCLI("--endpoints", addr, "--cli-binary-format", "raw-in-base64-out", "encrypt", "--key-id", "k",
		"--plaintext", "hello world", "--query", "CiphertextBlob", "--output", "text")
	if code != 0 || out != "YmxvYg==\n" {
		t.Fatalf("text query: %d %q", code, out)
	}
	f.mu.Lock()
	if string(f.encrypt.Plaintext) != "hello world" {
		t.Fatalf("raw-in-base64-out sent %q", f.encrypt.Plaintext)
	}
	f.mu.Unlock()

	code, out, errOut = runCLI("describe-key", "--key-id", "nope", "--endpoints", addr)
	if code != exitService || out != "" || errOut != "\nAn error occurred (NotFoundException) when calling the DescribeKey operation: key nope is not found\n" {
		t.Fatalf("service error: %d %q %q", code, out, errOut)
	}
}

func TestListPagination(t *testing.T) {
	f, addr := startFakeKMS(t)
	pages := func() int {
		f.mu.Lock()
		defer f.mu.Unlock()
		n := f.pages
		f.pages = 0
		return n
	}

	code, out, errOut := runCLI("list-keys", "--endpoints", addr, "--query", "Keys[].KeyId", "--output", "text")
	if code != 0 || out != "k0\tk1\tk2\tk3\tk4\n" || pages() != 3 {
		t.Fatalf("auto-pagination: %d %q %s", code, out, errOut)
	}
	code, out, _ = runCLI("list-keys", "--endpoints", addr, "--limit", "2")
	want := "{\n    \"Keys\": [\n        {\n            \"KeyId\": \"k0\",\n            \"KeyArn\": \"arn:k0\"\n        },\n" +
		"        {\n            \"KeyId\": \"k1\",\n            \"KeyArn\": \"arn:k1\"\n        }\n    ],\n" +
		"    \"NextMarker\": \"m2\",\n    \"Truncated\": true\n}\n"
	if code != 0 || out != want || pages() != 1 {
		t.Fatalf("manual page:\n%s", out)
	}
	code, out, _ = runCLI("list-keys", "--endpoints", addr, "--marker", "m4", "--query", "[Keys[].KeyId, Truncated]", "--output", "json")
	if code != 0 || strings.Join(strings.Fields(out), "") != `[["k4"],false]` {
		t.Fatalf("last page: %q", out)
	}
	pages()
	code, out, _ = runCLI("list-keys", "--endpoints", addr, "--max-items", "3", "--query", "[Keys[].KeyId, NextToken]")
	if code != 0 || strings.Join(strings.Fields(out), "") != `[["k0","k1","k2"],"m3"]` {
		t.Fatalf("max-items: %q", out)
	}
	code, out, _ = runCLI("list-keys", "--endpoints", addr, "--starting-token", "m3", "--query", "Keys[].KeyId")
	if code != 0 || strings.Join(strings.Fields(out), "") != `["k3","k4"]` {
		t.Fatalf("starting-token: %q", out)
	}
}
