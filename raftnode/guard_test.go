package raftnode

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/raftkms/raftkms/pki"
)

// testPKI is a cluster CA with node and client certificates.
type testPKI struct {
	t    testing.TB
	ca   *pki.Authority
	pool *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := pki.NewAuthority("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &testPKI{t: t, ca: ca, pool: pool}
}

func (p *testPKI) cert(name string, node bool) tls.Certificate {
	p.t.Helper()
	var is *pki.Issued
	var err error
	if node {
		is, err = p.ca.IssueNode(name, nil, time.Hour)
	} else {
		is, err = p.ca.IssueClient(name, time.Hour)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// layerConfig is node id's Raft TLS configuration.
func (p *testPKI) layerConfig(id string) TLSConfig {
	c := p.cert(id, true)
	return TLSConfig{Server: pki.ServerConfig(c, p.pool), Client: pki.ClientConfig(c, p.pool), NodeID: id}
}

// received is what a test transport's consumer saw.
type received struct {
	typ      string
	senderID string
	entries  [][]byte
	snapshot []byte
}

// testServer is a raft NetworkTransport on stream whose consumer answers
// every request and reports it on the returned channel.
func testServer(t testing.TB, stream StreamLayer) (addr string, got <-chan received) {
	t.Helper()
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: streamAdapter{stream}, MaxPool: 2, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger()})
	ch := make(chan received, 100)
	done := make(chan struct{})
	go func() {
		for {
			var rpc raft.RPC
			select {
			case rpc = <-trans.Consumer():
			case <-done:
				return
			}
			var r received
			var resp any
			switch cmd := rpc.Command.(type) {
			case *raft.AppendEntriesRequest:
				r = received{typ: "AppendEntries", senderID: string(cmd.ID)}
				for _, e := range cmd.Entries {
					r.entries = append(r.entries, e.Data)
				}
				resp = &raft.AppendEntriesResponse{Term: cmd.Term, Success: true}
			case *raft.RequestVoteRequest:
				r = received{typ: "RequestVote", senderID: string(cmd.ID)}
				resp = &raft.RequestVoteResponse{Term: cmd.Term}
			case *raft.RequestPreVoteRequest:
				r = received{typ: "RequestPreVote", senderID: string(cmd.ID)}
				resp = &raft.RequestPreVoteResponse{Term: cmd.Term}
			case *raft.TimeoutNowRequest:
				r = received{typ: "TimeoutNow", senderID: string(cmd.ID)}
				resp = &raft.TimeoutNowResponse{}
			case *raft.InstallSnapshotRequest:
				r = received{typ: "InstallSnapshot", senderID: string(cmd.ID)}
				r.snapshot, _ = io.ReadAll(rpc.Reader)
				resp = &raft.InstallSnapshotResponse{Term: cmd.Term, Success: true}
			}
			rpc.Respond(resp, nil)
			select {
			case ch <- r:
			default: // nobody is looking (benchmarks)
			}
		}
	}()
	t.Cleanup(func() { close(done); trans.Close() })
	return stream.Addr().String(), ch
}

// listenTLS is a Raft TLS layer on a fresh loopback port.
func listenTLS(t testing.TB, cfg TLSConfig) StreamLayer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	layer, err := WrapTLS(&tcpLayer{Listener: l, advertise: l.Addr()}, cfg)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	return layer
}

// guardedServer is node id's Raft transport behind WrapTLS on loopback.
func guardedServer(t testing.TB, p *testPKI, id string) (string, <-chan received) {
	t.Helper()
	return testServer(t, listenTLS(t, p.layerConfig(id)))
}

// client is a raft NetworkTransport presenting cert, with no checks of
// its own: what an attacker would run.
func client(t testing.TB, p *testPKI, cert tls.Certificate) *raft.NetworkTransport {
	t.Helper()
	s := &probeStream{cfg: ProbeConfig{
		TLS: pki.ClientConfig(cert, p.pool),
		Dial: func(addr string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", addr, timeout)
		},
	}, closeCh: make(chan struct{})}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s, MaxPool: 1, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger()})
	t.Cleanup(func() { trans.Close() })
	return trans
}

// sendAll sends one request of every type hashicorp/raft sends, each with
// header ID from, and returns the first error of each.
func sendAll(trans *raft.NetworkTransport, addr, from string, snapshot []byte) map[string]error {
	target := raft.ServerAddress(addr)
	hdr := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(from), Addr: []byte("127.0.0.1:1")}
	errs := map[string]error{}
	errs["AppendEntries"] = trans.AppendEntries("x", target, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 3,
		PrevLogEntry: 7, PrevLogTerm: 2, LeaderCommitIndex: 7, Entries: []*raft.Log{
			{Index: 8, Term: 3, Type: raft.LogCommand, Data: []byte("first entry")},
			{Index: 9, Term: 3, Type: raft.LogCommand, Data: bytes.Repeat([]byte{0xc1}, 70000)}}},
		&raft.AppendEntriesResponse{})
	errs["RequestVote"] = trans.RequestVote("x", target, &raft.RequestVoteRequest{RPCHeader: hdr, Term: 4}, &raft.RequestVoteResponse{})
	errs["RequestPreVote"] = trans.RequestPreVote("x", target, &raft.RequestPreVoteRequest{RPCHeader: hdr, Term: 4}, &raft.RequestPreVoteResponse{})
	errs["TimeoutNow"] = trans.TimeoutNow("x", target, &raft.TimeoutNowRequest{RPCHeader: hdr}, &raft.TimeoutNowResponse{})
	errs["InstallSnapshot"] = trans.InstallSnapshot("x", target, &raft.InstallSnapshotRequest{RPCHeader: hdr, Term: 4,
		SnapshotVersion: 1, LastLogIndex: 9, LastLogTerm: 3, Size: int64(len(snapshot))},
		&raft.InstallSnapshotResponse{}, bytes.NewReader(snapshot))
	// A heartbeat after the snapshot: the connection is back on requests.
	errs["heartbeat"] = trans.AppendEntries("x", target, &raft.AppendEntriesRequest{RPCHeader: hdr, Term: 4}, &raft.AppendEntriesResponse{})
	return errs
}

// TestGuardPassesOwnRequests: a node's requests under its own ID reach Raft
// byte for byte, of every type, on pooled connections, including a
// snapshot's body.
func TestGuardPassesOwnRequests(t *testing.T) {
	p := newTestPKI(t)
	addr, got := guardedServer(t, p, "n1")
	snapshot := make([]byte, 300*1024)
	rand.Read(snapshot)
	trans := client(t, p, p.cert("n2", true))
	for round := range 2 {
		for typ, err := range sendAll(trans, addr, "n2", snapshot) {
			if err != nil {
				t.Fatalf("round %d: %s from n2 as n2: %v", round, typ, err)
			}
		}
		want := []string{"AppendEntries", "RequestVote", "RequestPreVote", "TimeoutNow", "InstallSnapshot", "AppendEntries"}
		for _, typ := range want {
			r := <-got
			if r.typ != typ || r.senderID != "n2" {
				t.Fatalf("round %d: Raft got %s from %q, want %s from n2", round, r.typ, r.senderID, typ)
			}
			if r.typ == "InstallSnapshot" && !bytes.Equal(r.snapshot, snapshot) {
				t.Fatalf("snapshot body changed on the way (%d bytes, want %d)", len(r.snapshot), len(snapshot))
			}
			if r.typ == "AppendEntries" && len(r.entries) == 2 &&
				(string(r.entries[0]) != "first entry" || !bytes.Equal(r.entries[1], bytes.Repeat([]byte{0xc1}, 70000))) {
				t.Fatal("entries changed on the way")
			}
		}
	}
}

// TestGuardRefusesImpersonation: a node certificate of n2 sending requests
// that claim another sender (or none) is cut off before Raft sees any.
func TestGuardRefusesImpersonation(t *testing.T) {
	p := newTestPKI(t)
	addr, got := guardedServer(t, p, "n1")
	n2 := p.cert("n2", true)
	for _, claimed := range []string{"n1", "n3", ""} {
		for typ, err := range sendAll(client(t, p, n2), addr, claimed, []byte("snapshot")) {
			if err == nil {
				t.Errorf("%s from n2 claiming %q was answered", typ, claimed)
			}
		}
	}
	// The guard let nothing through; n2 as itself still gets through.
	for typ, err := range sendAll(client(t, p, n2), addr, "n2", []byte("snapshot")) {
		if err != nil {
			t.Fatalf("%s from n2 as n2 after the refusals: %v", typ, err)
		}
	}
	if r := <-got; r.senderID != "n2" {
		t.Fatalf("Raft saw a request claiming %q", r.senderID)
	}
}

// TestRaftPortRefusesClients: a client or admin certificate of the cluster
// CA is refused on the Raft port, whatever it claims.
func TestRaftPortRefusesClients(t *testing.T) {
	p := newTestPKI(t)
	addr, got := guardedServer(t, p, "n1")
	for _, name := range []string{"app", "admin"} {
		for typ, err := range sendAll(client(t, p, p.cert(name, false)), addr, "n2", []byte("snapshot")) {
			if err == nil {
				t.Errorf("%s from client certificate %q was answered", typ, name)
			}
		}
	}
	select {
	case r := <-got:
		t.Fatalf("Raft got %s from a client certificate", r.typ)
	default:
	}
}

// TestGuardRefusesGarbage: an unknown request type or an undecodable
// request from a node closes the connection; Raft never sees it.
func TestGuardRefusesGarbage(t *testing.T) {
	p := newTestPKI(t)
	addr, got := guardedServer(t, p, "n1")
	for name, msg := range map[string][]byte{
		"unknown type":        {9, 0x80},
		"undecodable request": {rpcAppendEntries, 0xc1, 0xc1, 0xc1},
		"not a map":           {rpcRequestVote, 0x93, 1, 2, 3},
		"negative snapshot":   append([]byte{rpcInstallSnapshot}, msgpackMap(t, "n2", -5)...),
	} {
		cfg := pki.ClientConfig(p.cert("n2", true), p.pool)
		cfg.ServerName = "localhost"
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: the node answered", name)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the connection stayed open", name)
		}
		c.Close()
	}
	select {
	case r := <-got:
		t.Fatalf("Raft got %s", r.typ)
	default:
	}
}

// msgpackMap is an InstallSnapshot request header as raft encodes it.
func msgpackMap(t *testing.T, id string, size int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := &buf
	if err := newTestEncoder(w).Encode(&raft.InstallSnapshotRequest{
		RPCHeader: raft.RPCHeader{ID: []byte(id)}, Size: size}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestDialVerifiesNodeAndMember: Raft dials only nodes, and the member the
// Raft configuration has at the address when it names one.
func TestDialVerifiesNodeAndMember(t *testing.T) {
	p := newTestPKI(t)
	// A server at addr presenting n3's node certificate.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := pki.ServerConfig(p.cert("n3", true), p.pool)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, srv)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				tc.Handshake()
				tc.Read(make([]byte, 1))
				tc.Close()
			}()
		}
	}()
	addr := l.Addr().String()
	layer := listenTLS(t, p.layerConfig("n1"))
	t.Cleanup(func() { layer.Close() })
	tl := layer.(*tlsLayer)

	member := "n2"
	tl.setMembers(func(a string) string {
		if a == addr {
			return member
		}
		return ""
	})
	if c, err := tl.Dial(addr, 5*time.Second); err == nil {
		c.Close()
		t.Fatal("dialled n2's address and accepted n3's certificate")
	} else if !errors.Is(err, pki.ErrNotNode) {
		t.Fatalf("refusal %v is not ErrNotNode", err)
	}
	member = "n3"
	c, err := tl.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialling n3 at its own address: %v", err)
	}
	c.Close()
	member = "" // an address the configuration does not name: any node
	c, err = tl.Dial(addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dialling a node at an unknown address: %v", err)
	}
	c.Close()
}

// TestWrapTLSRefusesMisconfiguration: the layer is not built with a
// certificate that is not this node's, or without peer verification.
func TestWrapTLSRefusesMisconfiguration(t *testing.T) {
	p := newTestPKI(t)
	app := p.cert("app", false)
	for name, mod := range map[string]func(*TLSConfig){
		"client certificate": func(c *TLSConfig) {
			c.Server, c.Client = pki.ServerConfig(app, p.pool), pki.ClientConfig(app, p.pool)
		},
		"another node's certificate": func(c *TLSConfig) { c.NodeID = "n9" },
		"no node ID":                 func(c *TLSConfig) { c.NodeID = "" },
		"peers not verified":         func(c *TLSConfig) { c.Server.ClientAuth = tls.RequestClientCert },
		"dialled peers not verified": func(c *TLSConfig) { c.Client.InsecureSkipVerify = true },
		"no client config":           func(c *TLSConfig) { c.Client = nil },
	} {
		cfg := p.layerConfig("n1")
		mod(&cfg)
		if l, err := NewTLSStreamLayer("127.0.0.1:0", "", cfg); err == nil {
			l.Close()
			t.Errorf("%s: layer built", name)
		}
	}
}

// TestSilentConnectionsDoNotStallAccept: a hundred connections that never
// say a word do not hold up a node's handshake; past the pending bound new
// connections are closed at once; Close closes the pending ones.
func TestSilentConnectionsDoNotStallAccept(t *testing.T) {
	p := newTestPKI(t)
	cfg := p.layerConfig("n1")
	cfg.HandshakeTimeout = time.Minute // far beyond every deadline below
	cfg.MaxPendingHandshakes = 110
	layer := listenTLS(t, cfg)
	t.Cleanup(func() { layer.Close() })
	addr := layer.Addr().String()
	silent := make([]net.Conn, 100)
	var err error
	for i := range silent {
		if silent[i], err = net.Dial("tcp", addr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { silent[i].Close() })
	}

	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := layer.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	cli := pki.ClientConfig(p.cert("n2", true), p.pool)
	cli.ServerName = "localhost"
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", addr, cli)
	if err != nil {
		t.Fatalf("a node's handshake behind 100 silent connections: %v", err)
	}
	defer c.Close()
	select {
	case got := <-accepted:
		got.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return the node's connection behind 100 silent connections")
	}

	// Fill the bound: 100 silent + 10 more; the next is closed unheard.
	for range 10 {
		sc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, sc)
		t.Cleanup(func() { sc.Close() })
	}
	waitPending(t, layer.(*tlsLayer), 110)
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := over.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection past the pending bound: read %v, want EOF", err)
	}

	layer.Close()
	for i, sc := range silent {
		sc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := sc.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("silent connection %d after Close: read %v, want EOF", i, err)
		}
	}
}

// waitPending polls until n handshakes are pending.
func waitPending(t *testing.T, l *tlsLayer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(l.slots) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d handshakes pending, want %d", len(l.slots), n)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// newTestEncoder encodes as raft's transport does.
func newTestEncoder(w io.Writer) *codec.Encoder { return codec.NewEncoder(w, &codec.MsgpackHandle{}) }
