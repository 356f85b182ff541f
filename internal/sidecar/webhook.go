package sidecar

import (
	"context"

	"github.com/tollgate-dev/tollgate/proxy"
)

// newWebhook builds the Stripe webhook endpoint (issue 5): it returns the
// mount to serve at webhook.path, and the workers to run (event
// forwarding), or nil mounts when no webhook secret is configured.
func newWebhook(ctx context.Context, s *Sidecar) ([]proxy.Mount, error) {
	return nil, nil
}
