package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// runOpenLoop sends requests on a fixed schedule, request i at
// start + i/rate, whether or not earlier ones have been answered, and
// measures each from its scheduled time, not from when it was sent: a
// stalled target cannot hide its stall by slowing the sender down
// (coordinated omission, the flaw of closed-loop tools such as wrk).
func runOpenLoop(args []string, stdout io.Writer) error {
	fs := newFlags("openloop")
	rate := fs.Int("rate", 2000, "requests per second")
	dur := fs.Duration("d", 10*time.Second, "how long to send (warm-up included)")
	warm := fs.Duration("warmup", time.Second, "the first part of -d, not measured")
	c := fs.Int("c", 64, "connections (the most requests in flight)")
	var hs headers
	fs.Var(&hs, "H", "request header \"Name: value\" (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() != 1:
		return errors.New("usage: openloop [-rate R] [-d D] [-warmup W] [-c C] [-H h]... URL")
	case *rate < 1 || *rate > 100_000, *c < 1 || *c > 1024:
		return errors.New("-rate must be 1..100000 and -c 1..1024")
	case *dur <= *warm || *dur > 10*time.Minute:
		return errors.New("-d must be longer than -warmup and at most 10m")
	}
	t, err := newTarget(fs.Arg(0), hs)
	if err != nil {
		return err
	}
	r := schedule(t, *rate, *dur, *warm, *c)
	fmt.Fprintln(stdout, r)
	if r.failed > 0 {
		return fmt.Errorf("%d requests failed (first: %v)", r.failed, r.firstErr)
	}
	return nil
}

type loopResult struct {
	rate         int
	sent, failed int64
	firstErr     error
	lat          []time.Duration // measured requests, sorted
	maxLag       time.Duration   // how late the latest send left
	elapsed      time.Duration
}

func (r loopResult) String() string {
	q := func(p float64) int64 {
		if len(r.lat) == 0 {
			return 0
		}
		return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))].Microseconds()
	}
	return fmt.Sprintf("rate=%d sent=%d measured=%d failed=%d achieved=%.0f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d max_send_lag_us=%d",
		r.rate, r.sent, len(r.lat), r.failed, float64(r.sent)/r.elapsed.Seconds(),
		q(0.50), q(0.90), q(0.99), q(0.999), q(1), r.maxLag.Microseconds())
}

func schedule(t *target, rate int, dur, warm time.Duration, conns int) loopResult {
	interval := time.Second / time.Duration(rate)
	total := int64(dur / interval)
	skip := int64(warm / interval)
	var next, failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var all []time.Duration
	var maxLag time.Duration
	var wg sync.WaitGroup
	start := time.Now().Add(50 * time.Millisecond) // every worker has started
	for range conns {
		wg.Go(func() {
			cn := &conn{t: t}
			defer cn.close()
			var mine []time.Duration
			var lag time.Duration
			for {
				i := next.Add(1) - 1
				if i >= total {
					break
				}
				due := start.Add(time.Duration(i) * interval)
				if d := time.Until(due); d > 0 {
					time.Sleep(d)
				}
				lag = max(lag, time.Since(due))
				status, err := cn.do()
				took := time.Since(due)
				if err == nil && status != 200 {
					err = fmt.Errorf("status %d", status)
				}
				if err != nil {
					if failed.Add(1) == 1 {
						mu.Lock()
						firstErr = err
						mu.Unlock()
					}
					continue
				}
				if i >= skip {
					mine = append(mine, took)
				}
			}
			mu.Lock()
			all = append(all, mine...)
			maxLag = max(maxLag, lag)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(all)
	return loopResult{rate: rate, sent: total, failed: failed.Load(), firstErr: firstErr,
		lat: all, maxLag: maxLag, elapsed: time.Since(start)}
}
