// Package gcgoal keeps Go's collector from running on a tiny heap.
//
// With the default GOGC of 100 the heap goal is twice the live heap, and
// never under 4 MiB. A sidecar's live heap is small (about 2 MB with a few
// customers cached), while every request allocates a few kilobytes, so the
// collector would run every few hundred requests and mark the whole heap
// each time: about a tenth of tollgate's instructions per request went to
// it (docs/performance.md). Run raises the GC percent just enough for the
// heap goal to be at least a minimum (32 MiB by default), and lowers it
// back as the live heap grows, so memory stays at most max(minimum, twice
// the live heap) as before, only with fewer collections.
package gcgoal

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMinGoal is the minimum heap goal tollgate keeps: about 4% of the
// shipped Kubernetes memory limit (256 MiB).
const DefaultMinGoal = 32 << 20

// MaxPercent bounds the GC percent Run sets, whatever the live heap.
const MaxPercent = 1000

// Percent is the GC percent that makes the heap goal (live × (1 +
// percent/100)) at least minGoal: base when base already does, never more
// than MaxPercent, and base unchanged when it is negative (GOGC=off).
func Percent(live, minGoal uint64, base int) int {
	if base < 0 {
		return base
	}
	live = max(live, 1<<20) // a heap just started: as if 1 MiB were live
	if live+live*uint64(base)/100 >= minGoal {
		return base
	}
	p := (minGoal - live) * 100 / live
	return int(min(max(p, uint64(base)), MaxPercent))
}

// Start runs Run with DefaultMinGoal, checking every second, unless the
// operator set GOGC (then started is false); stop ends it and waits.
func Start(ctx context.Context) (stop func(), started bool) {
	if os.Getenv("GOGC") != "" {
		return func() {}, false
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { Run(ctx, DefaultMinGoal, time.Second) })
	return func() { cancel(); wg.Wait() }, true
}

// running is set while a Run owns the process's GC percent.
var running atomic.Bool

// Run keeps the heap goal at least minGoal, reading the live heap every
// interval, until ctx ends; then it puts back the GC percent it found.
// The GC percent belongs to the process: while one Run is going, another
// returns at once (it would take the first one's raised percent for the
// operator's).
func Run(ctx context.Context, minGoal uint64, every time.Duration) {
	if !running.CompareAndSwap(false, true) {
		return
	}
	defer running.Store(false)
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	if base < 0 {
		return
	}
	defer debug.SetGCPercent(base)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := base
	apply := func() {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return // not reported by this runtime: leave the default
		}
		if p := Percent(sample[0].Value.Uint64(), minGoal, base); p != cur {
			debug.SetGCPercent(p)
			cur = p
		}
	}
	apply()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			apply()
		}
	}
}
