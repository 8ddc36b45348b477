package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"
)

func testPair(t *testing.T, ca *Authority, name string, node bool) tls.Certificate {
	t.Helper()
	var is *Issued
	var err error
	if node {
		is, err = ca.IssueNode(name, nil, time.Hour)
	} else {
		is, err = ca.IssueClient(name, time.Hour)
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshake runs one TLS handshake over loopback TCP and returns both
// sides' errors.
func handshake(t *testing.T, server, client *tls.Config) (srvErr, cliErr error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		s := tls.Server(c, server)
		if err := s.Handshake(); err != nil {
			done <- err
			return
		}
		// Answer one byte, so the client learns the verdict.
		b := make([]byte, 1)
		if _, err := s.Read(b); err != nil {
			done <- err
			return
		}
		_, err = s.Write(b)
		done <- err
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(raw, client)
	if cliErr = c.Handshake(); cliErr == nil {
		// In TLS 1.3 the server judges the client's certificate after
		// the client has finished; its verdict arrives on the first read.
		b := []byte{1}
		if _, cliErr = c.Write(b); cliErr == nil {
			_, cliErr = c.Read(b)
		}
	}
	raw.Close()
	return <-done, cliErr
}

// dialer is a client configuration that presents cert to a server named
// localhost.
func dialer(cert tls.Certificate, pool *x509.CertPool) *tls.Config {
	c := ClientConfig(cert, pool)
	c.ServerName = "localhost"
	return c
}

func TestNodeOnly(t *testing.T) {
	ca, err := NewAuthority("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tr := Trust{Admins: []string{"admin"}}
	n1, n2 := testPair(t, ca, "n1", true), testPair(t, ca, "n2", true)
	app, admin := testPair(t, ca, "app", false), testPair(t, ca, "admin", false)

	for _, tc := range []struct {
		name     string
		peer     tls.Certificate
		expect   string
		accepted bool
	}{
		{"node", n2, "", true},
		{"expected node", n2, "n2", true},
		{"another node than expected", n1, "n2", false},
		{"client", app, "", false},
		{"admin", admin, "", false},
	} {
		t.Run("server side/"+tc.name, func(t *testing.T) {
			srv := tr.NodeOnly(ServerConfig(n1, pool), tc.expect)
			srvErr, _ := handshake(t, srv, dialer(tc.peer, pool))
			if (srvErr == nil) != tc.accepted {
				t.Fatalf("server accepted=%v (err %v), want %v", srvErr == nil, srvErr, tc.accepted)
			}
			if !tc.accepted && !errors.Is(srvErr, ErrNotNode) {
				t.Fatalf("refusal %v is not ErrNotNode", srvErr)
			}
		})
		t.Run("client side/"+tc.name, func(t *testing.T) {
			cli := tr.NodeOnly(dialer(n1, pool), tc.expect)
			// The server's certificate is the peer being judged.
			_, cliErr := handshake(t, ServerConfig(tc.peer, pool), cli)
			if (cliErr == nil) != tc.accepted {
				t.Fatalf("client accepted=%v (err %v), want %v", cliErr == nil, cliErr, tc.accepted)
			}
			// A client certificate fails as a server already on its key
			// usage; a node's fails on being the wrong node.
			if tc.name == "another node than expected" && !errors.Is(cliErr, ErrNotNode) {
				t.Fatalf("refusal %v is not ErrNotNode", cliErr)
			}
		})
	}

	// The caller's own VerifyConnection still runs, and first.
	base := ServerConfig(n1, pool)
	sentinel := errors.New("caller's check")
	base.VerifyConnection = func(tls.ConnectionState) error { return sentinel }
	if srvErr, _ := handshake(t, tr.NodeOnly(base, ""), dialer(n2, pool)); !errors.Is(srvErr, sentinel) {
		t.Fatalf("caller's VerifyConnection was dropped: %v", srvErr)
	}
	if base.VerifyConnection == nil || base.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatal("NodeOnly changed the caller's config")
	}
}

func TestOwnNode(t *testing.T) {
	ca, err := NewAuthority("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	tr := Trust{}
	n1 := testPair(t, ca, "n1", true)
	if err := tr.OwnNode(ServerConfig(n1, pool), "n1"); err != nil {
		t.Fatalf("own node certificate refused: %v", err)
	}
	noLeaf := n1
	noLeaf.Leaf = nil
	if err := tr.OwnNode(ServerConfig(noLeaf, pool), "n1"); err != nil {
		t.Fatalf("own node certificate without a parsed leaf refused: %v", err)
	}
	for name, cfg := range map[string]*tls.Config{
		"another node's": ServerConfig(n1, pool),
		"a client's":     ServerConfig(testPair(t, ca, "n2", false), pool),
		"none":           {},
	} {
		if err := tr.OwnNode(cfg, "n2"); err == nil {
			t.Errorf("node n2 with %s certificate accepted", name)
		}
	}
}
