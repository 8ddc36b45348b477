package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/raftkms/raftkms/keycrypto"
	"github.com/raftkms/raftkms/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func runGenRootKey(args []string) int {
	fs := flag.NewFlagSet("kmsd gen-root-key", flag.ContinueOnError)
	var output string
	const outputUsage = "write the key to this new file (mode 0600; never overwrites) instead of stdout"
	fs.StringVar(&output, "output", "", outputUsage)
	fs.StringVar(&output, "o", "", outputUsage+" (short for --output)")
	if err := parseFlags(fs, args); err != nil {
		return usageErr(err)
	}
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		return fail(err)
	}
	enc := keycrypto.EncodeRootKey(root)
	defer clear(enc)
	if output == "" {
		os.Stdout.Write(enc)
		return 0
	}
	if err := writeRootKeyFile(output, enc); err != nil {
		return fail(err)
	}
	fmt.Fprintf(os.Stderr, "kmsd: wrote a new root key (ID %s) to %s, mode 0600\n", root.ID(), output)
	return 0
}

// runHealth asks a node's standard gRPC health service; exit 0 = SERVING.
func runHealth(args []string) int {
	fs := flag.NewFlagSet("kmsd health", flag.ContinueOnError)
	addr := fs.String("grpc-addr", "127.0.0.1:7001", "node to check")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after")
	var files pki.Files
	fs.StringVar(&files.Cert, "tls-cert", "", "client certificate (PEM) for a TLS node")
	fs.StringVar(&files.Key, "tls-key", "", "its private key (PEM)")
	fs.StringVar(&files.CA, "tls-ca", "", "the cluster CA (PEM)")
	if err := parseFlags(fs, args); err != nil {
		return usageErr(err)
	}
	creds := insecure.NewCredentials()
	if files.Set() {
		cert, ca, err := files.Load()
		if err != nil {
			return fail(err)
		}
		creds = credentials.NewTLS(pki.ClientConfig(cert, ca))
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fail(fmt.Errorf("health check of %s: %w", *addr, err))
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		fmt.Fprintf(os.Stderr, "kmsd: %s is %s\n", *addr, resp.Status)
		return 1
	}
	fmt.Printf("%s is SERVING\n", *addr)
	return 0
}
