package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
	"github.com/tollgate-dev/tollgate/internal/store"
)

// runSeed writes what a checkout would have left in Redis: a customer
// with an active subscription to -price, and the user's link to it.
func runSeed(args []string, stdout io.Writer) error {
	fs := newFlags("seed")
	redisURL := fs.String("redis", "", "redis://127.0.0.1:PORT/0")
	prefix := fs.String("prefix", config.Default().Redis.Prefix, "key prefix (redis.prefix)")
	user := fs.String("user", "user_bench", "the user (the token's sub)")
	customer := fs.String("customer", "cus_bench", "the Stripe customer")
	price := fs.String("price", "price_bench", "the subscribed price")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *redisURL == "" {
		return errors.New("-redis URL is required")
	}
	rc := config.Default().Redis
	rc.URL, rc.Prefix = *redisURL, *prefix
	st, err := store.Open(rc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rs := entitlements.NewRedisStore(st)
	now := time.Now()
	state := &entitlements.State{Customer: *customer, UpdatedAt: now, Source: "benchrig", Subscriptions: []entitlements.Subscription{{
		ID: "sub_bench", Status: "active", Prices: []string{*price},
		CurrentPeriodStart: now.Add(-time.Hour), CurrentPeriodEnd: now.Add(30 * 24 * time.Hour)}}}
	err = rs.Update(ctx, *customer, func(*entitlements.State) (*entitlements.State, error) { return state, nil })
	if err != nil {
		return fmt.Errorf("seed %s: %w", *customer, err)
	}
	if err := rs.LinkUser(ctx, *user, *customer); err != nil {
		return fmt.Errorf("link %s: %w", *user, err)
	}
	fmt.Fprintf(stdout, "seeded %s (active %s), linked %s\n", *customer, *price, *user)
	return nil
}
