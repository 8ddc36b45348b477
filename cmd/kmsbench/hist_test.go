package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// exactPercentile is the nearest-rank percentile of sorted values.
func exactPercentile(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestHistogramPercentilesWithinResolution(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name string
		gen  func() time.Duration
	}{
		{"lognormal around 200µs", func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*0.8 + math.Log(200e3)))
		}},
		{"uniform 0..10ms", func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) }},
		{"bimodal 50µs / 20ms", func() time.Duration {
			if rng.IntN(100) < 3 {
				return 20*time.Millisecond + time.Duration(rng.Int64N(1e6))
			}
			return 50*time.Microsecond + time.Duration(rng.Int64N(5e3))
		}},
		{"tiny values", func() time.Duration { return time.Duration(rng.Int64N(200)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := NewHistogram()
			var vals []time.Duration
			for i := 0; i < 100_000; i++ {
				v := c.gen()
				vals = append(vals, v)
				h.Record(v)
			}
			slices.Sort(vals)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				got, want := h.Percentile(q), exactPercentile(vals, q)
				// Half a bucket: 1/128 of the value, or 1 ns for exact buckets.
				tol := math.Max(float64(want)/(2*subCount), 1)
				if math.Abs(float64(got-want)) > tol {
					t.Errorf("p%v = %v, want %v ± %v", q*100, got, want, time.Duration(tol))
				}
			}
			if h.Count() != uint64(len(vals)) || h.Min() != vals[0] || h.Max() != vals[len(vals)-1] {
				t.Errorf("count/min/max = %d/%v/%v, want %d/%v/%v", h.Count(), h.Min(), h.Max(), len(vals), vals[0], vals[len(vals)-1])
			}
			var sum time.Duration
			for _, v := range vals {
				sum += v
			}
			if mean := sum / time.Duration(len(vals)); h.Mean() != mean {
				t.Errorf("mean = %v, want %v", h.Mean(), mean)
			}
		})
	}
}

func TestHistogramEdgeCases(t *testing.T) {
	h := NewHistogram()
	if h.Percentile(0.5) != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Fatal("an empty histogram must report zeros")
	}
	h.Record(-5)
	if h.Percentile(0.99) != 0 {
		t.Errorf("negative latency must count as 0, got %v", h.Percentile(0.99))
	}
	h = NewHistogram()
	h.Record(1234567 * time.Nanosecond)
	for _, q := range []float64{0.001, 0.5, 0.999, 1} {
		if got := h.Percentile(q); got != 1234567*time.Nanosecond {
			t.Errorf("single value: p%v = %v, want the value itself", q*100, got)
		}
	}
	h.Record(100 * time.Hour) // beyond the range: clamped, not lost
	if h.Count() != 2 || h.Max() != time.Duration(maxValue) {
		t.Errorf("out-of-range value: count %d max %v", h.Count(), h.Max())
	}
}

func TestHistogramBucketsAreContiguous(t *testing.T) {
	for i := 0; i < numBuckets-1; i++ {
		lo, next := bucketLow(i), bucketLow(i+1)
		if next <= lo {
			t.Fatalf("bucket %d [%d, %d) is empty", i, lo, next)
		}
		if bucketOf(lo) != i || bucketOf(next-1) != i || bucketOf(next) != i+1 {
			t.Fatalf("bucket %d: bounds [%d, %d) do not map back", i, lo, next)
		}
	}
	if bucketOf(maxValue) != numBuckets-1 {
		t.Fatalf("maxValue lands in bucket %d of %d", bucketOf(maxValue), numBuckets)
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i) * time.Microsecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		all.Record(d)
	}
	a.Merge(b)
	a.Merge(nil)
	a.Merge(NewHistogram())
	if *a != *all {
		t.Fatalf("merged histogram differs from one fed every value")
	}
}
