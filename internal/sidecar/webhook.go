package sidecar

import (
	"context"
	"sync"

	"github.com/tollgate-dev/tollgate/billing"
	"github.com/tollgate-dev/tollgate/proxy"
	"github.com/tollgate-dev/tollgate/webhook"
)

// The billing API records which user it created each checkout for; the
// webhook links only that user.
var _ webhook.SessionOwners = (*billing.RedisCheckouts)(nil)

// newWebhook builds the Stripe webhook endpoint (issue 5): the mount to
// serve at webhook.path, or none when no webhook secret is configured.
// The forwarding worker is started by startWebhookWorkers.
func newWebhook(_ context.Context, s *Sidecar) ([]proxy.Mount, error) {
	cfg := s.cfg
	if len(cfg.Stripe.WebhookSecrets) == 0 {
		s.log.Info("stripe.webhook_secrets is empty: the webhook endpoint is off", "path", cfg.Webhook.Path)
		return nil, nil
	}
	o := webhook.Options{
		Secrets:        cfg.Stripe.WebhookSecrets,
		Store:          s.Customers,
		Ledger:         webhook.NewRedisLedger(s.Store.Client, s.Store.Keys),
		Owners:         billing.NewRedisCheckouts(s.Store),
		ProcessTimeout: cfg.Webhook.ProcessTimeout,
		DedupTTL:       cfg.Webhook.DedupTTL,
		Metrics:        s.Metrics,
		Logger:         s.log,
	}
	if cfg.Stripe.SecretKey != "" {
		o.Stripe = webhook.NewStripeAPI(s.Stripe)
	} else {
		s.log.Warn("stripe.secret_key is not set: webhooks run in trusted payload mode, taking state from the signed event " +
			"instead of re-reading it from Stripe (for the demo and offline tests, not for production)")
	}
	if cfg.Webhook.ForwardURL != "" {
		o.Queue = webhook.NewQueue(s.Store.Client, s.Store.Keys)
	}
	h, err := webhook.New(o)
	if err != nil {
		return nil, err
	}
	return []proxy.Mount{{Path: cfg.Webhook.Path, Handler: h}}, nil
}

// startWebhookWorkers runs the forwarding worker when webhook.forward_url
// is set. Every replica runs one; they share the queue in Redis.
func (s *Sidecar) startWebhookWorkers(ctx context.Context, wg *sync.WaitGroup) {
	cfg := s.cfg
	if len(cfg.Stripe.WebhookSecrets) == 0 || cfg.Webhook.ForwardURL == "" {
		return
	}
	f := webhook.NewForwarder(webhook.ForwarderOptions{
		Queue:       webhook.NewQueue(s.Store.Client, s.Store.Keys),
		URL:         cfg.Webhook.ForwardURL,
		Secret:      cfg.Webhook.ForwardSecret,
		Timeout:     cfg.Webhook.ForwardTimeout,
		MaxAttempts: cfg.Webhook.ForwardMaxAttempts,
		Logger:      s.log,
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.Run(ctx)
	}()
}
