package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// connInfo is what kmsctl knows of its connections: which endpoints it
// dialed and how that went, the operation it called, and what --debug
// prints. Its messages name kmsctl's flags, never the server's.
type connInfo struct {
	g      *globals
	tls    bool
	debug  io.Writer // nil unless --debug
	mu     sync.Mutex
	op     string           // the API operation of the last call ("DescribeKey")
	asked  bool             // a node asked for a client certificate in a TLS handshake
	ours   bool             // and kmsctl had one to give (--cert)
	dialed map[string]error // last dial result per address; nil error: connected
	last   string           // the address dialed last
}

func newConnInfo(g *globals, debug io.Writer) *connInfo {
	return &connInfo{g: g, tls: g.scheme == "https" || (g.scheme == "" && g.tls.Set()), debug: debug, dialed: map[string]error{}}
}

// url is an address as the AWS CLI prints an endpoint.
func (c *connInfo) url(addr string) string {
	scheme := "http"
	if c.tls {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s/", scheme, addr)
}

// dialOptions are the gRPC options of every connection: transport
// credentials, the recording dialer and the call recorder.
func (c *connInfo) dialOptions() ([]grpc.DialOption, error) {
	opts := []grpc.DialOption{
		grpc.WithContextDialer(c.dial),
		grpc.WithChainUnaryInterceptor(c.intercept),
	}
	if !c.tls {
		return append(opts, grpc.WithTransportCredentials(insecure.NewCredentials())), nil
	}
	cfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	return append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg))), nil
}

// tlsConfig builds the client's TLS from --ca, --cert and --key: the CA
// alone verifies the nodes (a cluster that wants client certificates will
// say so), no CA means the system's roots (for https:// endpoints).
func (c *connInfo) tlsConfig() (*tls.Config, error) {
	f := c.g.tls
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if (f.Cert == "") != (f.Key == "") {
		return nil, usagef("--cert and --key go together: give both (your client certificate and its private key)")
	}
	var pair *tls.Certificate
	if f.Cert != "" {
		p, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, otherf("Unable to load the client certificate --cert %s with --key %s: %v", f.Cert, f.Key, err)
		}
		pair = &p
	}
	// Note that the node asked for a client certificate: when it then
	// drops the connection, the certificate (or its absence) is why, even
	// if the alert saying so is lost in the race with the first write.
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		c.mu.Lock()
		c.asked, c.ours = true, pair != nil
		c.mu.Unlock()
		if pair == nil {
			return &tls.Certificate{}, nil
		}
		return pair, nil
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, otherf("Unable to load the CA file --ca %s: %v", f.CA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, otherf("Unable to load the CA file --ca %s: it holds no PEM certificate", f.CA)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// dial connects to a node, bounded by --cli-connect-timeout, and records
// how it went for the error messages.
func (c *connInfo) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: c.g.connectTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	c.mu.Lock()
	c.dialed[addr], c.last = err, addr
	c.mu.Unlock()
	if c.debug != nil {
		if err != nil {
			c.debugf("connect %s: %v", addr, err)
		} else {
			c.debugf("connected to %s", addr)
		}
	}
	return conn, err
}

func (c *connInfo) debugf(format string, args ...any) {
	fmt.Fprintf(c.debug, "%s - kmsctl - DEBUG - %s\n", time.Now().UTC().Format("2006-01-02 15:04:05.000"), fmt.Sprintf(format, args...))
}

type callKey struct{}

// intercept sees every call twice: first the logical call (it records the
// operation), then each attempt the client library makes of it on some
// node (it prints them with --debug).
func (c *connInfo) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if ctx.Value(callKey{}) == nil {
		op := method[strings.LastIndex(method, "/")+1:]
		c.mu.Lock()
		c.op = op
		c.mu.Unlock()
		if c.debug != nil {
			c.debugf("Calling %s with params: %s", op, redacted(req))
		}
		return invoker(context.WithValue(ctx, callKey{}, true), method, req, reply, cc, opts...)
	}
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if c.debug != nil {
		st := status.Convert(err)
		c.debugf("%s %s: %s %q (%s)", method, cc.Target(), st.Code(), st.Message(), time.Since(start).Round(time.Millisecond))
	}
	return err
}

func (c *connInfo) operation() string {
	if c == nil {
		return ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.op
}

// explain turns a status that did not come from a node's answer (the
// connection failed) into the AWS CLI's message and a hint naming the
// kmsctl flag that fixes it. local is false for a node's own answer.
func (c *connInfo) explain(st *status.Status) (msg string, local bool) {
	if fromService(st) || c == nil {
		return "", false
	}
	if st.Code() == codes.DeadlineExceeded {
		return c.timeoutMessage(), true
	}
	c.mu.Lock()
	addr := c.last
	dialErr := c.dialed[addr]
	asked, ours := c.asked, c.ours
	c.mu.Unlock()
	if addr == "" {
		addr = strings.Split(c.g.endpoints, ",")[0]
	}
	text := st.Message()
	url := c.url(addr)
	switch {
	case dialErr != nil && isTimeout(dialErr):
		return fmt.Sprintf("Connect timeout on endpoint URL: %q (no connection within --cli-connect-timeout %s)", url, c.g.connectTimeout), true
	case dialErr != nil:
		return fmt.Sprintf("Could not connect to the endpoint URL: %q (%s)", url, shortNetError(dialErr)), true
	case strings.Contains(text, "HTTP/1."):
		return fmt.Sprintf("Could not connect to the endpoint URL: %q: the endpoint answers HTTP/1.1, not gRPC. "+
			"kmsctl talks to a node's gRPC port (kmsd --grpc-addr; 7001 with kmsd dev), not its AWS-protocol port", url), true
	case !c.tls && (strings.Contains(text, "server preface") || strings.Contains(text, "EOF") || strings.Contains(text, "frame")):
		return fmt.Sprintf("Could not connect to the endpoint URL: %q: the node speaks TLS and kmsctl connected without it. "+
			"Give --ca FILE (and --cert FILE --key FILE when the cluster wants client certificates), "+
			"or --endpoint-url https://%s", url, addr), true
	case c.tls && strings.Contains(text, "first record does not look like a TLS handshake"):
		return fmt.Sprintf("SSL validation failed for %s: the node does not speak TLS. "+
			"Drop --ca/--cert/--key (and $RAFTKMS_CA, $RAFTKMS_CERT, $RAFTKMS_KEY), or use --endpoint-url http://%s", url, addr), true
	case c.tls && (strings.Contains(text, "certificate required") || (asked && !ours && !strings.Contains(text, "x509:"))):
		return fmt.Sprintf("SSL validation failed for %s: the node requires a client certificate. "+
			"Give --cert FILE --key FILE (kmsd gen-certs writes NAME.pem and NAME-key.pem)", url), true
	case c.tls && (strings.Contains(text, "unknown authority") || strings.Contains(text, "x509:")):
		hint := "give --ca FILE with the CA that signed the nodes' certificates (kmsd gen-certs writes ca.pem)"
		if strings.Contains(text, "not valid for") || strings.Contains(text, "valid for") {
			hint = "connect by a name the node's certificate holds"
		}
		return fmt.Sprintf("SSL validation failed for %s: %s; %s", url, tlsReason(text), hint), true
	case c.tls && (strings.Contains(text, "bad certificate") || strings.Contains(text, "unknown certificate") ||
		(asked && ours && !strings.Contains(text, "x509:"))):
		return fmt.Sprintf("SSL validation failed for %s: the node refused the client certificate given by --cert "+
			"(is it signed by the cluster's CA?): %s", url, tlsReason(text)), true
	case c.tls && strings.Contains(text, "tls:"):
		return fmt.Sprintf("SSL validation failed for %s: %s", url, tlsReason(text)), true
	}
	return fmt.Sprintf("Could not connect to the endpoint URL: %q (%s)", url, text), true
}

// timeoutMessage is the AWS CLI's message for a call that ran out of time:
// before a connection was made, or waiting for the answer.
func (c *connInfo) timeoutMessage() string {
	if c == nil {
		return "the command timed out"
	}
	c.mu.Lock()
	addr := c.last
	dialErr, dialed := c.dialed[addr]
	c.mu.Unlock()
	if addr == "" || !dialed || dialErr != nil {
		if addr == "" {
			addr = strings.Split(c.g.endpoints, ",")[0]
		}
		return fmt.Sprintf("Connect timeout on endpoint URL: %q (no node answered within --timeout %s)", c.url(addr), c.g.timeout)
	}
	if c.g.readTimeout > 0 {
		return fmt.Sprintf("Read timeout on endpoint URL: %q (no answer within --cli-read-timeout %s, or --timeout %s)",
			c.url(addr), c.g.readTimeout, c.g.timeout)
	}
	return fmt.Sprintf("Read timeout on endpoint URL: %q (no answer within --timeout %s)", c.url(addr), c.g.timeout)
}

// isTimeout reports a dial that ran out of time.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shortNetError drops the "dial tcp ADDR:" that repeats the address.
func shortNetError(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.HasPrefix(s, "dial ") {
		return s[i+2:]
	}
	return s
}

// tlsReason is the TLS part of a gRPC transport message.
func tlsReason(text string) string {
	for _, marker := range []string{"tls: ", "x509: "} {
		if i := strings.Index(text, marker); i >= 0 {
			return strings.ReplaceAll(strings.TrimRight(text[i:], `"`), `\"`, `"`)
		}
	}
	return text
}

// redacted is a request as --debug prints it: JSON-like, with every bytes
// field (plaintext, ciphertext, key material, tokens) shown as its length.
func redacted(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return "{}"
	}
	var b strings.Builder
	writeRedacted(&b, m.ProtoReflect())
	return b.String()
}
