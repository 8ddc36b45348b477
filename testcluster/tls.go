package testcluster

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/raftkms/raftkms/pki"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// tlsMaterial is an in-memory cluster CA with its certificates.
type tlsMaterial struct {
	ca   *pki.Authority
	pool *x509.CertPool

	mu    sync.Mutex
	certs map[string]tls.Certificate
}

// WithTLS runs the API cluster with mutual TLS on every link and key
// policies on: node certificates from a CA made for the test, "admin" as the
// cluster admin, and KMSAs to call as any client identity.
func WithTLS() APIOption {
	return func(a *apiOptions) {
		ca, err := pki.NewAuthority("test CA", 24*time.Hour)
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca.Cert)
		a.tls = &tlsMaterial{ca: ca, pool: pool, certs: map[string]tls.Certificate{}}
	}
}

// WithRaftHandshakeTimeout sets how long a node's Raft listener waits for
// a peer's TLS handshake (TLS clusters; default raftnode's).
func WithRaftHandshakeTimeout(d time.Duration) APIOption {
	return func(a *apiOptions) { a.raftHandshake = d }
}

// WithAudit sends every node's audit log to w.
func WithAudit(w io.Writer) APIOption { return func(a *apiOptions) { a.audit = w } }

func (m *tlsMaterial) cert(t testing.TB, name string, node bool) tls.Certificate {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	key := name
	if node {
		key = "node:" + name
	}
	if c, ok := m.certs[key]; ok {
		return c
	}
	var is *pki.Issued
	var err error
	if node {
		is, err = m.ca.IssueNode(name, nil, 24*time.Hour)
	} else {
		is, err = m.ca.IssueClient(name, 24*time.Hour)
	}
	if err != nil {
		t.Fatalf("testcluster: issue %s: %v", name, err)
	}
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	m.certs[key] = c
	return c
}

func (m *tlsMaterial) nodeTLS(t testing.TB, id string) *server.TLS {
	c := m.cert(t, id, true)
	return &server.TLS{Server: pki.ServerConfig(c, m.pool), Client: pki.ClientConfig(c, m.pool)}
}

func (m *tlsMaterial) clientCreds(t testing.TB, identity string) credentials.TransportCredentials {
	return credentials.NewTLS(pki.ClientConfig(m.cert(t, identity, false), m.pool))
}

// NodeTLS is the TLS configuration of node id in a TLS cluster (tests use it
// to start impostors and foreign nodes).
func (c *Cluster) NodeTLS(id string) *server.TLS {
	c.t.Helper()
	return c.opts.api.tls.nodeTLS(c.t, id)
}

// ClientCert is a client certificate for identity issued by the TLS
// cluster's CA (tests present it where only nodes belong).
func (c *Cluster) ClientCert(identity string) tls.Certificate {
	c.t.Helper()
	return c.opts.api.tls.cert(c.t, identity, false)
}

// CAPool is the TLS cluster's CA.
func (c *Cluster) CAPool() *x509.CertPool { return c.opts.api.tls.pool }

// ClientCreds are TLS credentials presenting a certificate for identity,
// issued by the cluster CA (TLS clusters).
func (c *Cluster) ClientCreds(identity string) credentials.TransportCredentials {
	c.t.Helper()
	return c.opts.api.tls.clientCreds(c.t, identity)
}

// KMSAs is a client of node i that presents a certificate for identity,
// issued by the cluster CA (TLS clusters).
func (c *Cluster) KMSAs(i int, identity string) kmsv1.KeyManagementServiceClient {
	c.t.Helper()
	return kmsv1.NewKeyManagementServiceClient(c.DialWith(i, c.opts.api.tls.clientCreds(c.t, identity),
		grpc.WithUnaryInterceptor(retryUnavailable)))
}

// DialWith opens a connection to node i with the given credentials, closed
// when the test ends.
func (c *Cluster) DialWith(i int, creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	c.t.Helper()
	cc, err := grpc.NewClient(c.nodes[i].grpcAddr, append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cc.Close() })
	return cc
}
