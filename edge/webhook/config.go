package webhook

import (
	"net/url"
	"strings"
	"time"

	"github.com/media-service/media-service/internal/envconfig"
)

// Bounds on the configuration.
const (
	// maxURLs bounds MEDIA_WEBHOOK_URLS: each URL has its own queue and
	// sender goroutine.
	maxURLs = 8
	// minAttemptTimeout bounds MEDIA_WEBHOOK_TIMEOUT from below: a
	// receiver on another continent needs a few round trips.
	minAttemptTimeout = 100 * time.Millisecond
)

// Config configures the webhooks. cmd/media-service fills it from the
// environment with env/v11; field comments give the variable and default.
// Validate names the variable of any bad value.
type Config struct {
	// URLs receive every event (MEDIA_WEBHOOK_URLS: comma-separated http
	// or https URLs, at most 8; default none: no webhooks).
	URLs []string `env:"MEDIA_WEBHOOK_URLS" envSeparator:","`
	// QueueSize bounds the events waiting for one URL (MEDIA_WEBHOOK_QUEUE,
	// default 1000, at least 1). When it is full the oldest is dropped and
	// counted in media_webhook_events_total{result="dropped"}.
	QueueSize int `env:"MEDIA_WEBHOOK_QUEUE" envDefault:"1000"`
	// Timeout bounds one delivery attempt (MEDIA_WEBHOOK_TIMEOUT, default
	// 5s, at least 100ms).
	Timeout time.Duration `env:"MEDIA_WEBHOOK_TIMEOUT" envDefault:"5s"`
	// RetryFor bounds how long one event is retried, with exponential
	// backoff from 250ms to 8s, before it is given up and counted as
	// failed (MEDIA_WEBHOOK_RETRY_FOR, default 30s, at least the attempt
	// timeout). Later events of the same URL wait: they are delivered in
	// order.
	RetryFor time.Duration `env:"MEDIA_WEBHOOK_RETRY_FOR" envDefault:"30s"`
	// DrainTimeout bounds how long the exit waits to deliver what is
	// queued, after the sessions have closed (MEDIA_WEBHOOK_DRAIN_TIMEOUT,
	// default 5s).
	DrainTimeout time.Duration `env:"MEDIA_WEBHOOK_DRAIN_TIMEOUT" envDefault:"5s"`
}

// Validate checks c and names the variable of the first bad value.
func (c Config) Validate() error {
	v := envconfig.Check("webhook", &c)
	if len(c.URLs) > maxURLs {
		v.Failf(&c.URLs, "must name at most %d URLs, got %d", maxURLs, len(c.URLs))
	}
	for _, s := range c.URLs {
		if err := checkURL(s); err != "" {
			v.Failf(&c.URLs, "=%.100q: %s", s, err)
		}
	}
	envconfig.AtLeast(v, &c.QueueSize, 1)
	envconfig.AtLeast(v, &c.Timeout, minAttemptTimeout)
	envconfig.AtLeast(v, &c.RetryFor, c.Timeout)
	envconfig.NotNegative(v, &c.DrainTimeout)
	return v.Err()
}

// checkURL returns what is wrong with a receiver's URL, or "".
func checkURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	switch {
	case err != nil:
		return "not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "scheme must be http or https"
	case u.Host == "":
		return "no host"
	}
	return ""
}
