package main

import (
	"math"
	"math/bits"
	"time"
)

// The latency histogram is log-linear (the HdrHistogram layout): values below
// 2^subBits nanoseconds have a bucket each, and every power of two above is
// split into 2^subBits equal buckets. A value is reported as the middle of
// its bucket, so the relative error is at most 2^-(subBits+1) (under 1%),
// whatever the scale, with a fixed, small memory cost per histogram.
const (
	subBits  = 6
	subCount = 1 << subBits
	// maxExp caps recorded values at 2^maxExp ns (about 73 minutes).
	maxExp     = 42
	numBuckets = subCount + (maxExp-subBits)*subCount
	maxValue   = uint64(1)<<maxExp - 1
)

// Histogram records latencies. It is not safe for concurrent use: each load
// worker keeps its own and they are merged at the end.
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	sum    uint64 // nanoseconds; overflows only after ~584 years in total
	min    uint64
	max    uint64
}

// NewHistogram makes an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - 1 // v is in [2^e, 2^(e+1)), e >= subBits
	sub := int(v>>(e-subBits)) - subCount
	return subCount + (e-subBits)*subCount + sub
}

// bucketLow is the smallest value of bucket i; bucketLow(i+1)-1 its largest.
func bucketLow(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	j := i - subCount
	e := j/subCount + subBits
	return uint64(subCount+j%subCount) << (e - subBits)
}

// Record adds one latency; negative values count as zero and values beyond
// the range as the largest one.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	v = min(v, maxValue)
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// Merge adds every value recorded in o.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Min is the smallest recorded value (exact).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max is the largest recorded value (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the average of the recorded values (exact).
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / h.n)
}

// Percentile returns the value at quantile q (0 < q <= 1): the smallest
// recorded value such that a fraction q of all values is at or below it
// (nearest rank), within the bucket resolution. An empty histogram gives 0.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum < rank {
			continue
		}
		lo, hi := bucketLow(i), bucketLow(i+1)-1
		mid := lo + (hi-lo)/2
		// The exact extremes are known; never report beyond them.
		return time.Duration(min(max(mid, h.min), h.max))
	}
	return time.Duration(h.max)
}
