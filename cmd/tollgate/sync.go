package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/metrics"
	"github.com/tollgate-dev/tollgate/internal/stripeapi"
)

// syncCmd reconciles every customer's state from Stripe now.
func syncCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, path, code := configArg("sync", args, stdout, stderr)
	if cfg == nil {
		return code
	}
	if cfg.Stripe.SecretKey == "" {
		fmt.Fprintf(stderr, "%s: stripe.secret_key is required to read subscriptions from Stripe\n", path)
		return 1
	}
	log := newLogger(cfg.Log, stderr)
	st, ok := openRedis(ctx, "sync", cfg.Redis, log, stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	api := stripeapi.New(cfg.Stripe, metrics.New(), log)
	lastPrint := time.Now()
	rec := &entitlements.Reconciler{
		Store: entitlements.NewRedisStore(st), Source: entitlements.NewStripeSource(api), Log: log,
		Progress: func(done, total int) {
			if done == total || time.Since(lastPrint) >= 2*time.Second {
				lastPrint = time.Now()
				fmt.Fprintf(stdout, "  %d/%d customers checked\n", done, total)
			}
		},
	}
	fmt.Fprintln(stdout, "sync: reading every subscription from Stripe...")
	rep, err := rec.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "sync: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "sync: %d customers checked, %d repaired, %d failed, in %s\n",
		rep.Customers, rep.Changed, rep.Failed, rep.Took.Round(time.Millisecond))
	if rep.Failed > 0 {
		return 1
	}
	return 0
}
