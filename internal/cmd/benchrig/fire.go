package main

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// runFire sends exactly -n requests over -c connections and fails unless
// every answer is 200. A fixed count, not a duration, is what makes
// instructions per request under callgrind repeatable.
func runFire(args []string, stdout io.Writer) error {
	fs := newFlags("fire")
	n := fs.Int("n", 1000, "requests to send")
	c := fs.Int("c", 8, "connections")
	var hs headers
	fs.Var(&hs, "H", "request header \"Name: value\" (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *n < 1 || *c < 1 || *n > 10_000_000 || *c > 1024 {
		return errors.New("usage: fire [-n N (1..1e7)] [-c C (1..1024)] [-H h]... URL")
	}
	t, err := newTarget(fs.Arg(0), hs)
	if err != nil {
		return err
	}
	var next, bad atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range *c {
		wg.Go(func() {
			cn := &conn{t: t}
			defer cn.close()
			for next.Add(1) <= int64(*n) {
				status, err := cn.do()
				if err == nil && status != 200 {
					err = fmt.Errorf("status %d", status)
				}
				if err != nil {
					bad.Add(1)
					once.Do(func() { firstErr = err })
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Fprintf(stdout, "fire: %d requests in %s (%.0f/s), %d failed\n", *n, el.Round(time.Millisecond), float64(*n)/el.Seconds(), bad.Load())
	if firstErr != nil {
		return fmt.Errorf("%d of %d requests failed, first: %w", bad.Load(), *n, firstErr)
	}
	return nil
}
