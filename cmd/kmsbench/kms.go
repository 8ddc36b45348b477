package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/raftkms/raftkms/keycrypto"
	kmsv1 "github.com/raftkms/raftkms/proto/kms/v1"
	"github.com/raftkms/raftkms/rpc"
	"github.com/raftkms/raftkms/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// spawned is an in-process raftkms cluster started by kmsbench.
type spawned struct {
	local *server.Local
	dir   string
}

// spawnCluster starts n nodes on 127.0.0.1 as `kmsd dev` does (same Raft
// timeouts: kmsd leaves raftnode's defaults alone), with a generated root key
// under a temporary directory, and waits until every node serves.
func spawnCluster(ctx context.Context, o *options) (*spawned, error) {
	dir, err := os.MkdirTemp(o.dataDir, "kmsbench-raftkms-")
	if err != nil {
		return nil, err
	}
	root, err := keycrypto.GenerateRootKey(rand.Reader)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// The on-demand rotation limit (10 per key) would turn a rotate run into
	// errors after a few operations; raise it, as
	// `kmsd dev --on-demand-rotation-limit` can.
	local, err := server.StartLocal(server.LocalConfig{
		Nodes:      o.spawn,
		Dir:        dir,
		RootKey:    root,
		Limits:     rpc.Limits{OnDemandLimit: math.MaxUint32},
		StaleReads: false,
		ReadMode:   o.readMode,
		Logger:     benchLogger(o),
		TuneRaft:   o.tuneRaft,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &spawned{local: local, dir: dir}
	if err := s.waitServing(ctx, 30*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// benchLogger is the spawned cluster's logger, nil when logs are off.
func benchLogger(o *options) hclog.Logger {
	if o.logLevel == "" || o.logLevel == "off" {
		return nil
	}
	return hclog.New(&hclog.LoggerOptions{Name: "kmsbench", Level: hclog.LevelFromString(o.logLevel), Output: os.Stderr,
		JSONFormat: o.logFormat == "json"})
}

// waitServing polls until there is a leader and every running node serves.
func (s *spawned) waitServing(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ready := s.local.Leader() >= 0
		for i := range s.local.Endpoints() {
			if srv := s.local.Server(i); srv != nil && !srv.Serving() {
				ready = false
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("kmsbench: the spawned cluster did not start serving in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *spawned) stop() {
	s.local.Stop()
	os.RemoveAll(s.dir)
}

// clientPool is a few gRPC connections spread across endpoints; worker i
// uses connection i mod len.
type clientPool struct {
	conns   []*grpc.ClientConn
	clients []kmsv1.KeyManagementServiceClient
}

func dialPool(endpoints []string, n int) (*clientPool, error) {
	if n <= 0 {
		n = 2 * len(endpoints)
	}
	p := &clientPool{}
	for i := 0; i < n; i++ {
		c, err := grpc.NewClient(endpoints[i%len(endpoints)], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			p.close()
			return nil, err
		}
		p.conns = append(p.conns, c)
		p.clients = append(p.clients, kmsv1.NewKeyManagementServiceClient(c))
	}
	return p, nil
}

func (p *clientPool) client(i int) kmsv1.KeyManagementServiceClient {
	return p.clients[i%len(p.clients)]
}

func (p *clientPool) close() {
	for _, c := range p.conns {
		c.Close()
	}
}

// kmsDriver drives the KeyManagementService API: raftkms itself, or the bare
// gRPC baseline, which implements the crypto calls of the same service.
type kmsDriver struct {
	pool    *clientPool
	keys    []string // key IDs made in setup
	blobs   [][]byte // ciphertexts of the payload, for decrypt
	payload []byte
	kind    opKind
	mix     *mix        // non-nil for mixed runs
	md      metadata.MD // sent with every call (stale-ok reads)
	// asymKeys are the keys of the sign and MAC operations (kms_asym.go).
	asymKeys map[opKind][]string
}

// setupKMS makes the keys (and, for decrypt, the ciphertexts) a run uses.
// Keys are made through the API, so the same setup serves raftkms and the
// gRPC baseline.
func setupKMS(ctx context.Context, o *options, pool *clientPool, kind opKind, m *mix) (*kmsDriver, error) {
	d := &kmsDriver{pool: pool, kind: kind, mix: m, payload: make([]byte, o.payload)}
	if _, err := rand.Read(d.payload); err != nil {
		return nil, err
	}
	if o.staleReads {
		d.md = metadata.Pairs(rpc.MDStaleOK, "true")
	}
	d.keys = make([]string, o.keys)
	if err := parallel(ctx, o.keys, 16, func(ctx context.Context, i int) error {
		var resp *kmsv1.CreateKeyResponse
		err := retryUnavailable(ctx, func() (err error) {
			resp, err = pool.client(i).CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "kmsbench"})
			return err
		})
		if err != nil {
			return fmt.Errorf("kmsbench: setup: create key: %w", err)
		}
		d.keys[i] = resp.KeyMetadata.KeyId
		return nil
	}); err != nil {
		return nil, err
	}
	if err := d.setupAsymmetric(ctx, o, kind, m); err != nil {
		return nil, err
	}
	needBlobs := kind == opDecrypt || (m != nil && m.weight[opDecrypt] > 0)
	if needBlobs {
		n := max(o.keys, 64)
		d.blobs = make([][]byte, n)
		if err := parallel(ctx, n, 16, func(ctx context.Context, i int) error {
			var resp *kmsv1.EncryptResponse
			err := retryUnavailable(ctx, func() (err error) {
				resp, err = pool.client(i).Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: d.keys[i%len(d.keys)], Plaintext: d.payload})
				return err
			})
			if err != nil {
				return fmt.Errorf("kmsbench: setup: encrypt: %w", err)
			}
			d.blobs[i] = resp.CiphertextBlob
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *kmsDriver) do(ctx context.Context, w *worker) (opKind, error) {
	kind := d.kind
	if d.mix != nil {
		kind = d.mix.pick(w.rng)
	}
	if d.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, d.md)
	}
	c := d.pool.client(w.id)
	var err error
	switch kind {
	case opEncrypt:
		_, err = c.Encrypt(ctx, &kmsv1.EncryptRequest{KeyId: d.keys[w.rng.IntN(len(d.keys))], Plaintext: d.payload})
	case opDecrypt:
		_, err = c.Decrypt(ctx, &kmsv1.DecryptRequest{CiphertextBlob: d.blobs[w.rng.IntN(len(d.blobs))]})
	case opGenerateDataKey:
		_, err = c.GenerateDataKey(ctx, &kmsv1.GenerateDataKeyRequest{KeyId: d.keys[w.rng.IntN(len(d.keys))], KeySpec: "AES_256"})
	case opCreateKey:
		_, err = c.CreateKey(ctx, &kmsv1.CreateKeyRequest{Description: "kmsbench"})
	case opSignRSA, opSignECC, opGenerateMac:
		err = d.doAsymmetric(ctx, c, w, kind)
	case opRotate:
		// Worker i rotates key i mod keys: with --keys >= --concurrency no
		// two workers race on one key's expected version.
		_, err = c.RotateKeyOnDemand(ctx, &kmsv1.RotateKeyOnDemandRequest{KeyId: d.keys[w.id%len(d.keys)]})
	default:
		err = fmt.Errorf("kmsbench: %s is not a KMS operation", kind)
	}
	return kind, err
}

// retryUnavailable calls fn until it succeeds, fails with something other
// than Unavailable (a node still joining, an election), or ctx ends.
func retryUnavailable(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if status.Code(err) != codes.Unavailable {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// parallel calls fn(i) for i in [0, n) with at most width at a time, and
// returns the first error.
func parallel(ctx context.Context, n, width int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, width)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}
