package gcgoal

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		name      string
		live, min uint64
		base      int
		want      int
	}{
		{"tiny heap: capped", 1 * mib, 64 * mib, 100, MaxPercent},
		{"unknown (0) counts as 1 MiB", 0, 8 * mib, 100, 700},
		{"2 MiB live: capped", 2 * mib, 32 * mib, 100, MaxPercent},
		{"4 MiB live", 4 * mib, 32 * mib, 100, 700},
		{"8 MiB live", 8 * mib, 32 * mib, 100, 300},
		{"the default already reaches the goal", 16 * mib, 32 * mib, 100, 100},
		{"large heap: the default", 512 * mib, 32 * mib, 100, 100},
		{"never below the operator's base", 10 * mib, 32 * mib, 250, 250},
		{"GOGC=off stays off", 1 * mib, 32 * mib, -1, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Percent(tt.live, tt.min, tt.base)
			if got != tt.want {
				t.Fatalf("Percent(%d, %d, %d) = %d, want %d", tt.live, tt.min, tt.base, got, tt.want)
			}
			if got >= 0 {
				live := max(tt.live, mib)
				if goal := live + live*uint64(got)/100; got < MaxPercent && goal+live/100+1 < tt.min {
					t.Fatalf("goal %d below the minimum %d", goal, tt.min)
				}
			}
		})
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestRunRaisesAndRestores runs the tuner in this test's process: with a
// small live heap it raises the GC percent, with a live heap above the
// goal it goes back to the default, and when stopped it restores what it
// found.
func TestRunRaisesAndRestores(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	runtime.GC()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { Run(ctx, 256<<20, 5*time.Millisecond) })
	testrig.Eventually(t, "GC percent raised for a small heap", func() bool { return gogc() > 100 })

	// A second Run while the first owns the percent returns at once,
	// rather than taking the raised percent for the operator's.
	second := make(chan struct{})
	go func() { Run(context.Background(), 256<<20, 5*time.Millisecond); close(second) }()
	select {
	case <-second:
	case <-time.After(10 * time.Second):
		t.Fatal("a second Run did not return while the first was running")
	}

	ballast := make([][]byte, 0, 512) // 512 MiB live, with pointers to it
	for range 512 {
		ballast = append(ballast, make([]byte, 1<<20))
	}
	runtime.GC()
	testrig.Eventually(t, "GC percent back to 100 for a heap above the goal", func() bool {
		runtime.GC()
		return gogc() == 100
	})
	runtime.KeepAlive(ballast)
	ballast = nil
	runtime.GC()
	testrig.Eventually(t, "GC percent raised again once the heap is small", func() bool { return gogc() > 100 })

	cancel()
	wg.Wait()
	if got := gogc(); got != 100 {
		t.Fatalf("GC percent %d after Run stopped, want the 100 it found", got)
	}
}

// TestStartRespectsGOGC: with GOGC set, Start starts nothing; without
// it, Start raises the GC percent and its stop puts it back.
func TestStartRespectsGOGC(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	runtime.GC()

	t.Setenv("GOGC", "100")
	stop, started := Start(context.Background())
	stop()
	if started {
		t.Fatal("Start started the tuner with GOGC set")
	}

	t.Setenv("GOGC", "")
	stop, started = Start(context.Background())
	if !started {
		t.Fatal("Start did not start the tuner without GOGC")
	}
	testrig.Eventually(t, "GC percent raised by Start without GOGC", func() bool { return gogc() > 100 })
	stop()
	if got := gogc(); got != 100 {
		t.Fatalf("GC percent %d after stop, want 100", got)
	}
}
