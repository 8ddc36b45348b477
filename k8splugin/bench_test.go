package k8splugin_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/raftkms/raftkms/client"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/testcluster"
	kmsapi "k8s.io/kms/apis/v2"
)

// BenchmarkPlugin compares, on one 3-node cluster in one run, the plugin's
// Encrypt and Decrypt as kube-apiserver makes them (over the unix socket)
// with a direct gRPC Encrypt and Decrypt of a DEK through the client
// library, so the cost of the plugin hop shows on its own. Each is run
// serially (one caller, as the apiserver wraps DEKs) and with 8 callers.
// It reports ops/s and the p50 and p99 latency of single calls.
//
//	go test -run '^$' -bench BenchmarkPlugin -benchtime 2000x ./k8splugin/
func BenchmarkPlugin(b *testing.B) {
	c := testcluster.New(b, 3, testcluster.WithAPI())
	c.WaitServing(b)
	ctx := context.Background()
	md := must[*kmsv1.CreateKeyResponse](b, "CreateKey")(c.KMS(0).CreateKey(ctx, &kmsv1.CreateKeyRequest{})).KeyMetadata
	p := startPlugin(b, c, md.KeyId)
	direct, err := client.New(client.Config{Endpoints: c.GRPCAddrs()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { direct.Close() })
	kms := direct.KMS()

	seed := dek(b)
	ec := map[string]string{"raftkms:purpose": "kubernetes-kms-v2"} // the plugin's context, for a like-for-like call
	wrappedDEK := p.encrypt(b, keyIDOf(b, md.Arn, 1))
	directBlob := must[*kmsv1.EncryptResponse](b, "direct Encrypt")(kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: md.KeyId, Plaintext: seed, EncryptionContext: ec})).CiphertextBlob

	decReq := wrappedDEK.decryptReq()
	ops := map[string]func() error{
		"plugin/Encrypt": func() error {
			_, err := p.api.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed, Uid: "bench"})
			return err
		},
		"plugin/Decrypt": func() error {
			_, err := p.api.Decrypt(ctx, decReq)
			return err
		},
		"direct/Encrypt": func() error {
			_, err := kms.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: md.KeyId, Plaintext: seed, EncryptionContext: ec})
			return err
		},
		"direct/Decrypt": func() error {
			_, err := kms.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: directBlob, EncryptionContext: ec, KeyId: md.KeyId})
			return err
		},
	}
	for _, name := range []string{"plugin/Encrypt", "direct/Encrypt", "plugin/Decrypt", "direct/Decrypt"} {
		for _, callers := range []int{1, 8} {
			b.Run(name+"/callers="+strconv.Itoa(callers), func(b *testing.B) { measure(b, callers, ops[name]) })
		}
	}
}

// measure runs b.N calls of op from callers goroutines and reports
// throughput and latency percentiles.
func measure(b *testing.B, callers int, op func() error) {
	lat := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	b.ResetTimer()
	start := time.Now()
	for w := range callers {
		n := b.N / callers
		if w < b.N%callers {
			n++
		}
		lat[w] = make([]time.Duration, 0, n)
		wg.Go(func() {
			for range n {
				t0 := time.Now()
				if err := op(); err != nil {
					errs <- err
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(float64(percentile(all, 0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(percentile(all, 0.99).Microseconds()), "p99-µs")
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
