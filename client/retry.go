package client

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// router is the grpc.ClientConnInterface behind KMS() and Cluster(): it
// hands each call to the connection of the preferred node, whose
// interceptor takes it from there.
type router struct{ c *Client }

func (r router) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	cc, err := r.c.conn(r.c.preferredAddr())
	if err != nil {
		return status.Error(codes.Unavailable, "KMSInternalException: "+err.Error())
	}
	return cc.Invoke(ctx, method, args, reply, opts...)
}

func (r router) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	// The raftkms API has no streams; pass them through without retries.
	cc, err := r.c.conn(r.c.preferredAddr())
	if err != nil {
		return nil, status.Error(codes.Unavailable, "KMSInternalException: "+err.Error())
	}
	return cc.NewStream(WithRequestID(ctx, requestIDOrNew(ctx)), desc, method, opts...)
}

// attemptKey marks the context of one attempt made by intercept, so the
// interceptor of the connection the attempt goes to passes it straight on.
type attemptKey struct{}

// intercept runs one logical call: it fixes the request ID, then makes up to
// MaxAttempts attempts, moving between nodes on Unavailable answers.
func (c *Client) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if ctx.Value(attemptKey{}) != nil {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	ctx = WithRequestID(ctx, requestIDOrNew(ctx))
	if c.cfg.StaleOK {
		ctx = WithStaleOK(ctx)
	}
	ctx = context.WithValue(ctx, attemptKey{}, true)

	addr := c.address(cc)
	var lastErr error
	unreachable := map[string]bool{} // endpoints that failed to connect (FailFast)
	for attempt := 1; ; attempt++ {
		var trailer metadata.MD
		err := c.attempt(ctx, addr, method, req, reply, append(opts[:len(opts):len(opts)], grpc.Trailer(&trailer)))
		if err == nil || !c.retryable(ctx, err) {
			if answered(err) {
				c.setPreferred(addr) // this node answered; start there next time
			}
			return err
		}
		lastErr = err
		if attempt >= c.cfg.MaxAttempts {
			return lastErr
		}
		if c.cfg.FailFast && connectionFailed(err) {
			if incurable(err) {
				return err
			}
			unreachable[addr] = true
			if c.allUnreachable(unreachable) {
				return err
			}
		}
		if hint := firstValue(trailer, mdLeader); hint != "" && hint != addr {
			// The node named the leader: go there at once.
			addr = hint
			continue
		}
		addr = c.next(addr)
		if err := sleep(ctx, c.backoff(attempt)); err != nil {
			return lastErr
		}
	}
}

// answered reports whether the error (or success) of an attempt came from a
// serving node rather than from the way to it.
func answered(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.Unknown:
		return false
	}
	return true
}

// attempt is one try of a call on the node at addr.
func (c *Client) attempt(ctx context.Context, addr, method string, req, reply any, opts []grpc.CallOption) error {
	cc, err := c.conn(addr)
	if err != nil {
		return status.Error(codes.Unavailable, "KMSInternalException: "+err.Error())
	}
	if m, ok := reply.(proto.Message); ok {
		proto.Reset(m) // nothing of a failed attempt may leak into the answer
	}
	if c.cfg.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		defer cancel()
	}
	return cc.Invoke(ctx, method, req, reply, opts...)
}

// retryable reports whether a failed attempt should be tried again: the node
// was unavailable (no leader yet, not the leader, shutting down, unknown
// outcome — the request ID makes a retry safe), or the attempt alone ran out
// of time.
func (c *Client) retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.DeadlineExceeded:
		return c.cfg.AttemptTimeout > 0
	}
	return false
}

// connectionFailed reports whether an Unavailable error came from the
// connection rather than from a node: raftkms nodes start every message
// with an exception name ("KMSInternalException: no leader"), gRPC's
// transport errors do not.
func connectionFailed(err error) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	name, _, _ := strings.Cut(status.Convert(err).Message(), ":")
	return !isExceptionName(name)
}

// incurable reports connection failures that fail the same way every time:
// the TLS handshake failed, or the node did not speak HTTP/2 as expected (a
// plaintext client talking to a TLS node).
func incurable(err error) bool {
	msg := status.Convert(err).Message()
	for _, s := range []string{"authentication handshake failed", "tls:", "x509:", "server preface"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// allUnreachable reports whether every configured endpoint is in the set.
func (c *Client) allUnreachable(set map[string]bool) bool {
	for _, e := range c.cfg.Endpoints {
		if !set[e] {
			return false
		}
	}
	return true
}

// backoff is the wait after the given failed attempt: exponential, capped,
// with jitter so that clients do not retry in lockstep.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.BaseBackoff
	for i := 1; i < attempt && d < c.cfg.MaxBackoff; i++ {
		d *= 2
	}
	if d > c.cfg.MaxBackoff {
		d = c.cfg.MaxBackoff
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func firstValue(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
