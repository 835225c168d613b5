package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// minLeaseTTL bounds MEDIA_FLEET_LEASE_TTL from below: a lease is renewed
// every third of it, and a renewal is one store round trip that a loaded
// instance must fit in with room to spare.
const minLeaseTTL = time.Second

// Config configures this instance's part in a fleet. cmd/media-service
// fills it from the environment with env/v11; field comments give the
// variable and default. Validate names the variable of any bad value.
type Config struct {
	// RedisURL is the Redis holding the fleet's registry and directory
	// (MEDIA_REDIS_URL: redis:// or rediss://, with user and password if
	// any, and a database number as its path). Empty, the default: the
	// instance runs alone with an in-process directory.
	RedisURL string `env:"MEDIA_REDIS_URL"`
	// PublicURL is the base URL clients reach this instance's signaling at,
	// e.g. "https://media-2.example.com" (MEDIA_PUBLIC_URL; required with
	// MEDIA_REDIS_URL: other instances send clients there).
	PublicURL string `env:"MEDIA_PUBLIC_URL"`
	// Region is this instance's region (MEDIA_REGION, else FLY_REGION,
	// else none). Placement prefers an instance in the client's region.
	Region string `env:"MEDIA_REGION"`
	// FlyRegion is the region Fly sets (FLY_REGION), used when Region is
	// empty.
	FlyRegion string `env:"FLY_REGION"`
	// App is this instance's Fly app (FLY_APP_NAME, set by Fly): other
	// instances replay joins to it with fly-replay. Empty elsewhere.
	App string `env:"FLY_APP_NAME"`
	// LeaseTTL is how long a registration and a room claim live without
	// renewal (MEDIA_FLEET_LEASE_TTL, default 10s, at least 1s). They are
	// renewed every third of it; an instance that stops renewing loses its
	// rooms to other instances after it.
	LeaseTTL time.Duration `env:"MEDIA_FLEET_LEASE_TTL" envDefault:"10s"`
}

// Validate checks c and names the variable of the first bad value. It
// never echoes the Redis URL, which may hold a password.
func (c Config) Validate() error {
	if c.RedisURL != "" {
		if err := checkRedisURL(c.RedisURL); err != nil {
			return fmt.Errorf("fleet: MEDIA_REDIS_URL: %w", err)
		}
		if c.PublicURL == "" {
			return errors.New("fleet: MEDIA_PUBLIC_URL is required with MEDIA_REDIS_URL: other instances send this instance's clients there")
		}
	}
	if c.PublicURL != "" {
		if err := checkPublicURL(c.PublicURL); err != nil {
			return fmt.Errorf("fleet: MEDIA_PUBLIC_URL %q: %w", c.PublicURL, err)
		}
	}
	if c.LeaseTTL < minLeaseTTL {
		return fmt.Errorf("fleet: MEDIA_FLEET_LEASE_TTL %v: must be at least %v", c.LeaseTTL, minLeaseTTL)
	}
	return nil
}

// checkPublicURL accepts an http or https URL with a host and no query or
// fragment: edge appends its signaling path to it.
func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("scheme must be http or https")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("must have no query, fragment or user")
	}
	return nil
}

// region is this instance's region: Region, else FlyRegion.
func (c Config) region() string {
	if c.Region != "" {
		return c.Region
	}
	return c.FlyRegion
}

// Instance is this instance's registry entry as c describes it, under id,
// before any load is known.
func (c Config) Instance(id string) Instance {
	return Instance{ID: id, Region: c.region(), URL: c.PublicURL, App: c.App}
}

// OpenStore validates c and opens its store: Redis with MEDIA_REDIS_URL,
// else a new in-process store. It does not wait for Redis: an instance
// started while Redis is down registers when Redis answers, and places no
// room until then. The caller closes the store after the Fleet.
func OpenStore(ctx context.Context, c Config) (Store, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.RedisURL == "" {
		return NewMemoryStore(), nil
	}
	return NewRedisStore(ctx, c.RedisURL)
}
