package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// devCluster is a running `kmsd dev` process and what it printed.
type devCluster struct {
	awsURLs    []string
	id, secret string
	region     string
}

// portsFree reports whether n consecutive loopback ports from base are free.
func portsFree(base, n int) bool {
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// freeBase finds a base port with three free ports after it.
func freeBase(t *testing.T) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		base := 20000 + rand.IntN(30000)
		if portsFree(base, 3) {
			return base
		}
	}
	t.Fatal("no three consecutive free ports")
	return 0
}

// startDev builds kmsd, runs `kmsd dev` with an AWS listener and reads the
// access key it prints.
func startDev(t *testing.T) *devCluster {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "kmsd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	g, r := freeBase(t), freeBase(t)
	a := freeBase(t)
	cmd := exec.Command(bin, "dev", "--grpc-port", fmt.Sprint(g), "--raft-port", fmt.Sprint(r), "--aws-port", fmt.Sprint(a))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	d := &devCluster{}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("kmsd dev exited before printing its access key; stderr:\n%s", stderr.String())
			}
			line = strings.TrimSpace(line)
			if v, ok := strings.CutPrefix(line, "export AWS_ACCESS_KEY_ID="); ok {
				d.id = v
			}
			if v, ok := strings.CutPrefix(line, "export AWS_SECRET_ACCESS_KEY="); ok {
				d.secret = v
			}
			if v, ok := strings.CutPrefix(line, "export AWS_DEFAULT_REGION="); ok {
				d.region = v
			}
			if strings.HasPrefix(line, "Ctrl-C stops") {
				if d.id == "" || d.secret == "" || d.region == "" {
					t.Fatal("kmsd dev printed no access key")
				}
				go func() {
					for range lines {
					}
				}()
				for i := 0; i < 3; i++ {
					d.awsURLs = append(d.awsURLs, fmt.Sprintf("http://127.0.0.1:%d", a+i))
				}
				return d
			}
		case <-deadline:
			t.Fatalf("kmsd dev did not come up; stderr:\n%s", stderr.String())
		}
	}
}

// TestDevAWSProtocol: `kmsd dev` serves the AWS protocol on every node with
// the access key it prints; the AWS SDK for Go uses it as printed.
func TestDevAWSProtocol(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs kmsd; skipped in -short mode")
	}
	d := startDev(t)
	if d.region != "us-east-1" {
		t.Fatalf("default region %q", d.region)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := func(i int, secret string) *kms.Client {
		return kms.New(kms.Options{Region: d.region, BaseEndpoint: aws.String(d.awsURLs[i]), RetryMaxAttempts: 10,
			Credentials: credentials.NewStaticCredentialsProvider(d.id, secret, "")})
	}
	created, err := client(1, d.secret).CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("dev")})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	enc, err := client(2, d.secret).Encrypt(ctx, &kms.EncryptInput{KeyId: created.KeyMetadata.KeyId, Plaintext: []byte("hi")})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	dec, err := client(0, d.secret).Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "hi" {
		t.Fatalf("Decrypt: %q %v", dec.Plaintext, err)
	}
	_, err = client(0, strings.Repeat("x", 40)).ListKeys(ctx, &kms.ListKeysInput{})
	var sig interface{ ErrorCode() string }
	if !errors.As(err, &sig) || sig.ErrorCode() != "InvalidSignatureException" {
		t.Fatalf("a wrong secret: %v", err)
	}
	_, err = client(0, d.secret).DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String("alias/none")})
	var nf *types.NotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("DescribeKey of a missing alias: %v", err)
	}
}

// awsCLI finds the aws CLI: Debian's (v2) first, then any on PATH. It
// returns the binary and the exit code it uses for a service error (254 in
// v2, 255 in v1).
func awsCLI(t *testing.T) (string, int) {
	t.Helper()
	for _, cand := range []string{"/usr/bin/aws", "aws"} {
		path, err := exec.LookPath(cand)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "--version").CombinedOutput()
		if err != nil {
			continue
		}
		if strings.HasPrefix(string(out), "aws-cli/2.") {
			return path, 254
		}
		if strings.HasPrefix(string(out), "aws-cli/1.") {
			return path, 255
		}
	}
	t.Skip("the aws CLI is not installed (Debian: apt-get install awscli); skipping the aws CLI tour")
	return "", 0
}

// TestAWSCLITour drives the aws CLI against `kmsd dev` with --endpoint-url:
// the commands of README's kmsctl tour, fileb:// round trips, --query, and
// the exit code and message of service errors.
func TestAWSCLITour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs kmsd; skipped in -short mode")
	}
	bin, serviceExit := awsCLI(t)
	d := startDev(t)
	dir := t.TempDir()
	env := append(os.Environ(), "HOME="+dir, "AWS_CONFIG_FILE="+filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"), "AWS_ACCESS_KEY_ID="+d.id,
		"AWS_SECRET_ACCESS_KEY="+d.secret, "AWS_DEFAULT_REGION="+d.region, "AWS_PAGER=", "AWS_EC2_METADATA_DISABLED=true")
	run := func(node int, args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--endpoint-url", d.awsURLs[node], "kms"}, args...)...)
		cmd.Env = env
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("aws %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(out.String()), errOut.String(), code
	}
	ok := func(node int, args ...string) string {
		t.Helper()
		out, errOut, code := run(node, args...)
		if code != 0 {
			t.Fatalf("aws kms %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	fails := func(exception string, node int, args ...string) {
		t.Helper()
		_, errOut, code := run(node, args...)
		if code != serviceExit || !strings.Contains(errOut, "An error occurred ("+exception+")") {
			t.Fatalf("aws kms %s: exit %d, stderr %q; want exit %d and %s", strings.Join(args, " "), code, errOut, serviceExit, exception)
		}
	}

	keyID := ok(1, "create-key", "--description", "tour", "--query", "KeyMetadata.KeyId", "--output", "text")
	if len(keyID) != 36 {
		t.Fatalf("create-key gave key ID %q", keyID)
	}
	ok(2, "create-alias", "--alias-name", "alias/tour", "--target-key-id", keyID)
	if s := ok(0, "describe-key", "--key-id", "alias/tour", "--query", "KeyMetadata.KeyState", "--output", "text"); s != "Enabled" {
		t.Fatalf("describe-key state %q", s)
	}
	arn := ok(0, "describe-key", "--key-id", keyID, "--query", "KeyMetadata.Arn", "--output", "text")
	if arn != "arn:aws:kms:us-east-1:000000000000:key/"+keyID {
		t.Fatalf("key ARN %q", arn)
	}
	if n := ok(2, "list-keys", "--query", "length(Keys)"); n != "1" {
		t.Fatalf("list-keys: %s keys", n)
	}
	if a := ok(1, "list-aliases", "--query", "Aliases[0].AliasName", "--output", "text"); a != "alias/tour" {
		t.Fatalf("list-aliases: %q", a)
	}

	plain := filepath.Join(dir, "plain.bin")
	secret := []byte("top secret \x00\x01\xff bytes")
	os.WriteFile(plain, secret, 0o600)
	ct64 := ok(2, "encrypt", "--key-id", "alias/tour", "--plaintext", "fileb://"+plain,
		"--encryption-context", "app=tour", "--query", "CiphertextBlob", "--output", "text")
	ct, err := base64.StdEncoding.DecodeString(ct64)
	if err != nil {
		t.Fatalf("CiphertextBlob %q: %v", ct64, err)
	}
	ctFile := filepath.Join(dir, "ct.bin")
	os.WriteFile(ctFile, ct, 0o600)
	pt64 := ok(0, "decrypt", "--ciphertext-blob", "fileb://"+ctFile, "--encryption-context", "app=tour",
		"--query", "Plaintext", "--output", "text")
	if pt, _ := base64.StdEncoding.DecodeString(pt64); !bytes.Equal(pt, secret) {
		t.Fatalf("decrypt gave %q", pt)
	}
	fails("InvalidCiphertextException", 1, "decrypt", "--ciphertext-blob", "fileb://"+ctFile, "--encryption-context", "app=other")
	if n := ok(1, "generate-data-key", "--key-id", keyID, "--key-spec", "AES_256", "--query", "length(Plaintext)"); n != "44" {
		t.Fatalf("generate-data-key plaintext of %s base64 characters", n)
	}

	ok(2, "enable-key-rotation", "--key-id", keyID)
	if s := ok(0, "get-key-rotation-status", "--key-id", keyID, "--query", "KeyRotationEnabled", "--output", "text"); s != "True" {
		t.Fatalf("get-key-rotation-status: %q", s)
	}
	ok(1, "tag-resource", "--key-id", keyID, "--tags", "TagKey=team,TagValue=payments")
	if v := ok(2, "list-resource-tags", "--key-id", keyID, "--query", "Tags[?TagKey=='team'].TagValue | [0]", "--output", "text"); v != "payments" {
		t.Fatalf("list-resource-tags: %q", v)
	}
	ok(0, "disable-key", "--key-id", keyID)
	fails("DisabledException", 1, "encrypt", "--key-id", keyID, "--plaintext", "fileb://"+plain)
	ok(2, "enable-key", "--key-id", keyID)
	fails("NotFoundException", 0, "describe-key", "--key-id", "alias/missing")
	if days := ok(1, "schedule-key-deletion", "--key-id", keyID, "--pending-window-in-days", "7",
		"--query", "PendingWindowInDays", "--output", "text"); days != "7" {
		t.Fatalf("schedule-key-deletion: %q", days)
	}
	fails("KMSInvalidStateException", 2, "encrypt", "--key-id", keyID, "--plaintext", "fileb://"+plain)

	// A wrong secret is refused.
	cmd := exec.Command(bin, "--endpoint-url", d.awsURLs[0], "kms", "list-keys")
	cmd.Env = append(append([]string{}, env...), "AWS_SECRET_ACCESS_KEY="+strings.Repeat("y", 40))
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "InvalidSignatureException") {
		t.Fatalf("a wrong secret: %s", out)
	}
}
