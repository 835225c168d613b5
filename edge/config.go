package edge

import (
	"fmt"
	"time"
)

// Config configures an edge instance. cmd/media-service fills it from the
// environment with env/v11; field comments give the variable and default.
// New validates it and names the variable of any bad value.
type Config struct {
	// Port is the HTTP port for signaling, health and the demo page (PORT,
	// default 8080; 0 picks a free port).
	Port int `env:"PORT" envDefault:"8080"`
	// HTTPHost is the address the HTTP listener binds (MEDIA_HTTP_HOST,
	// default all interfaces).
	HTTPHost string `env:"MEDIA_HTTP_HOST"`
	// OpsPort serves /metrics and /debug/pprof/ (MEDIA_OPS_PORT, default
	// 9091). It is private: never declare it as a public service.
	OpsPort int `env:"MEDIA_OPS_PORT" envDefault:"9091"`
	// OpsHost is the address the ops listener binds (MEDIA_OPS_HOST,
	// default all interfaces, so a platform's private network can scrape it).
	OpsHost string `env:"MEDIA_OPS_HOST"`
	// DrainTimeout bounds the wait for sessions to leave on SIGINT/SIGTERM
	// (MEDIA_DRAIN_TIMEOUT, default 30s). The platform's kill timeout must
	// be above it.
	DrainTimeout time.Duration `env:"MEDIA_DRAIN_TIMEOUT" envDefault:"30s"`
	// SessionShards is the number of shards of the session manager
	// (MEDIA_SESSION_SHARDS, default 32), each with its own lock.
	SessionShards int `env:"MEDIA_SESSION_SHARDS" envDefault:"32"`
	// MaxSessions bounds the sessions of this instance (MEDIA_MAX_SESSIONS,
	// default 500); joins beyond it get 503.
	MaxSessions int `env:"MEDIA_MAX_SESSIONS" envDefault:"500"`
	// APIKey is the access tokens' issuer (MEDIA_API_KEY). With no
	// APISecret the instance runs in dev mode with a fixed, public key pair.
	APIKey string `env:"MEDIA_API_KEY"`
	// APISecret signs and checks access tokens, HS256 (MEDIA_API_SECRET).
	// Empty means dev mode: insecure, for local use only.
	APISecret string `env:"MEDIA_API_SECRET"`
}

// DevMode reports whether no API secret is configured, so the instance
// uses the fixed dev key pair and serves /v1/dev/token.
func (c Config) DevMode() bool { return c.APISecret == "" }

func (c Config) validate() error {
	if err := checkPort("PORT", c.Port); err != nil {
		return err
	}
	if err := checkPort("MEDIA_OPS_PORT", c.OpsPort); err != nil {
		return err
	}
	if c.DrainTimeout <= 0 {
		return fmt.Errorf("edge: MEDIA_DRAIN_TIMEOUT must be positive, got %s", c.DrainTimeout)
	}
	if c.SessionShards < 1 {
		return fmt.Errorf("edge: MEDIA_SESSION_SHARDS must be at least 1, got %d", c.SessionShards)
	}
	if c.MaxSessions < 1 {
		return fmt.Errorf("edge: MEDIA_MAX_SESSIONS must be at least 1, got %d", c.MaxSessions)
	}
	if c.APISecret != "" && len(c.APISecret) < 32 {
		return fmt.Errorf("edge: MEDIA_API_SECRET must be at least 32 bytes, got %d", len(c.APISecret))
	}
	if c.APISecret != "" && c.APIKey == "" {
		return fmt.Errorf("edge: MEDIA_API_KEY is required when MEDIA_API_SECRET is set")
	}
	return nil
}

func checkPort(name string, p int) error {
	if p < 0 || p > 65535 {
		return fmt.Errorf("edge: %s must be a port from 0 to 65535, got %d", name, p)
	}
	return nil
}
