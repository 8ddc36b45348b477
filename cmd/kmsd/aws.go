package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// awsFlags configure the AWS-protocol listener (AWS KMS JSON 1.1 + SigV4).
type awsFlags struct {
	region, account, partition string
}

func (f *awsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.region, "aws-region", rpc.DefaultRegion,
		"the cluster's AWS region: AWS clients sign for it and key ARNs name it (the same on every node)")
	fs.StringVar(&f.account, "aws-account", rpc.DefaultAccount, "the account ID key ARNs name (the same on every node)")
	fs.StringVar(&f.partition, "aws-partition", rpc.DefaultPartition, "the partition key ARNs name (the same on every node)")
}

// arn is the cluster's ARN settings.
func (f *awsFlags) arn() rpc.ARN {
	return rpc.ARN{Partition: f.partition, Region: f.region, Account: f.account}
}

// devIdentity is the admin identity of kmsd dev's access key.
const devIdentity = "dev"

// createDevAccessKey makes kmsd dev's access key through node 1's API (the
// same admin call kmsctl create-access-key makes), retrying while the
// cluster elects its first leader.
func createDevAccessKey(l *server.Local) (*clusterv1.AccessKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		resp, err := l.Server(0).API().Invoke(ctx, devIdentity, clusterv1.ClusterService_CreateAccessKey_FullMethodName,
			&clusterv1.CreateAccessKeyRequest{Identity: devIdentity})
		if err == nil {
			return resp.(*clusterv1.CreateAccessKeyResponse).GetAccessKey(), nil
		}
		if status.Code(err) != codes.Unavailable {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("the cluster elected no leader in time to create the dev access key")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// printAWSSetup prints the aws configure-style setup for the dev access key.
func printAWSSetup(k *clusterv1.AccessKey, region string, endpoints []string) {
	fmt.Printf(`
AWS KMS protocol (SigV4) on: %v
  access key for identity %q (shown once):
  export AWS_ACCESS_KEY_ID=%s
  export AWS_SECRET_ACCESS_KEY=%s
  export AWS_DEFAULT_REGION=%s
  export AWS_ENDPOINT_URL_KMS=%s
  aws kms list-keys
`, endpoints, k.GetIdentity(), k.GetAccessKeyId(), k.GetSecretAccessKey(), region, endpoints[0])
}
