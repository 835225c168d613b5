package load

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.RelayExe = "/bin/mediaload"
		return c
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" for none
	}{
		{"defaults with a relay", func(*Config) {}, ""},
		{"floor without a relay", func(c *Config) { c.RelayExe = "" }, "RelayExe"},
		{"no floor, no relay needed", func(c *Config) { c.RelayExe, c.Floor = "", false }, ""},
		{"churn needs no relay", func(c *Config) { c.RelayExe, c.Scenario = "", "churn" }, ""},
		{"floor scenario needs its relay", func(c *Config) { c.RelayExe, c.Floor, c.Scenario = "", false, "floor" }, "RelayExe"},
		{"unknown scenario", func(c *Config) { c.Scenario = "stampede" }, "unknown scenario"},
		{"no instance", func(c *Config) { c.URLs = nil }, "-urls"},
		{"one bad instance", func(c *Config) { c.URLs = []string{"http://a:1", "b:2"} }, "-urls"},
		{"bad ops URL", func(c *Config) { c.OpsURLs = []string{"ftp://a"} }, "-ops-url"},
		{"spawn needs no URL", func(c *Config) { c.URLs, c.Spawn = nil, "/bin/media-service" }, ""},
		{"unknown placement", func(c *Config) { c.Placement = "nearest" }, "-placement"},
		{"negative loss", func(c *Config) { c.MaxLoss = -1 }, "-max-loss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("Validate() = %v; want %q", err, tt.want)
			}
		})
	}
}
