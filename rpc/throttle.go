package rpc

import (
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
)

// DefaultImportParametersPerMinute bounds how often one identity may ask for
// import parameters: each call makes an RSA key pair on the leader (RSA-4096
// takes the better part of a second of CPU).
const DefaultImportParametersPerMinute = 10

// maxThrottled bounds how many identities a throttle remembers.
const maxThrottled = 4096

// throttle gives each identity its own token bucket (golang.org/x/time/rate).
// An identity whose bucket is full again carries no information and is
// forgotten when room is needed, so memory stays bounded.
type throttle struct {
	every time.Duration
	burst int
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newThrottle(perMinute int, now func() time.Time) *throttle {
	return &throttle{every: time.Minute / time.Duration(perMinute), burst: perMinute, now: now,
		buckets: map[string]*rate.Limiter{}}
}

// allow takes one token of identity's bucket, or answers
// ThrottlingException (ResourceExhausted) with when to try again.
func (t *throttle) allow(identity, what string) error {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.buckets[identity]
	if !ok {
		if len(t.buckets) >= maxThrottled {
			t.forgetIdle(now)
		}
		if len(t.buckets) >= maxThrottled {
			return throttled("too many identities are asking for %s; retry later", what)
		}
		l = rate.NewLimiter(rate.Every(t.every), t.burst)
		t.buckets[identity] = l
	}
	if !l.AllowN(now, 1) {
		return throttled("%s may ask for %s at most %d times a minute; retry later", identity, what, t.burst)
	}
	return nil
}

// forgetIdle drops the buckets that are full again.
func (t *throttle) forgetIdle(now time.Time) {
	for id, l := range t.buckets {
		if l.TokensAt(now) >= float64(t.burst) {
			delete(t.buckets, id)
		}
	}
}

func throttled(format string, args ...any) error {
	return &apiError{code: codes.ResourceExhausted, name: "ThrottlingException", msg: fmt.Sprintf(format, args...)}
}
