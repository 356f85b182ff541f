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
// The forwarding worker and the background replay are started by
// startWebhookWorkers.
func newWebhook(_ context.Context, s *Sidecar) ([]proxy.Mount, error) {
	cfg := s.cfg
	if len(cfg.Stripe.WebhookSecrets) == 0 {
		s.log.Info("stripe.webhook_secrets is empty: the webhook endpoint is off", "path", cfg.Webhook.Path)
		return nil, nil
	}
	o := s.webhookOptions()
	o.Secrets = cfg.Stripe.WebhookSecrets
	h, err := webhook.New(o)
	if err != nil {
		return nil, err
	}
	return []proxy.Mount{{Path: cfg.Webhook.Path, Handler: h}}, nil
}

// webhookOptions are what the endpoint and the replay share: the same
// ledger, store, Stripe reads, forwarding queue and delivery log, so an
// event is one event whichever way it arrives.
func (s *Sidecar) webhookOptions() webhook.Options {
	cfg := s.cfg
	o := webhook.Options{
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
		s.log.Info("webhooks run in trusted payload mode, taking state from the signed event " +
			"instead of re-reading it from Stripe (for the demo and offline tests, not for production)")
	}
	if cfg.Webhook.ForwardURL != "" && len(cfg.Stripe.WebhookSecrets) > 0 {
		o.Queue = webhook.NewQueue(s.Store.Client, s.Store.Keys)
	}
	if cfg.Webhook.DeliveryLogSize > 0 {
		o.Deliveries = webhook.NewDeliveryLog(s.Store.Client, s.Store.Keys, cfg.Webhook.DeliveryLogSize, cfg.Webhook.DeliveryLogAge)
	}
	return o
}

// startWebhookWorkers runs the forwarding worker when webhook.forward_url
// is set (every replica runs one; they share the queue in Redis), and the
// background replay when gating.replay_interval is set (one replica at a
// time).
func (s *Sidecar) startWebhookWorkers(ctx context.Context, wg *sync.WaitGroup) {
	cfg := s.cfg
	if err := s.startReplay(ctx, wg); err != nil {
		s.log.Error("webhook: background replay not started", "err", err)
	}
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

// startReplay runs the background replay; it needs a Stripe key to list
// events with.
func (s *Sidecar) startReplay(ctx context.Context, wg *sync.WaitGroup) error {
	cfg := s.cfg
	if cfg.Gating.ReplayInterval <= 0 || cfg.Stripe.SecretKey == "" {
		return nil
	}
	o := s.webhookOptions()
	api := webhook.NewStripeAPI(s.Stripe)
	o.Stripe = api
	r, err := webhook.NewReplayer(webhook.ReplayOptions{Options: o, Events: api})
	if err != nil {
		return err
	}
	mark := webhook.NewReplayMark(s.Store.Client, s.Store.Keys)
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.RunEvery(ctx, cfg.Gating.ReplayInterval, mark)
	}()
	return nil
}
