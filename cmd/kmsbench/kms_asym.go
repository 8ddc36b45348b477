package main

import (
	"context"
	"fmt"

	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
)

// asymKeysPerKind is how many keys of each asymmetric kind a run makes:
// few, since RSA key generation is slow and each node caches the parsed
// private key of every key it signs with after the first call.
const asymKeysPerKind = 4

// asymKinds are the key specs of the asymmetric and HMAC operations.
var asymKinds = map[opKind]struct{ spec, usage string }{
	opSignRSA:     {"RSA_2048", "SIGN_VERIFY"},
	opSignECC:     {"ECC_NIST_P256", "SIGN_VERIFY"},
	opGenerateMac: {"HMAC_256", "GENERATE_VERIFY_MAC"},
}

// setupAsymmetric makes the keys the sign and MAC operations of a run use.
func (d *kmsDriver) setupAsymmetric(ctx context.Context, o *options, kind opKind, m *mix) error {
	for k, s := range asymKinds {
		if kind != k && (m == nil || m.weight[k] == 0) {
			continue
		}
		if d.asymKeys == nil {
			d.asymKeys = map[opKind][]string{}
		}
		ids := make([]string, asymKeysPerKind)
		if err := parallel(ctx, len(ids), 4, func(ctx context.Context, i int) error {
			var resp *kmsv1.CreateKeyResponse
			err := retryUnavailable(ctx, func() (err error) {
				resp, err = d.pool.client(i).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "kmsbench", KeySpec: s.spec, KeyUsage: s.usage})
				return err
			})
			if err != nil {
				return fmt.Errorf("kmsbench: setup: create %s key: %w", s.spec, err)
			}
			ids[i] = resp.KeyMetadata.KeyId
			return nil
		}); err != nil {
			return err
		}
		d.asymKeys[k] = ids
	}
	return nil
}

// doAsymmetric signs or MACs the payload with one of the run's keys.
func (d *kmsDriver) doAsymmetric(ctx context.Context, c kmsv1.KeyManagementServiceClient, w *worker, kind opKind) error {
	keys := d.asymKeys[kind]
	key := keys[w.rng.IntN(len(keys))]
	var err error
	switch kind {
	case opSignRSA:
		_, err = c.Sign(ctx, &kmsv1.SignRequest{KeyId: key, Message: d.payload, SigningAlgorithm: "RSASSA_PSS_SHA_256"})
	case opSignECC:
		_, err = c.Sign(ctx, &kmsv1.SignRequest{KeyId: key, Message: d.payload, SigningAlgorithm: "ECDSA_SHA_256"})
	case opGenerateMac:
		_, err = c.GenerateMac(ctx, &kmsv1.GenerateMacRequest{KeyId: key, Message: d.payload, MacAlgorithm: "HMAC_SHA_256"})
	}
	return err
}
