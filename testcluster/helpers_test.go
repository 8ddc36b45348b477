package testcluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/raftkms/raftkms/fsm"
	eventsv1 "github.com/raftkms/raftkms/proto/events/v1"
	"github.com/raftkms/raftkms/testcluster"
)

func envelope(req string) *eventsv1.Envelope {
	return &eventsv1.Envelope{TimeUnixNano: time.Now().UnixNano(), RequestId: req}
}

func createKeyEnv(id, req string) *eventsv1.Envelope {
	env := envelope(req)
	env.Event = &eventsv1.Envelope_CreateKey{CreateKey: &eventsv1.CreateKey{
		KeyId: id, Origin: eventsv1.Origin_ORIGIN_GENERATED, SealedMaterial: []byte("sealed-" + id + "-v1")}}
	return env
}

func tagKeyEnv(id, req, k, v string) *eventsv1.Envelope {
	env := envelope(req)
	env.Event = &eventsv1.Envelope_TagKey{TagKey: &eventsv1.TagKey{KeyId: id, Tags: []*eventsv1.Tag{{Key: k, Value: v}}}}
	return env
}

// mustPropose proposes through the cluster and fails the test on any error
// or rejection.
func mustPropose(t testing.TB, c *testcluster.Cluster, env *eventsv1.Envelope) *fsm.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Propose(ctx, env)
	if err != nil {
		t.Fatalf("propose %s: %v", env.RequestId, err)
	}
	if res.Err != nil {
		t.Fatalf("propose %s: rejected: %v", env.RequestId, res.Err)
	}
	return res
}

// writeKeys creates n keys (and tags each) from a few goroutines, so that
// Raft batches them; it returns the key IDs.
func writeKeys(t *testing.T, c *testcluster.Cluster, prefix string, n int) []string {
	t.Helper()
	const workers = 8
	ids := make([]string, n)
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := w; i < n; i += workers {
				id := fmt.Sprintf("%s-%d", prefix, i)
				ids[i] = id
				for _, env := range []*eventsv1.Envelope{createKeyEnv(id, "create-"+id), tagKeyEnv(id, "tag-"+id, "n", id)} {
					res, err := c.Propose(ctx, env)
					if err == nil && res.Err != nil {
						err = res.Err
					}
					if err != nil {
						errs <- fmt.Errorf("%s: %w", env.RequestId, err)
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	return ids
}
