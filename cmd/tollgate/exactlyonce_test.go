package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate-dev/tollgate/internal/store"
	"github.com/tollgate-dev/tollgate/internal/testrig"
	"github.com/tollgate-dev/tollgate/meter"
)

// The proof of issue 6 with real processes: two `tollgate serve` on one
// real Redis, Stripe failing a share of calls with 500 and 429 and timing
// out some after recording them, Redis restarted and one replica stopped
// with SIGTERM mid-run. In the end the units reported to Stripe equal the
// units the upstream served, exactly, and no identifier was accepted twice.
func TestExactlyOnceAcrossProcesses(t *testing.T) {
	bin := buildBinary(t)
	rd := testrig.StartRedis(t)
	double := testrig.NewStripeDouble(t)
	double.FailRateWith(0.2, 21, testrig.Fault{Status: 500, Type: "api_error", Message: "An unknown error occurred",
		ShouldRetry: "true", PathPrefix: "/v1/billing/meter_events"})
	double.TimeoutAfterRecord(0.1, 22)
	ledger := &timedLedger{}
	app := httptest.NewServer(ledger.handler())
	defer app.Close()
	cfgPath := writeMeteringConfig(t, app.URL, rd.URL(), double.URL(), 100*time.Millisecond)
	keys := store.Keys{Prefix: "tgk:"}
	rdb := rd.Client()

	a := startTollgate(t, bin, cfgPath)
	waitLease(t, func() string { return rdb.Get(context.Background(), keys.Global("usage", "lease")).Val() }, a)
	b := startTollgate(t, bin, cfgPath)
	stopA, stopB := make(chan struct{}), make(chan struct{})
	var wgA, wgB sync.WaitGroup
	hammer(t, a.proxyAddr, "cus_A", stopA, &wgA)
	hammer(t, b.proxyAddr, "cus_B", stopB, &wgB)

	time.Sleep(800 * time.Millisecond) // load runs: a timeline, not a wait for a condition
	rd.Kill()                          // AOF with appendfsync always keeps every acknowledged write
	time.Sleep(300 * time.Millisecond)
	rd.Restart()
	double.FailRate(0.2, http.StatusTooManyRequests, 23)
	time.Sleep(500 * time.Millisecond)
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-a.exited // the graceful path flushes everything before exit
	close(stopA)
	wgA.Wait()
	if code := a.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("replica A exit code after SIGTERM = %d; want 0", code)
	}
	time.Sleep(500 * time.Millisecond)
	close(stopB)
	wgB.Wait()

	for _, prefix := range []string{"cus_A", "cus_B"} {
		served := ledger.sum(prefix, time.Time{})
		testrig.WaitFor(t, 40*time.Second, func() error {
			if got := reportedUnits(double, prefix); got != served {
				return fmt.Errorf("%s*: reported %d, served %d", prefix, got, served)
			}
			return nil
		})
		t.Logf("%s*: %d units served by the upstream, %d reported to Stripe", prefix, served, reportedUnits(double, prefix))
	}
	// Reports Stripe accepted while the answer timed out are marked done on
	// a later attempt (Stripe answers "already exists"): wait for that.
	testrig.WaitFor(t, 40*time.Second, func() error {
		u, err := meter.ReadUsage(context.Background(), rdb, keys)
		if err != nil {
			return err
		}
		for _, r := range u.Rows {
			if r.Pending != 0 || r.Parked != 0 {
				return fmt.Errorf("%s %s: %d pending, %d parked", r.Customer, r.Meter, r.Pending, r.Parked)
			}
		}
		return nil
	})
	for _, prefix := range []string{"cus_A", "cus_B"} {
		if got, served := reportedUnits(double, prefix), ledger.sum(prefix, time.Time{}); got != served {
			t.Errorf("%s*: finally reported %d, served %d", prefix, got, served)
		}
	}
	checkUnique(t, double)
}
