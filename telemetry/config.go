package telemetry

import (
	"fmt"
	"time"
)

// Config configures the telemetry package. Field comments give defaults;
// cmd/media-service fills it from the environment with env/v11.
type Config struct {
	// LeakSampleInterval is how often the goroutine count is sampled.
	// Default 10s.
	LeakSampleInterval time.Duration `env:"MEDIA_LEAK_SAMPLE_INTERVAL" envDefault:"10s"`
	// LeakBaselineSample is the sample (1-based) taken as the baseline.
	// Default 30: five minutes into the process at the default interval.
	LeakBaselineSample int `env:"MEDIA_LEAK_BASELINE_SAMPLE" envDefault:"30"`
	// LeakFactor: a leak is suspected when the goroutines that active
	// sessions do not explain exceed LeakFactor times the baseline. Default 3.
	LeakFactor float64 `env:"MEDIA_LEAK_FACTOR" envDefault:"3"`
	// LeakSessionBudget is how many goroutines one active session may
	// account for. Default 40.
	LeakSessionBudget int `env:"MEDIA_LEAK_SESSION_BUDGET" envDefault:"40"`
}

func (c Config) validate() error {
	switch {
	case c.LeakSampleInterval <= 0:
		return fmt.Errorf("telemetry: MEDIA_LEAK_SAMPLE_INTERVAL must be positive, got %s", c.LeakSampleInterval)
	case c.LeakBaselineSample < 1:
		return fmt.Errorf("telemetry: MEDIA_LEAK_BASELINE_SAMPLE must be at least 1, got %d", c.LeakBaselineSample)
	case c.LeakFactor <= 1:
		return fmt.Errorf("telemetry: MEDIA_LEAK_FACTOR must be above 1, got %g", c.LeakFactor)
	case c.LeakSessionBudget < 0:
		return fmt.Errorf("telemetry: MEDIA_LEAK_SESSION_BUDGET must not be negative, got %d", c.LeakSessionBudget)
	}
	return nil
}
