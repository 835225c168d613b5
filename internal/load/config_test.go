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
		{"capacity", func(c *Config) { c.SetScenario("capacity") }, ""},
		{"capacity of an unknown shape", func(c *Config) { c.SetScenario("capacity"); c.Shapes = []string{"meeting-7"} }, "-shapes"},
		{"capacity of no shape", func(c *Config) { c.SetScenario("capacity"); c.Shapes = nil }, "-shapes"},
		{"capacity below one room", func(c *Config) { c.SetScenario("capacity"); c.CapacityStart, c.CapacityMax = 1, 8 }, "meeting-10 needs -max"},
		{"capacity of one room", func(c *Config) {
			c.SetScenario("capacity")
			c.Shapes, c.CapacityStart, c.CapacityMax = []string{ShapeMeeting5}, 1, 5
		}, ""},
		{"capacity ceiling too high", func(c *Config) { c.SetScenario("capacity"); c.CapacityMax = 5000 }, "-max"},
		{"capacity start above the ceiling", func(c *Config) { c.SetScenario("capacity"); c.CapacityStart = 2000 }, "-start"},
		{"capacity without a latency bound", func(c *Config) { c.SetScenario("capacity"); c.CapacityP99 = 0 }, "-max-p99"},
		{"capacity of a fleet", func(c *Config) { c.SetScenario("capacity"); c.Spawn, c.SpawnFleet = "/bin/ms", 2 }, "-spawn-fleet"},
		{"gomaxprocs of a spawned instance", func(c *Config) { c.Spawn, c.GOMAXPROCS = "/bin/ms", 1 }, ""},
		{"gomaxprocs without spawn", func(c *Config) { c.GOMAXPROCS = 1 }, "-gomaxprocs"},
		{"negative gomaxprocs", func(c *Config) { c.Spawn, c.GOMAXPROCS = "/bin/ms", -1 }, "-gomaxprocs"},
		{"light fanout", func(c *Config) { c.Light = 2 }, ""},
		{"all light fanout", func(c *Config) { c.Light = 0 }, ""},
		{"light below off", func(c *Config) { c.Light = -2 }, "-light"},
		{"light churn", func(c *Config) { c.Scenario, c.Light = "churn", 1 }, "-light is for"},
		{"light relayed", func(c *Config) { c.Light, c.Relay = 1, true }, ""},
		{"capacity all light", func(c *Config) { c.SetScenario("capacity"); c.Light = 0 }, "latency"},
		{"pinned spawned instance", func(c *Config) { c.Spawn, c.CPUs = "/bin/ms", "1" }, ""},
		{"pinning without spawn", func(c *Config) { c.CPUs = "1" }, "-cpus"},
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
