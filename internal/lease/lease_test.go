package lease

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tollgate-dev/tollgate/internal/testrig"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Three replicas on one Redis: each round runs the job on one of them,
// never two at once, and every replica stops with its context.
func TestEveryRunsOnOneReplicaAtATime(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	var running, overlaps, runs atomic.Int64
	job := func(context.Context) {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		runs.Add(1)
		running.Add(-1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		acquire := Redis(rd.Client(), "t:lease:job")
		wg.Go(func() { Every(ctx, 50*time.Millisecond, acquire, job) })
	}
	testrig.Eventually(t, "five rounds", func() bool { return runs.Load() >= 5 })
	cancel()
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Errorf("%d runs overlapped another", overlaps.Load())
	}
}

// Without Redis no replica runs the job (it cannot know nobody else is).
func TestEverySkipsWithoutTheLease(t *testing.T) {
	rd := testrig.StartRedis(t, testrig.WithoutPersistence())
	rdb := rd.Client()
	rd.Kill()
	var runs atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	attempts := atomic.Int64{}
	acquire := func(ctx context.Context, ttl time.Duration) (bool, error) {
		attempts.Add(1)
		return Redis(rdb, "t:lease:job")(ctx, ttl)
	}
	go func() { Every(ctx, 20*time.Millisecond, acquire, func(context.Context) { runs.Add(1) }); close(done) }()
	testrig.Eventually(t, "three attempts", func() bool { return attempts.Load() >= 3 })
	cancel()
	<-done
	if runs.Load() != 0 {
		t.Errorf("the job ran %d times without the lease", runs.Load())
	}
}
