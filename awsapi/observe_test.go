package awsapi_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/raftkms/raftkms/awsapi"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// oneKey is a credential store holding one access key.
type oneKey struct{ id, identity, secret string }

func (k oneKey) LookupAccessKey(_ context.Context, id string) (string, string, bool, error) {
	if id != k.id {
		return "", "", false, nil
	}
	return k.identity, k.secret, true, nil
}

// fakeInvoker answers ListKeys and fails DescribeKey as the gRPC layer does.
type fakeInvoker struct{}

func (fakeInvoker) Invoke(_ context.Context, _, method string, _ proto.Message) (proto.Message, error) {
	if method == "/raftkms.kms.v1.KeyManagementService/ListKeys" {
		return &kmsv1.ListKeysResponse{}, nil
	}
	return nil, status.Error(codes.NotFound, "NotFoundException: no such key")
}

// Observe sees each request once with its operation and AWS error type, and
// an unknown target as "unknown".
func TestObserve(t *testing.T) {
	type obs struct{ op, typ string }
	var mu sync.Mutex
	var got []obs
	creds := oneKey{"AKIAEXAMPLEDEV000001", "dev", "devsecretdevsecretdevsecretdevsecret0001"}
	h, err := awsapi.New(awsapi.Config{Invoker: fakeInvoker{}, Credentials: creds, Region: testRegion,
		Observe: func(op, typ string, took time.Duration) {
			mu.Lock()
			defer mu.Unlock()
			if took <= 0 {
				t.Errorf("%s took %v", op, took)
			}
			got = append(got, obs{op, typ})
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	id, secret := "AKIAEXAMPLEDEV000001", "devsecretdevsecretdevsecretdevsecret0001"
	rawCall(t, signedRequest(t, srv.URL, "ListKeys", `{}`, id, secret, time.Now()))
	rawCall(t, signedRequest(t, srv.URL, "DescribeKey", `{"KeyId":"k"}`, id, secret, time.Now()))
	bad, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader([]byte(`{}`)))
	bad.Header.Set("X-Amz-Target", "TrentService.NoSuchThing")
	rawCall(t, bad)

	want := []obs{{"ListKeys", ""}, {"DescribeKey", "NotFoundException"}, {"unknown", "UnknownOperationException"}}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("observation %d: %v, want %v", i, got[i], want[i])
		}
	}
}
