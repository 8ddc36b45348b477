package awsapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go"
)

// wantAPIError checks that err is an AWS API error with the given code.
func wantAPIError(t *testing.T, what string, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

// rawCall sends req and returns the status, the body's __type and the
// x-amzn-ErrorType header; every answer must carry x-amzn-RequestId.
func rawCall(t *testing.T, req *http.Request) (int, string, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("x-amzn-RequestId") == "" {
		t.Errorf("answer without x-amzn-RequestId: %d %s", resp.StatusCode, body)
	}
	var e struct {
		Type string `json:"__type"`
	}
	if resp.StatusCode != 200 {
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("error body %q is not JSON: %v", body, err)
		}
	}
	return resp.StatusCode, e.Type, resp.Header.Get("x-amzn-ErrorType")
}

// signedRequest makes a request for an operation, signed with the AWS
// SDK's signer as if at time at.
func signedRequest(t *testing.T, url, op, body, id, secret string, at time.Time) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Target", "TrentService."+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	sum := sha256.Sum256([]byte(body))
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: id, SecretAccessKey: secret},
		req, hex.EncodeToString(sum[:]), "kms", testRegion, at)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
