package sfu

import (
	"reflect"
	"testing"
	"time"

	"github.com/caarlos0/env/v11"
)

// TestConfigFromEnvironment: the variables documented on Config parse into
// it, and an empty environment gives the documented defaults.
func TestConfigFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want Config
	}{
		{"defaults", map[string]string{}, Config{
			UDPPort: 7882, TCPPort: 7881, ICEDisconnectedTimeout: 5 * time.Second,
			ICEFailedTimeout: 10 * time.Second, ICEKeepalive: 2 * time.Second,
			PLIInterval: 500 * time.Millisecond, RetransmitPackets: 512, RetransmitRate: 250,
		}},
		{"everything set", map[string]string{
			"MEDIA_ICE_UDP_PORT": "50000", "MEDIA_ICE_TCP_PORT": "-1", "MEDIA_ICE_BIND_ADDR": "fly-global-services",
			"MEDIA_PUBLIC_IP": "203.0.113.7,2001:db8::7", "MEDIA_ICE_LOOPBACK": "true",
			"MEDIA_ICE_DISCONNECTED_TIMEOUT": "3s", "MEDIA_ICE_FAILED_TIMEOUT": "20s", "MEDIA_ICE_KEEPALIVE": "1s",
			"MEDIA_PLI_INTERVAL": "1s", "MEDIA_NACK_BUFFER": "1024", "MEDIA_NACK_RATE": "100",
		}, Config{
			UDPPort: 50000, TCPPort: -1, BindAddr: "fly-global-services",
			PublicIPs: []string{"203.0.113.7", "2001:db8::7"}, IncludeLoopback: true,
			ICEDisconnectedTimeout: 3 * time.Second, ICEFailedTimeout: 20 * time.Second, ICEKeepalive: time.Second,
			PLIInterval: time.Second, RetransmitPackets: 1024, RetransmitRate: 100,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := env.ParseAsWithOptions[Config](env.Options{Environment: tc.env})
			if err != nil {
				t.Fatalf("env.Parse() = %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("env.Parse() = %+v; want %+v", got, tc.want)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("Validate() = %v; want nil", err)
			}
		})
	}
}

// TestZeroConfigDefaults: a Config with only ports set (as tests and other
// packages build it) gets the same defaults as the environment gives.
func TestZeroConfigDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	want := Config{ICEDisconnectedTimeout: 5 * time.Second, ICEFailedTimeout: 10 * time.Second,
		ICEKeepalive: 2 * time.Second, PLIInterval: 500 * time.Millisecond, RetransmitPackets: 512,
		RetransmitRate: 250}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Config{}.withDefaults() = %+v; want %+v", got, want)
	}
}
