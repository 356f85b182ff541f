package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tollgate-dev/tollgate/config"
	"github.com/tollgate-dev/tollgate/webhook"
)

// triggerOptions are the flags of `tollgate trigger`.
type triggerOptions struct {
	event, configPath, url string
	sample                 webhook.SampleOptions
}

// triggerCmd builds a realistic Stripe event, signs it with the configured
// webhook secret and posts it to a running tollgate: an offline
// `stripe trigger`. Without -config it uses the demo's configuration (its
// public webhook secret and listener), so it drives `tollgate demo`.
func triggerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, code, ok := parseTrigger(args, stdout, stderr)
	if !ok {
		return code
	}
	var cfg *config.Config
	var err error
	if o.configPath != "" {
		if cfg, err = loadConfig(o.configPath); err != nil {
			printProblems(stderr, o.configPath, err)
			return 1
		}
	} else if cfg, err = loadDemoConfig(demoEnv("127.0.0.1:8080", "127.0.0.1:0", "http://127.0.0.1:1", "warn")); err != nil {
		printProblems(stderr, "embedded demo config", err)
		return 1
	}
	if len(cfg.Stripe.WebhookSecrets) == 0 {
		fmt.Fprintf(stderr, "trigger: %s has no stripe.webhook_secrets to sign with\n", o.configPath)
		return 1
	}
	target, err := webhookURL(o.url, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "trigger: -url: %v\n", err)
		return 2
	}
	if o.sample.Price == "" {
		o.sample.Price = firstPrice(cfg)
	}
	obj, err := webhook.Sample(o.event, o.sample)
	if err != nil {
		fmt.Fprintf(stderr, "trigger: %v\n", err)
		return 2
	}
	now := time.Now()
	id := webhook.NewEventID()
	body, err := webhook.NewEvent(id, o.event, now, obj)
	if err != nil {
		fmt.Fprintf(stderr, "trigger: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "POST %s\nevent %s %s (customer %s)\n", target, id, o.event, o.sample.Customer)
	return postEvent(ctx, target, body, webhook.SignatureHeader(body, cfg.Stripe.WebhookSecrets[0], now), stdout, stderr)
}

// parseTrigger reads trigger's command line; code is the exit code when
// ok is false (0 after -h).
func parseTrigger(args []string, stdout, stderr io.Writer) (o triggerOptions, code int, ok bool) {
	fs := newFlags("trigger")
	fs.StringVar(&o.configPath, "config", "", "configuration to sign with (default: the demo's)")
	fs.StringVar(&o.url, "url", "", "tollgate's base URL or the full webhook URL (default: http://<listen><webhook.path>)")
	fs.StringVar(&o.sample.Customer, "customer", demoCustomer, "the Stripe customer the event is about")
	fs.StringVar(&o.sample.Price, "price", "", "the subscription's price (default: the first price of the first plan)")
	fs.StringVar(&o.sample.User, "user", "", "checkout.session.completed: the user (client_reference_id) to link")
	fs.StringVar(&o.sample.Status, "status", "", "subscription events: the status (default: what the event implies)")
	features := fs.String("features", "", "entitlement summary: comma-separated feature lookup keys")
	periodEnd := fs.Duration("period-end", 0, "subscription events: current_period_end from now, e.g. -96h for a period that ended 4 days ago (default: a month from now)")
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.event, args = args[0], args[1:]
	}
	if code, ok := parse(fs, args, stdout, stderr); !ok {
		return o, code, false
	}
	switch {
	case o.event == "" && fs.NArg() == 1:
		o.event = fs.Arg(0)
	case o.event == "":
		return o, usageError(stderr, fs, "EVENT is required"), false
	case fs.NArg() > 0:
		return o, usageError(stderr, fs, "unexpected argument %q", fs.Arg(0)), false
	}
	if *features != "" {
		o.sample.Features = strings.Split(*features, ",")
	}
	if *periodEnd != 0 {
		o.sample.PeriodEnd = time.Now().Add(*periodEnd)
	}
	return o, 0, true
}

// webhookURL is where to post: -url as given when it has a path, else its
// host (or the configured listener's) with webhook.path.
func webhookURL(raw string, cfg *config.Config) (string, error) {
	if raw == "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return "", err
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		raw = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) URL", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = cfg.Webhook.Path
	}
	return u.String(), nil
}

// firstPrice is the first price of the alphabetically first plan.
func firstPrice(cfg *config.Config) string {
	names := make([]string, 0, len(cfg.Plans))
	for n, p := range cfg.Plans {
		if len(p.Prices) > 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "price_tollgate_test"
	}
	slices.Sort(names)
	return cfg.Plans[names[0]].Prices[0]
}

// postEvent sends the event as Stripe does and prints tollgate's answer;
// exit 0 for a 2xx.
func postEvent(ctx context.Context, target string, body []byte, sig string, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "trigger: %v\n", err)
		return 1
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", sig)
	req.Header.Set("User-Agent", "tollgate-trigger")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "trigger: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	fmt.Fprintf(stdout, "%s %s\n", resp.Status, bytes.TrimSpace(answer))
	if resp.StatusCode/100 != 2 {
		return 1
	}
	return 0
}
