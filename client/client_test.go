package client

import (
	"context"
	"errors"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// call is what a fake node saw of one request.
type call struct {
	node      string
	requestID string
	staleOK   string
}

// recorder collects the calls of all fake nodes of a test, in order.
type recorder struct {
	mu    sync.Mutex
	calls []call
}

func (r *recorder) add(c call) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	return len(r.calls)
}

func (r *recorder) all() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...)
}

// fakeKMS is a KeyManagementService node whose DescribeKey answers come
// from a function of the call number (across all nodes of the test).
type fakeKMS struct {
	kmsv1.UnimplementedKeyManagementServiceServer
	name   string
	rec    *recorder
	answer func(ctx context.Context, n int) (*kmsv1.DescribeKeyResponse, error)
}

func (f *fakeKMS) DescribeKey(ctx context.Context, req *kmsv1.DescribeKeyRequest) (*kmsv1.DescribeKeyResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	n := f.rec.add(call{node: f.name, requestID: firstValue(md, mdRequestID), staleOK: firstValue(md, mdStaleOK)})
	return f.answer(ctx, n)
}

// startFake starts a fake node on 127.0.0.1:0 and returns its address.
func startFake(t *testing.T, name string, rec *recorder, answer func(ctx context.Context, n int) (*kmsv1.DescribeKeyResponse, error)) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	kmsv1.RegisterKeyManagementServiceServer(gs, &fakeKMS{name: name, rec: rec, answer: answer})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// deadAddr is an address where nothing listens.
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

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = time.Millisecond
		cfg.MaxBackoff = 5 * time.Millisecond
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func ok(id string) (*kmsv1.DescribeKeyResponse, error) {
	return &kmsv1.DescribeKeyResponse{KeyMetadata: &kmsv1.KeyMetadata{KeyId: id}}, nil
}

func unavailable() error {
	return status.Error(codes.Unavailable, "KMSInternalException: no leader yet; retry")
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestRetriesUnavailableWithOneRequestID(t *testing.T) {
	rec := &recorder{}
	addr := startFake(t, "a", rec, func(_ context.Context, n int) (*kmsv1.DescribeKeyResponse, error) {
		if n <= 2 {
			return nil, unavailable()
		}
		return ok("k1")
	})
	c := newClient(t, Config{Endpoints: []string{addr}})
	resp, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{KeyId: "k1"})
	if err != nil {
		t.Fatalf("DescribeKey: %v", err)
	}
	if resp.KeyMetadata.GetKeyId() != "k1" {
		t.Fatalf("KeyId = %q", resp.KeyMetadata.GetKeyId())
	}
	calls := rec.all()
	if len(calls) != 3 {
		t.Fatalf("got %d attempts, want 3", len(calls))
	}
	if !hexID.MatchString(calls[0].requestID) {
		t.Fatalf("request ID %q is not 128-bit hex", calls[0].requestID)
	}
	for i, cl := range calls {
		if cl.requestID != calls[0].requestID {
			t.Fatalf("attempt %d used request ID %q, first used %q", i+1, cl.requestID, calls[0].requestID)
		}
	}

	// A second logical call gets a new ID.
	if _, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{KeyId: "k1"}); err != nil {
		t.Fatal(err)
	}
	calls = rec.all()
	if calls[3].requestID == calls[0].requestID || !hexID.MatchString(calls[3].requestID) {
		t.Fatalf("second call's request ID %q (first %q)", calls[3].requestID, calls[0].requestID)
	}
}

func TestCallerRequestIDIsKept(t *testing.T) {
	rec := &recorder{}
	addr := startFake(t, "a", rec, func(_ context.Context, n int) (*kmsv1.DescribeKeyResponse, error) {
		if n == 1 {
			return nil, unavailable()
		}
		return ok("k")
	})
	c := newClient(t, Config{Endpoints: []string{addr}})
	ctx := WithRequestID(testCtx(t), "my-own-id")
	if _, err := c.KMS().DescribeKey(ctx, &kmsv1.DescribeKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	calls := rec.all()
	if len(calls) != 2 {
		t.Fatalf("got %d attempts, want 2", len(calls))
	}
	for _, cl := range calls {
		if cl.requestID != "my-own-id" {
			t.Fatalf("request ID %q, want my-own-id", cl.requestID)
		}
	}
	// Plain metadata works as well.
	ctx = metadata.AppendToOutgoingContext(testCtx(t), mdRequestID, "via-metadata")
	if _, err := c.KMS().DescribeKey(ctx, &kmsv1.DescribeKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := rec.all()[2].requestID; got != "via-metadata" {
		t.Fatalf("request ID %q, want via-metadata", got)
	}
}

func TestLeaderHintMovesNextAttempt(t *testing.T) {
	rec := &recorder{}
	leader := startFake(t, "leader", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return ok("from-leader")
	})
	follower := startFake(t, "follower", rec, func(ctx context.Context, _ int) (*kmsv1.DescribeKeyResponse, error) {
		grpc.SetTrailer(ctx, metadata.Pairs(mdLeader, leader))
		return nil, unavailable()
	})
	other := startFake(t, "other", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return ok("from-other")
	})
	// The follower comes first, the leader last: without the hint the retry
	// would go to "other".
	c := newClient(t, Config{Endpoints: []string{follower, other, leader}})
	resp, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.KeyMetadata.GetKeyId(); got != "from-leader" {
		t.Fatalf("answer %q, want from-leader", got)
	}
	calls := rec.all()
	if len(calls) != 2 || calls[0].node != "follower" || calls[1].node != "leader" {
		t.Fatalf("calls = %+v, want follower then leader", calls)
	}
	if calls[0].requestID != calls[1].requestID {
		t.Fatalf("request IDs differ across the hint: %q, %q", calls[0].requestID, calls[1].requestID)
	}
	// The next call starts at the leader.
	if _, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	if calls = rec.all(); len(calls) != 3 || calls[2].node != "leader" {
		t.Fatalf("calls = %+v, want the third at the leader", calls)
	}
}

func TestLeaderHintOutsideEndpointsIsDialed(t *testing.T) {
	rec := &recorder{}
	leader := startFake(t, "leader", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return ok("from-leader")
	})
	follower := startFake(t, "follower", rec, func(ctx context.Context, _ int) (*kmsv1.DescribeKeyResponse, error) {
		grpc.SetTrailer(ctx, metadata.Pairs(mdLeader, leader))
		return nil, unavailable()
	})
	c := newClient(t, Config{Endpoints: []string{follower}})
	resp, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.KeyMetadata.GetKeyId(); got != "from-leader" {
		t.Fatalf("answer %q, want from-leader", got)
	}
}

func TestUnavailableMovesToNextEndpoint(t *testing.T) {
	rec := &recorder{}
	live := startFake(t, "live", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return ok("live")
	})
	down := startFake(t, "down", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return nil, unavailable()
	})
	c := newClient(t, Config{Endpoints: []string{deadAddr(t), down, live}})
	resp, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.KeyMetadata.GetKeyId() != "live" {
		t.Fatalf("answer %q", resp.KeyMetadata.GetKeyId())
	}
	calls := rec.all()
	if len(calls) != 2 || calls[0].node != "down" || calls[1].node != "live" {
		t.Fatalf("calls = %+v, want down then live", calls)
	}
}

func TestServiceErrorsAreNotRetried(t *testing.T) {
	rec := &recorder{}
	addr := startFake(t, "a", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return nil, status.Error(codes.NotFound, "NotFoundException: key 1234 is not found")
	})
	c := newClient(t, Config{Endpoints: []string{addr}})
	_, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{KeyId: "1234"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
	if n := len(rec.all()); n != 1 {
		t.Fatalf("%d attempts, want 1", n)
	}
	if got := ExceptionName(err); got != "NotFoundException" {
		t.Fatalf("ExceptionName = %q", got)
	}
	if got := ExceptionMessage(err); got != "key 1234 is not found" {
		t.Fatalf("ExceptionMessage = %q", got)
	}
}

func TestMaxAttemptsBoundsRetries(t *testing.T) {
	rec := &recorder{}
	addr := startFake(t, "a", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return nil, unavailable()
	})
	c := newClient(t, Config{Endpoints: []string{addr}, MaxAttempts: 4})
	_, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if n := len(rec.all()); n != 4 {
		t.Fatalf("%d attempts, want 4", n)
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	rec := &recorder{}
	addr := startFake(t, "a", rec, func(ctx context.Context, n int) (*kmsv1.DescribeKeyResponse, error) {
		if n == 1 {
			<-ctx.Done() // hang until the attempt gives up
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return ok("second")
	})
	c := newClient(t, Config{Endpoints: []string{addr}, AttemptTimeout: 200 * time.Millisecond})
	resp, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.KeyMetadata.GetKeyId() != "second" {
		t.Fatalf("answer %q", resp.KeyMetadata.GetKeyId())
	}
	calls := rec.all()
	if len(calls) != 2 || calls[0].requestID != calls[1].requestID {
		t.Fatalf("calls = %+v, want 2 with one request ID", calls)
	}
}

func TestCallerDeadlineStopsRetries(t *testing.T) {
	rec := &recorder{}
	addr := startFake(t, "a", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return nil, unavailable()
	})
	c := newClient(t, Config{Endpoints: []string{addr}, MaxAttempts: 1 << 30,
		BaseBackoff: 20 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.KMS().DescribeKey(ctx, &kmsv1.DescribeKeyRequest{})
	if err == nil {
		t.Fatal("want an error")
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("retries went on for %v after the deadline", elapsed)
	}
}

func TestStaleOK(t *testing.T) {
	rec := &recorder{}
	addr := startFake(t, "a", rec, func(context.Context, int) (*kmsv1.DescribeKeyResponse, error) {
		return ok("k")
	})
	c := newClient(t, Config{Endpoints: []string{addr}})
	if _, err := c.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.KMS().DescribeKey(WithStaleOK(testCtx(t)), &kmsv1.DescribeKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	all := newClient(t, Config{Endpoints: []string{addr}, StaleOK: true})
	if _, err := all.KMS().DescribeKey(testCtx(t), &kmsv1.DescribeKeyRequest{}); err != nil {
		t.Fatal(err)
	}
	calls := rec.all()
	if calls[0].staleOK != "" || calls[1].staleOK != "true" || calls[2].staleOK != "true" {
		t.Fatalf("stale-ok headers = %q %q %q", calls[0].staleOK, calls[1].staleOK, calls[2].staleOK)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without endpoints succeeded")
	}
	if _, err := New(Config{Endpoints: []string{" ", ""}}); err == nil {
		t.Fatal("New with blank endpoints succeeded")
	}
	if _, err := New(Config{Endpoints: []string{"127.0.0.1:1"}, MaxAttempts: -1}); err == nil {
		t.Fatal("New with negative MaxAttempts succeeded")
	}
	c, err := New(Config{Endpoints: []string{"127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.Endpoints(); len(got) != 2 {
		t.Fatalf("Endpoints = %v, want duplicates removed", got)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	c := &Client{cfg: Config{BaseBackoff: 10 * time.Millisecond, MaxBackoff: 80 * time.Millisecond}}
	for attempt, want := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 80, 5: 80, 40: 80} {
		want *= time.Millisecond
		for range 50 {
			d := c.backoff(attempt)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestExceptionName(t *testing.T) {
	for _, tc := range []struct {
		err        error
		name, rest string
	}{
		{nil, "", ""},
		{status.Error(codes.FailedPrecondition, "DisabledException: key k is disabled"), "DisabledException", "key k is disabled"},
		{status.Error(codes.InvalidArgument, "InvalidCiphertextException: bad"), "InvalidCiphertextException", "bad"},
		{status.Error(codes.NotFound, "no such key"), "NotFoundException", "no such key"},
		{status.Error(codes.Internal, "boom: it broke"), "KMSInternalException", "boom: it broke"},
		{status.Error(codes.Unavailable, "connection refused"), "KMSInternalException", "connection refused"},
		{status.Error(codes.FailedPrecondition, "KMSInvalidStateException"), "KMSInvalidStateException", ""},
		{errors.New("plain"), "KMSInternalException", "plain"},
	} {
		if got := ExceptionName(tc.err); got != tc.name {
			t.Errorf("ExceptionName(%v) = %q, want %q", tc.err, got, tc.name)
		}
		if got := ExceptionMessage(tc.err); got != tc.rest {
			t.Errorf("ExceptionMessage(%v) = %q, want %q", tc.err, got, tc.rest)
		}
	}
}
