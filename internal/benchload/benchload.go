// Package benchload is what the latency benchmarks share: a load paced at
// a steady rate from several writers, and latency percentiles.
package benchload

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Paced runs count operations at rate per second in total, spread over
// writers goroutines, each on its own ticker, started staggered so the
// writes do not arrive in bursts. op gets the writer and the operation's
// global index. It returns the wall time from the first tick to the end of
// the last operation; an operation's error fails tb.
func Paced(tb testing.TB, count, rate, writers int, op func(w, i int) error) time.Duration {
	tb.Helper()
	period := time.Duration(float64(time.Second) * float64(writers) / float64(rate))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			time.Sleep(period * time.Duration(w) / time.Duration(writers))
			t := time.NewTicker(period)
			defer t.Stop()
			for {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				if err := op(w, i); err != nil {
					errs <- err
					return
				}
				<-t.C
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return elapsed
}

// Latencies collects durations.
type Latencies []time.Duration

// PercentileMS is the p-th percentile (nearest rank) in milliseconds; 0
// when there are none.
func (l Latencies) PercentileMS(p float64) float64 {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := min(max(int(math.Ceil(p/100*float64(len(s))))-1, 0), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}
