package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"google.golang.org/grpc"
	grpccreds "google.golang.org/grpc/credentials"
)

// TestServeAWSOverHTTPS runs `kmsd serve` with mutual TLS and --aws-addr:
// the AWS listener serves HTTPS with the node's certificate and asks for no
// client certificate (SigV4 authenticates); only an admin makes access keys;
// plain HTTP off loopback without TLS is refused at start.
func TestServeAWSOverHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs kmsd; skipped in -short mode")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kmsd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	key, err := exec.Command(bin, "gen-root-key").Output()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "root.key")
	os.WriteFile(keyFile, key, 0o600)
	certs := filepath.Join(dir, "certs")
	if out, err := exec.Command(bin, "gen-certs", "--out", certs, "--nodes", "kms1", "--clients", "admin,app").CombinedOutput(); err != nil {
		t.Fatalf("gen-certs: %v\n%s", err, out)
	}
	pem := func(name string) string { return filepath.Join(certs, name) }

	// Off loopback, without TLS, the AWS listener is refused.
	if out, err := exec.Command(bin, "serve", "--node-id", "kms1", "--grpc-addr", freePort(t), "--raft-addr", freePort(t),
		"--data-dir", filepath.Join(dir, "x"), "--root-key-file", keyFile, "--peers", "kms1=127.0.0.1:1",
		"--aws-addr", "0.0.0.0:0").CombinedOutput(); err == nil {
		t.Fatalf("serve with --aws-addr 0.0.0.0 and no TLS started: %s", out)
	}

	grpcAddr, raftAddr, awsAddr := freePort(t), freePort(t), freePort(t)
	cmd := exec.Command(bin, "serve", "--node-id", "kms1", "--grpc-addr", grpcAddr, "--raft-addr", raftAddr,
		"--data-dir", filepath.Join(dir, "kms1"), "--root-key-file", keyFile, "--peers", "kms1="+raftAddr,
		"--aws-addr", awsAddr, "--admin-identities", "admin", "--log-level", "warn",
		"--tls-cert", pem("kms1.pem"), "--tls-key", pem("kms1-key.pem"), "--tls-ca", pem("ca.pem"))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	caPEM, _ := os.ReadFile(pem("ca.pem"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dial := func(client string) clusterv1.ClusterServiceClient {
		c, err := tls.LoadX509KeyPair(pem(client+".pem"), pem(client+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(grpccreds.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{c}, RootCAs: pool, ServerName: "kms1"})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return clusterv1.NewClusterServiceClient(cc)
	}
	admin := dial("admin")
	var ak *clusterv1.AccessKey
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := admin.CreateAccessKey(ctx, &clusterv1.CreateAccessKeyRequest{Identity: "app"})
		cancel()
		if err == nil {
			ak = resp.GetAccessKey()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CreateAccessKey: %v", err)
		}
		time.Sleep(200 * time.Millisecond) // poll until the node leads and serves, bounded by the deadline
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := dial("app").CreateAccessKey(ctx, &clusterv1.CreateAccessKeyRequest{Identity: "app"}); err == nil {
		t.Fatal("a client that is not an admin made an access key")
	}

	client := func(rootCAs *x509.CertPool) *kms.Client {
		return kms.New(kms.Options{Region: "us-east-1", BaseEndpoint: aws.String("https://" + awsAddr),
			Credentials: credentials.NewStaticCredentialsProvider(ak.GetAccessKeyId(), ak.GetSecretAccessKey(), ""),
			HTTPClient:  &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rootCAs}}}})
	}
	k := client(pool)
	created, err := k.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("over https")})
	if err != nil {
		t.Fatalf("CreateKey over HTTPS: %v", err)
	}
	enc, err := k.Encrypt(ctx, &kms.EncryptInput{KeyId: created.KeyMetadata.KeyId, Plaintext: []byte("tls")})
	if err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	dec, err := k.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob})
	if err != nil || string(dec.Plaintext) != "tls" {
		t.Fatalf("Decrypt: %q %v", dec.Plaintext, err)
	}
	_, err = client(x509.NewCertPool()).ListKeys(ctx, &kms.ListKeysInput{})
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Fatalf("a client that does not trust the cluster CA: %v", err)
	}
	resp, err := http.Post("http://"+awsAddr, "application/x-amz-json-1.1", nil)
	if err == nil && resp.StatusCode == http.StatusOK {
		t.Fatal("plain HTTP served on the HTTPS listener")
	}
	if err == nil {
		resp.Body.Close()
	}
}
