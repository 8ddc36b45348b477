package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/raftkms/raftkms/keycrypto"
	clusterv1 "github.com/raftkms/raftkms/proto/cluster/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/server"
)

// targetRaftkmsAWS is raftkms driven through its AWS-protocol front by the
// AWS SDK for Go (AWS JSON 1.1 over HTTP, SigV4 on every request), on a
// spawned cluster like the gRPC target's.
const targetRaftkmsAWS = "raftkms-aws"

// awsDriver drives the AWS-protocol front with aws-sdk-go-v2 clients, one
// per node; worker i uses node i mod n, as gRPC workers spread over
// connections.
type awsDriver struct {
	clients []*kms.Client
	keys    []string
	blobs   [][]byte
	payload []byte
	kind    opKind
	mix     *mix
}

// openAWSSystem spawns a cluster with the AWS listener on every node, makes
// an access key for the identity "kmsbench", and runs the workload's setup
// through the AWS SDK.
func openAWSSystem(ctx context.Context, o *options) (*system, error) {
	if o.spawn == 0 {
		return nil, fmt.Errorf("%s needs --spawn (it makes its own access key)", targetRaftkmsAWS)
	}
	dir, err := os.MkdirTemp(o.dataDir, "kmsbench-raftkms-aws-")
	if err != nil {
		return nil, err
	}
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	local, err := server.StartLocal(server.LocalConfig{
		Nodes: o.spawn, Dir: dir, RootKey: root, Limits: rpc.Limits{OnDemandLimit: math.MaxUint32},
		Logger: benchLogger(o), AWSPort: -1,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cluster := &spawned{local: local, dir: dir}
	sys := &system{name: targetRaftkmsAWS, close: cluster.stop}
	if err := cluster.waitServing(ctx, 30*time.Second); err != nil {
		sys.close()
		return nil, err
	}
	var ak *clusterv1.AccessKey
	err = retryUnavailable(ctx, func() error {
		resp, err := local.Server(0).API().Invoke(ctx, "kmsbench", clusterv1.ClusterService_CreateAccessKey_FullMethodName,
			&clusterv1.CreateAccessKeyRequest{Identity: "kmsbench"})
		if err == nil {
			ak = resp.(*clusterv1.CreateAccessKeyResponse).GetAccessKey()
		}
		return err
	})
	if err != nil {
		sys.close()
		return nil, fmt.Errorf("kmsbench: access key: %w", err)
	}
	creds := credentials.NewStaticCredentialsProvider(ak.GetAccessKeyId(), ak.GetSecretAccessKey(), "")
	// Keep as many connections per node open as workers may use, as the
	// gRPC pool multiplexes its workers over its connections.
	transport := &http.Transport{MaxIdleConnsPerHost: o.concurrency, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}
	d := &awsDriver{kind: o.kind, mix: o.mix, payload: make([]byte, o.payload)}
	rand.Read(d.payload)
	for _, u := range route(local.AWSEndpoints(), local.Leader(), o.route) {
		d.clients = append(d.clients, kms.New(kms.Options{Region: rpc.DefaultRegion, BaseEndpoint: aws.String(u),
			Credentials: creds, HTTPClient: &http.Client{Transport: transport}, RetryMaxAttempts: 1}))
	}
	if err := d.setup(ctx, o); err != nil {
		sys.close()
		return nil, err
	}
	sys.drv = d
	return sys, nil
}

func (d *awsDriver) client(i int) *kms.Client { return d.clients[i%len(d.clients)] }

func (d *awsDriver) setup(ctx context.Context, o *options) error {
	d.keys = make([]string, o.keys)
	if err := parallel(ctx, o.keys, 16, func(ctx context.Context, i int) error {
		resp, err := d.client(i).CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("kmsbench")})
		if err != nil {
			return fmt.Errorf("kmsbench: setup: create key: %w", err)
		}
		d.keys[i] = aws.ToString(resp.KeyMetadata.KeyId)
		return nil
	}); err != nil {
		return err
	}
	if d.kind == opDecrypt || (d.mix != nil && d.mix.weight[opDecrypt] > 0) {
		n := max(o.keys, 64)
		d.blobs = make([][]byte, n)
		return parallel(ctx, n, 16, func(ctx context.Context, i int) error {
			resp, err := d.client(i).Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(d.keys[i%len(d.keys)]), Plaintext: d.payload})
			if err != nil {
				return fmt.Errorf("kmsbench: setup: encrypt: %w", err)
			}
			d.blobs[i] = resp.CiphertextBlob
			return nil
		})
	}
	return nil
}

func (d *awsDriver) do(ctx context.Context, w *worker) (opKind, error) {
	kind := d.kind
	if d.mix != nil {
		kind = d.mix.pick(w.rng)
	}
	c := d.client(w.id)
	var err error
	switch kind {
	case opEncrypt:
		_, err = c.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(d.keys[w.rng.IntN(len(d.keys))]), Plaintext: d.payload})
	case opDecrypt:
		_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: d.blobs[w.rng.IntN(len(d.blobs))]})
	case opGenerateDataKey:
		_, err = c.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(d.keys[w.rng.IntN(len(d.keys))]), KeySpec: types.DataKeySpecAes256})
	case opCreateKey:
		_, err = c.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("kmsbench")})
	case opRotate:
		_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: aws.String(d.keys[w.id%len(d.keys)])})
	default:
		err = fmt.Errorf("kmsbench: %s is not a KMS operation", kind)
	}
	return kind, err
}
