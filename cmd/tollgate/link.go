package main

import (
	"context"
	"fmt"
	"io"
	"regexp"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/entitlements"
)

var customerIDRe = regexp.MustCompile(`^cus_[A-Za-z0-9]{1,250}$`)

// linkCmd shows or repairs which Stripe customer a user (JWT subject)
// belongs to. Checkout webhooks link a user once and never move it, so a
// wrong or deleted customer needs an operator.
func linkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("link")
	path := fs.String("config", "", "path to the YAML configuration file")
	user := fs.String("user", "", "the user id (the JWT's user_claim, sub by default)")
	customer := fs.String("customer", "", "link the user to this Stripe customer (cus_...), replacing any link")
	unlink := fs.Bool("unlink", false, "remove the user's link; their next checkout links them anew")
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return code
	}
	switch {
	case *path == "":
		return usageError(stderr, fs, "-config FILE is required")
	case *user == "":
		return usageError(stderr, fs, "-user ID is required")
	case fs.NArg() > 0:
		return usageError(stderr, fs, "unexpected argument %q", fs.Arg(0))
	case *unlink && *customer != "":
		return usageError(stderr, fs, "-customer and -unlink exclude each other")
	}
	if *customer != "" && !customerIDRe.MatchString(*customer) {
		fmt.Fprintf(stderr, "link: -customer %q is not a Stripe customer id (cus_...)\n", *customer)
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		printProblems(stderr, *path, err)
		return 1
	}
	st, ok := openRedis(ctx, "link", cfg.Redis, newLogger(config.Log{Level: "warn", Format: "text"}, stderr), stderr)
	if !ok {
		return 1
	}
	defer st.Close()
	links := entitlements.NewRedisStore(st)
	if !*unlink && *customer == "" {
		c, ok, err := links.CustomerForUser(ctx, *user)
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "link: %v\n", err)
			return 1
		case !ok:
			fmt.Fprintf(stdout, "user %s: not linked to a customer\n", *user)
		default:
			fmt.Fprintf(stdout, "user %s: %s\n", *user, c)
		}
		return 0
	}
	prev, err := links.Relink(ctx, *user, *customer)
	if err != nil {
		fmt.Fprintf(stderr, "link: %v\n", err)
		return 1
	}
	if prev == "" {
		prev = "no customer"
	}
	now := *customer
	if now == "" {
		now = "no customer"
	}
	fmt.Fprintf(stdout, "user %s: %s -> %s (running replicas follow within 30 s)\n", *user, prev, now)
	return 0
}
