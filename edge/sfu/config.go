package sfu

import (
	"net"
	"time"

	"github.com/media-service/media-service/internal/envconfig"
)

// Config configures the media engine. cmd/media-service fills it from the
// environment with env/v11; field comments give the variable and default.
// Zero durations and sizes mean "the default", so tests can fill only the
// ports; New rejects negative or out-of-range values and names the variable.
type Config struct {
	// UDPPort is the one UDP port every session's ICE traffic shares (UDP
	// mux), because platforms forward single ports, not ranges
	// (MEDIA_ICE_UDP_PORT, default 7882; 0 picks a free port).
	UDPPort int `env:"MEDIA_ICE_UDP_PORT" envDefault:"7882"`
	// TCPPort is the ICE-TCP mux port, the fallback for networks that block
	// UDP (MEDIA_ICE_TCP_PORT, default 7881; 0 picks a free port; -1 turns
	// ICE-TCP off).
	TCPPort int `env:"MEDIA_ICE_TCP_PORT" envDefault:"7881"`
	// BindAddr is the host or IP the muxes bind (MEDIA_ICE_BIND_ADDR,
	// default all interfaces). On Fly it is "fly-global-services", the only
	// address whose UDP replies leave with the public source address.
	BindAddr string `env:"MEDIA_ICE_BIND_ADDR"`
	// TCPBindAddr is the host or IP the ICE-TCP mux binds
	// (MEDIA_ICE_TCP_BIND_ADDR, default BindAddr). It is separate because
	// on Fly TCP listeners cannot bind fly-global-services: there the UDP
	// mux binds it and the TCP mux all interfaces ("0.0.0.0").
	TCPBindAddr string `env:"MEDIA_ICE_TCP_BIND_ADDR"`
	// PublicIPs are advertised in host candidates instead of the local
	// addresses, for NAT and containers (MEDIA_PUBLIC_IP, comma separated;
	// default none: the local addresses are advertised).
	PublicIPs []string `env:"MEDIA_PUBLIC_IP" envSeparator:","`
	// IncludeLoopback advertises loopback host candidates
	// (MEDIA_ICE_LOOPBACK, default false). It is on by itself when BindAddr
	// is a loopback address, since nothing else could reach the muxes then.
	IncludeLoopback bool `env:"MEDIA_ICE_LOOPBACK"`
	// ICEDisconnectedTimeout is how long without a reply before a connection
	// counts as disconnected (MEDIA_ICE_DISCONNECTED_TIMEOUT, default 5s).
	ICEDisconnectedTimeout time.Duration `env:"MEDIA_ICE_DISCONNECTED_TIMEOUT" envDefault:"5s"`
	// ICEFailedTimeout is how long disconnected before failed, when the
	// session is closed (MEDIA_ICE_FAILED_TIMEOUT, default 10s): long enough
	// for a phone switching networks, short enough that dead sessions free
	// their slot quickly.
	ICEFailedTimeout time.Duration `env:"MEDIA_ICE_FAILED_TIMEOUT" envDefault:"10s"`
	// ICEKeepalive is the interval of ICE consent checks on an idle
	// connection (MEDIA_ICE_KEEPALIVE, default 2s).
	ICEKeepalive time.Duration `env:"MEDIA_ICE_KEEPALIVE" envDefault:"2s"`
	// PLIInterval is the shortest time between two keyframe requests sent to
	// one publisher (MEDIA_PLI_INTERVAL, default 500ms): each keyframe costs
	// the publisher several times a normal frame's bits, and one keyframe
	// serves every subscriber that asked within the interval.
	PLIInterval time.Duration `env:"MEDIA_PLI_INTERVAL" envDefault:"500ms"`
	// RetransmitPackets bounds how many recent packets each video
	// publication keeps to answer subscribers' NACKs (MEDIA_NACK_BUFFER,
	// default 512, a power of two from 64 to 4096). The history keeps about
	// the last second, packed by size, and never more packets than this:
	// 512 packets hold over a second of 400 packets/s video, more than one
	// round trip on any usable path.
	RetransmitPackets int `env:"MEDIA_NACK_BUFFER" envDefault:"512"`
	// RetransmitRate bounds the packets resent to one subscriber per
	// second, with a burst of as many (MEDIA_NACK_RATE, default 250). A
	// NACK of a few bytes can ask for hundreds of packets, so without a
	// bound a subscriber could make the instance send far more than the
	// stream itself; 250/s repairs 20% loss on a 1000 packets/s stream.
	RetransmitRate int `env:"MEDIA_NACK_RATE" envDefault:"250"`
}

// Defaults applied by New to zero fields.
const (
	defaultDisconnected = 5 * time.Second
	defaultFailed       = 10 * time.Second
	defaultKeepalive    = 2 * time.Second
	defaultPLIInterval  = 500 * time.Millisecond
	defaultRetransmit   = 512
	defaultRetransmitHz = 250
)

// withDefaults returns c with every zero duration and size set to its
// default.
func (c Config) withDefaults() Config {
	setDefault(&c.ICEDisconnectedTimeout, defaultDisconnected)
	setDefault(&c.ICEFailedTimeout, defaultFailed)
	setDefault(&c.ICEKeepalive, defaultKeepalive)
	setDefault(&c.PLIInterval, defaultPLIInterval)
	setDefault(&c.RetransmitPackets, defaultRetransmit)
	setDefault(&c.RetransmitRate, defaultRetransmitHz)
	return c
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Validate checks every value of c, zero values standing for their
// defaults; an error names the variable of the first bad one. New calls
// it; cmd/media-service calls it first, so a bad value stops the start
// before anything is bound.
func (c Config) Validate() error {
	c = c.withDefaults()
	v := envconfig.Check("sfu", &c)
	envconfig.Port(v, &c.UDPPort, false)
	envconfig.Port(v, &c.TCPPort, true)
	for _, ip := range c.PublicIPs {
		if net.ParseIP(ip) == nil {
			v.Failf(&c.PublicIPs, "must list IP addresses, got %q", ip)
		}
	}
	for _, d := range []*time.Duration{&c.ICEDisconnectedTimeout, &c.ICEFailedTimeout, &c.ICEKeepalive, &c.PLIInterval} {
		envconfig.Positive(v, d)
	}
	if n := c.RetransmitPackets; n < 64 || n > 4096 || n&(n-1) != 0 {
		v.Failf(&c.RetransmitPackets, "must be a power of two from 64 to 4096, got %d", n)
	}
	if c.RetransmitRate < 1 || c.RetransmitRate > 100000 {
		v.Failf(&c.RetransmitRate, "must be from 1 to 100000 packets per second, got %d", c.RetransmitRate)
	}
	return v.Err()
}
