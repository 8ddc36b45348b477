package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestCompareWithAWSFront runs a short compare with --aws: the AWS-protocol
// front is measured in the same run as the gRPC front and the baseline, with
// no errors (every request SigV4-signed by the AWS SDK and verified).
func TestCompareWithAWSFront(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters; skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := run(ctx, []string{"compare", "--spawn", "1", "--aws", "--workload", "decrypt", "--duration", "300ms",
		"--warmup", "0s", "--rounds", "1", "--concurrency", "4", "--keys", "4", "--json", "--quiet"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var c Comparison
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if c.AWS == nil || c.AWS.Target != targetRaftkmsAWS || c.AWS.Ops == 0 || c.AWS.Errors != 0 || c.AWSRatio <= 0 {
		t.Fatalf("the AWS front's result: %+v (ratio %v)", c.AWS, c.AWSRatio)
	}
	if len(c.Runs) != 3 || c.Raftkms == nil || c.Baseline == nil {
		t.Fatalf("runs: %d", len(c.Runs))
	}
	for _, args := range [][]string{{"run", "--target", targetRaftkmsAWS}, {"run", "--aws", "--spawn", "1"}} {
		if code := run(ctx, args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
