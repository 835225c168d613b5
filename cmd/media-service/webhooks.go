package main

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/media-service/media-service/edge/webhook"
)

// newWebhooks starts the webhook notifier when MEDIA_WEBHOOK_URLS names
// any receiver; nil otherwise. Events are signed with the API secret the
// instance verifies tokens with (the dev secret in dev mode).
func newWebhooks(cfg config, log *slog.Logger, meter metric.Meter) (*webhook.Notifier, error) {
	if len(cfg.webhook.URLs) == 0 {
		return nil, nil
	}
	keys, err := cfg.edge.Keys()
	if err != nil {
		return nil, err
	}
	return webhook.New(cfg.webhook, keys.Secret, log, meter)
}

// closeWebhooks delivers what is queued, for at most d. It is idempotent.
func closeWebhooks(n *webhook.Notifier, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	n.Close(ctx)
}
