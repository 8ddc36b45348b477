package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/raftkms/raftkms/pki"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/server"
)

// securityFlags are serve's TLS, authorization and audit flags.
type securityFlags struct {
	files    pki.Files
	insecure bool
	admins   string
	creators string
	audit    string
}

func (f *securityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.files.Cert, "tls-cert", "", "this node's certificate (PEM), used for the client API, node-to-node gRPC and Raft")
	fs.StringVar(&f.files.Key, "tls-key", "", "the private key of --tls-cert (PEM)")
	fs.StringVar(&f.files.CA, "tls-ca", "", "the cluster CA (PEM): clients and nodes must present a certificate it signed")
	fs.BoolVar(&f.insecure, "insecure", false, "run without TLS or authorization; only allowed on loopback addresses")
	fs.StringVar(&f.admins, "admin-identities", "", "identities (certificate URI SAN or CN) allowed cluster calls and key policy recovery, comma-separated")
	fs.StringVar(&f.creators, "key-creators", "", "identities allowed to create keys, comma-separated (default: any authenticated identity)")
	fs.StringVar(&f.audit, "audit-log", "", "append one JSON line per call to this file (- for stdout)")
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// isLoopback reports whether a HOST:PORT address can only be reached from
// this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// build turns the flags into the node's TLS and authorization settings.
// A node without TLS binds only loopback addresses: off loopback it refuses
// to start, with or without --insecure. On loopback it runs insecure when
// --insecure is given, or, so that a node can be tried with nothing but the
// flags of `kmsd serve`, when no TLS flag is given at all (warned is true
// then, and kmsd says so loudly).
func (f *securityFlags) build(addrs ...string) (tlsCfg *server.TLS, auth rpc.Auth, warned bool, err error) {
	if !f.files.Set() {
		for _, a := range addrs {
			if a != "" && !isLoopback(a) {
				if f.insecure {
					return nil, rpc.Auth{}, false, fmt.Errorf("--insecure only binds loopback addresses; %s is not one (configure TLS)", a)
				}
				return nil, rpc.Auth{}, false, fmt.Errorf("no TLS configured for %s: give --tls-cert, --tls-key and --tls-ca (without TLS a node binds only loopback addresses)", a)
			}
		}
		return nil, rpc.Auth{}, !f.insecure, nil
	}
	if f.insecure {
		return nil, rpc.Auth{}, false, errors.New("--insecure and the TLS flags exclude each other")
	}
	cert, ca, err := f.files.Load()
	if err != nil {
		return nil, rpc.Auth{}, false, err
	}
	auth = rpc.Auth{Enabled: true, Admins: splitList(f.admins), KeyCreators: splitList(f.creators)}
	return &server.TLS{Server: pki.ServerConfig(cert, ca), Client: pki.ClientConfig(cert, ca)}, auth, false, nil
}

// openAudit opens the audit log: a file appended to, or stdout for "-".
func openAudit(path string) (io.Writer, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit log: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// runGenCerts makes a CA and node and client certificates for a cluster.
func runGenCerts(args []string) int {
	fs := flag.NewFlagSet("kmsd gen-certs", flag.ContinueOnError)
	out := fs.String("out", "certs", "directory to write ca.pem, NAME.pem and NAME-key.pem into")
	nodes := fs.String("nodes", "kms1,kms2,kms3", "node IDs, comma-separated (each certificate names the node as a DNS name and spiffe://raftkms/node/ID)")
	clients := fs.String("clients", "admin,app", "client identities (certificate common names), comma-separated")
	hosts := fs.String("hosts", "", "extra DNS names or IPs for every node certificate, comma-separated")
	days := fs.Int("days", 365, "validity in days")
	if err := parseFlags(fs, args); err != nil {
		return usageErr(err)
	}
	if *days < 1 {
		return usageErr(errors.New("--days must be at least 1"))
	}
	if err := pki.WriteSet(*out, splitList(*nodes), splitList(*clients), splitList(*hosts), time.Duration(*days)*24*time.Hour); err != nil {
		return fail(err)
	}
	fmt.Printf("wrote the CA and certificates for nodes %s and clients %s to %s\n", *nodes, *clients, *out)
	return 0
}
