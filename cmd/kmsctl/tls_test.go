package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkms/raftkms/pki"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// tlsFiles are a CA, a node certificate for 127.0.0.1 and a client
// certificate, as kmsd gen-certs writes them, plus a second CA that signed
// nothing of the cluster's.
type tlsFiles struct {
	dir                                          string
	ca, nodeCert, nodeKey, clientCert, clientKey string
	otherCA, strangerCert, strangerKey           string // a CA, and a client of it, that the cluster does not trust
}

func makeTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	if err := pki.WriteSet(dir, []string{"kms1"}, []string{"app"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	if err := pki.WriteSet(other, nil, []string{"stranger"}, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	return tlsFiles{
		dir: dir, ca: filepath.Join(dir, "ca.pem"),
		nodeCert: filepath.Join(dir, "kms1.pem"), nodeKey: filepath.Join(dir, "kms1-key.pem"),
		clientCert: filepath.Join(dir, "app.pem"), clientKey: filepath.Join(dir, "app-key.pem"),
		otherCA: filepath.Join(other, "ca.pem"), strangerCert: filepath.Join(other, "stranger.pem"), strangerKey: filepath.Join(other, "stranger-key.pem"),
	}
}

// startTLSFake serves the fake KMS over TLS that requires client
// certificates, as a production node does.
func startTLSFake(t *testing.T, f tlsFiles) string {
	t.Helper()
	cert, pool, err := pki.Files{Cert: f.nodeCert, Key: f.nodeKey, CA: f.ca}.Load()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(pki.ServerConfig(cert, pool))))
	kmsv1.RegisterKeyManagementServiceServer(gs, &fakeKMS{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// TestConnectionFailures checks that each way of failing to reach a node
// exits 255 with the AWS CLI's message and names the kmsctl flag that
// fixes it, and that none of them waits for --timeout: every case gives a
// long --timeout and must not end with a timeout message.
func TestConnectionFailures(t *testing.T) {
	f := makeTLSFiles(t)
	tlsAddr := startTLSFake(t, f)
	_, plainAddr := startFakeKMS(t)
	dead := deadAddr(t)
	httpSrv := httptest.NewServer(http.NotFoundHandler()) // an HTTP/1.1 server, like the AWS-protocol port
	t.Cleanup(httpSrv.Close)
	httpAddr := strings.TrimPrefix(httpSrv.URL, "http://")
	t.Setenv("RAFTKMS_CA", "")
	t.Setenv("RAFTKMS_CERT", "")
	t.Setenv("RAFTKMS_KEY", "")

	mtls := []string{"--ca", f.ca, "--cert", f.clientCert, "--key", f.clientKey}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string // substrings of stderr
	}{
		{"dead endpoint", []string{"--endpoints", dead}, exitOther,
			[]string{`Could not connect to the endpoint URL: "http://` + dead + `/"`, "connection refused"}},
		{"dead endpoint-url", []string{"--endpoint-url", "http://" + dead}, exitOther,
			[]string{`Could not connect to the endpoint URL: "http://` + dead + `/"`}},
		{"every endpoint dead", []string{"--endpoints", dead + "," + deadAddr(t)}, exitOther,
			[]string{"Could not connect to the endpoint URL"}},
		{"plaintext client, TLS node", []string{"--endpoints", tlsAddr}, exitOther,
			[]string{"the node speaks TLS", "--ca FILE", "--cert FILE --key FILE", "--endpoint-url https://" + tlsAddr}},
		{"TLS without a client certificate", []string{"--endpoints", tlsAddr, "--ca", f.ca}, exitOther,
			[]string{"SSL validation failed for https://" + tlsAddr, "requires a client certificate", "--cert FILE --key FILE"}},
		{"TLS with a CA that did not sign the node", append([]string{"--endpoints", tlsAddr}, "--ca", f.otherCA, "--cert", f.clientCert, "--key", f.clientKey),
			exitOther, []string{"SSL validation failed", "--ca FILE"}},
		{"a client certificate the node does not trust", []string{"--endpoints", tlsAddr, "--ca", f.ca, "--cert", f.strangerCert, "--key", f.strangerKey},
			exitOther, []string{"SSL validation failed", "refused the client certificate given by --cert"}},
		{"https endpoint-url, system roots", []string{"--endpoint-url", "https://" + tlsAddr}, exitOther,
			[]string{"SSL validation failed for https://" + tlsAddr, "--ca FILE"}},
		{"TLS client, plaintext node", append([]string{"--endpoints", plainAddr}, mtls...), exitOther,
			[]string{"the node does not speak TLS", "--endpoint-url http://" + plainAddr}},
		{"an HTTP/1.1 server", []string{"--endpoints", httpAddr}, exitOther,
			[]string{"answers HTTP/1.1, not gRPC", "gRPC port"}},
		{"cert without key", []string{"--endpoints", tlsAddr, "--ca", f.ca, "--cert", f.clientCert}, exitUsage,
			[]string{"--cert and --key go together"}},
		{"missing CA file", []string{"--endpoints", tlsAddr, "--ca", filepath.Join(f.dir, "nope.pem")}, exitOther,
			[]string{"Unable to load the CA file --ca"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"encrypt", "--key-id", "k", "--plaintext", "aGk=", "--timeout", "60s"}, tc.args...)
			code, out, errOut := runCLI(args...)
			t.Logf("stderr: %s", errOut)
			if code != tc.code || out != "" {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q", code, tc.code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			if strings.Contains(errOut, "timeout") || strings.Contains(errOut, "--tls-") {
				t.Errorf("stderr %q: a timeout, or the server's flags", errOut)
			}
		})
	}

	// With the right files the same node answers.
	code, out, errOut := runCLI(append([]string{"encrypt", "--key-id", "k", "--plaintext", "aGk=", "--endpoints", tlsAddr}, mtls...)...)
	if code != exitOK || !strings.Contains(out, `"CiphertextBlob": "YmxvYg=="`) {
		t.Fatalf("mutual TLS: exit %d, %q, %q", code, out, errOut)
	}
	// --endpoint-url https:// with --ca and a client certificate too.
	code, _, errOut = runCLI(append([]string{"encrypt", "--key-id", "k", "--plaintext", "aGk=", "--endpoint-url", "https://" + tlsAddr}, mtls...)...)
	if code != exitOK {
		t.Fatalf("https endpoint-url: exit %d, %q", code, errOut)
	}
	// One dead endpoint among live ones: the call moves on.
	code, _, errOut = runCLI("encrypt", "--key-id", "k", "--plaintext", "aGk=", "--endpoints", dead+","+plainAddr)
	if code != exitOK {
		t.Fatalf("dead endpoint first: exit %d, %q", code, errOut)
	}
}
