package turn

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/media-service/media-service/internal/envconfig"
)

// MaxCredentialTTL caps MEDIA_TURN_CREDENTIAL_TTL. A TURN credential cannot
// be revoked, so one that outlives a day is a standing password, not a
// short-lived credential.
const MaxCredentialTTL = 24 * time.Hour

// Config configures the embedded TURN relay. cmd/media-service fills it
// from the environment with env/v11; field comments give the variable and
// the default. New validates it and names the variable of any bad value.
type Config struct {
	// Enabled turns the relay on (MEDIA_TURN_ENABLED, default true).
	Enabled bool `env:"MEDIA_TURN_ENABLED" envDefault:"true"`

	// UDPPort is the TURN/UDP port (MEDIA_TURN_UDP_PORT, default 3478;
	// 0 picks a free port; -1 turns TURN/UDP off).
	UDPPort int `env:"MEDIA_TURN_UDP_PORT" envDefault:"3478"`
	// TCPPort is the TURN/TCP port (MEDIA_TURN_TCP_PORT, default 3478;
	// 0 picks a free port; -1 turns TURN/TCP off).
	TCPPort int `env:"MEDIA_TURN_TCP_PORT" envDefault:"3478"`
	// TLSPort is the TURN over TLS port, served only when TLSCert and
	// TLSKey are set (MEDIA_TURN_TLS_PORT, default 5349; 443 passes the
	// strictest firewalls; 0 picks a free port).
	TLSPort int `env:"MEDIA_TURN_TLS_PORT" envDefault:"5349"`
	// TLSCert and TLSKey are PEM files of the TURN-over-TLS certificate
	// chain and its key (MEDIA_TURN_TLS_CERT, MEDIA_TURN_TLS_KEY; default
	// none: no TLS listener). Both or neither.
	TLSCert string `env:"MEDIA_TURN_TLS_CERT"`
	TLSKey  string `env:"MEDIA_TURN_TLS_KEY"`
	// TLSPublicPort is the TLS port put in turns: URLs, when a platform
	// forwards another public port to TLSPort (MEDIA_TURN_TLS_PUBLIC_PORT,
	// default 0: the bound port).
	TLSPublicPort int `env:"MEDIA_TURN_TLS_PUBLIC_PORT"`

	// BindAddr is the address the UDP listener binds (MEDIA_TURN_BIND_ADDR,
	// default all interfaces). On Fly it is "fly-global-services", the only
	// address whose UDP replies leave with the public source address.
	BindAddr string `env:"MEDIA_TURN_BIND_ADDR"`
	// TCPBindAddr is the address the TCP and TLS listeners bind
	// (MEDIA_TURN_TCP_BIND_ADDR, default all interfaces). It is separate
	// from BindAddr because Fly's proxy cannot reach TCP listeners bound
	// to fly-global-services.
	TCPBindAddr string `env:"MEDIA_TURN_TCP_BIND_ADDR"`

	// PublicHost is the host name or IP put in the turn: URLs handed to
	// clients (MEDIA_TURN_PUBLIC_HOST; default the first MEDIA_PUBLIC_IP,
	// else the UDP bind address when it is one IP, else this host's first
	// global unicast address). With TLS it should be the certificate's name.
	PublicHost string `env:"MEDIA_TURN_PUBLIC_HOST"`
	// PublicIPs are this instance's public addresses, shared with the ICE
	// configuration (MEDIA_PUBLIC_IP, comma separated). The SFU advertises
	// them in its candidates, so they count as its own media addresses.
	PublicIPs []string `env:"MEDIA_PUBLIC_IP" envSeparator:","`

	// RelayIP is the IPv4 address given to clients as their relayed
	// address (MEDIA_TURN_RELAY_IP; default this host's first non-loopback
	// IPv4, else 127.0.0.1). The relay's only peer is this instance's SFU,
	// so it must be reachable from the SFU, not from the internet.
	RelayIP string `env:"MEDIA_TURN_RELAY_IP"`
	// RelayBindAddr is the IPv4 address relayed sockets bind
	// (MEDIA_TURN_RELAY_BIND_ADDR, default RelayIP; 0.0.0.0 binds all).
	RelayBindAddr string `env:"MEDIA_TURN_RELAY_BIND_ADDR"`
	// RelayPortMin and RelayPortMax bound the relayed sockets' ports
	// (MEDIA_TURN_RELAY_PORT_MIN, MEDIA_TURN_RELAY_PORT_MAX; default 0 and
	// 0: any ephemeral port). Both or neither.
	RelayPortMin int `env:"MEDIA_TURN_RELAY_PORT_MIN"`
	RelayPortMax int `env:"MEDIA_TURN_RELAY_PORT_MAX"`

	// Realm is the TURN realm (MEDIA_TURN_REALM, default "media-service").
	Realm string `env:"MEDIA_TURN_REALM" envDefault:"media-service"`
	// Secret is the TURN REST API shared secret the credentials are signed
	// with (MEDIA_TURN_SECRET, at least 32 bytes). Empty means a random
	// secret per process: credentials are then valid on this instance only,
	// which is all `joined` needs.
	Secret string `env:"MEDIA_TURN_SECRET"`
	// CredentialTTL is how long a minted credential may start new
	// allocations (MEDIA_TURN_CREDENTIAL_TTL, default 1h, at most 24h).
	// Allocations made before expiry keep refreshing under it for up to
	// MaxCredentialTTL past expiry, so a long call does not lose its relay;
	// an ICE restart after expiry needs a reconnect for fresh credentials,
	// hence an hour rather than minutes.
	CredentialTTL time.Duration `env:"MEDIA_TURN_CREDENTIAL_TTL" envDefault:"1h"`

	// AllowPeers are ranges the relay may send to beyond this instance's
	// own media addresses (MEDIA_TURN_ALLOW_PEERS, comma-separated CIDRs;
	// default none). A special-purpose range (loopback, private, ...) is
	// opened only by an entry inside it: 0.0.0.0/0 opens the public
	// internet, not 10.0.0.0/8.
	AllowPeers []string `env:"MEDIA_TURN_ALLOW_PEERS" envSeparator:","`

	// MaxAllocationsPerIdentity bounds one identity's live allocations
	// (MEDIA_TURN_MAX_ALLOCATIONS_PER_IDENTITY, default 10: two
	// PeerConnections times three transports, plus an ICE restart).
	MaxAllocationsPerIdentity int `env:"MEDIA_TURN_MAX_ALLOCATIONS_PER_IDENTITY" envDefault:"10"`
	// MaxAllocations bounds the instance's live allocations, each a socket
	// and a goroutine (MEDIA_TURN_MAX_ALLOCATIONS, default 4000). Browsers
	// allocate on every TURN URL while gathering, even when the call ends
	// up direct, so a session holds about 4 to 6: the default covers 500
	// sessions (more than MEDIA_MAX_SESSIONS's derived default up to 11
	// cores) with room for ICE restarts.
	MaxAllocations int `env:"MEDIA_TURN_MAX_ALLOCATIONS" envDefault:"4000"`

	// UnauthRate and UnauthBurst bound the TURN/UDP requests one source IP
	// may send without an allocation, per second and in a burst
	// (MEDIA_TURN_UNAUTH_RATE, default 20; MEDIA_TURN_UNAUTH_BURST, default
	// 100). A spoofed source can make the server answer a victim; the
	// bound caps that amplification. Failed authentications count too.
	UnauthRate  float64 `env:"MEDIA_TURN_UNAUTH_RATE" envDefault:"20"`
	UnauthBurst int     `env:"MEDIA_TURN_UNAUTH_BURST" envDefault:"100"`

	// MaxConns bounds the open TURN/TCP and TLS connections
	// (MEDIA_TURN_MAX_CONNS, default 4000), and MaxConnsPerIP those of one
	// source IP (MEDIA_TURN_MAX_CONNS_PER_IP, default 64: a whole office
	// behind one NAT).
	MaxConns      int `env:"MEDIA_TURN_MAX_CONNS" envDefault:"4000"`
	MaxConnsPerIP int `env:"MEDIA_TURN_MAX_CONNS_PER_IP" envDefault:"64"`
	// ConnIdleTimeout closes a TCP or TLS connection that sent nothing for
	// that long (MEDIA_TURN_CONN_IDLE_TIMEOUT, default 2m). A working
	// relay carries ICE consent checks every few seconds.
	ConnIdleTimeout time.Duration `env:"MEDIA_TURN_CONN_IDLE_TIMEOUT" envDefault:"2m"`
	// ConnAllocateTimeout closes a TCP or TLS connection that holds no
	// allocation that long after it was accepted
	// (MEDIA_TURN_CONN_ALLOCATE_TIMEOUT, default 30s): a client allocates
	// within a round trip or two, so a connection that only chats keeps a
	// slot for nothing.
	ConnAllocateTimeout time.Duration `env:"MEDIA_TURN_CONN_ALLOCATE_TIMEOUT" envDefault:"30s"`
}

// TLSEnabled reports whether a certificate is configured, so the TLS
// listener runs.
func (c Config) TLSEnabled() bool { return c.TLSCert != "" }

// SecretGenerated reports whether no secret is configured, so the process
// generates its own: enough when only this instance mints credentials (in
// `joined`), as it does; a backend minting them itself needs the secret.
func (c Config) SecretGenerated() bool { return c.Secret == "" }

// Validate checks every value of c; an error names the variable of the
// first bad one. The certificate files, when set, must load. New calls
// it; cmd/media-service calls it first, so a bad value stops the start
// before anything is bound.
func (c Config) Validate() error {
	v := envconfig.Check("turn", &c)
	c.checkPorts(v)
	c.checkAddrs(v)
	c.checkAuth(v)
	c.checkBounds(v)
	if v.Err() == nil && c.TLSEnabled() {
		_, err := c.certificate()
		return err
	}
	return v.Err()
}

// certificate loads the TURN-over-TLS certificate chain and its key.
func (c Config) certificate() (tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		v := envconfig.Check("turn", &c)
		v.Failf(&c.TLSCert, "and %s do not load: %w", v.Var(&c.TLSKey), err)
		return cert, v.Err()
	}
	return cert, nil
}

func (c *Config) checkPorts(v *envconfig.Checker) {
	envconfig.Port(v, &c.UDPPort, true)
	envconfig.Port(v, &c.TCPPort, true)
	for _, p := range []*int{&c.TLSPort, &c.TLSPublicPort, &c.RelayPortMin, &c.RelayPortMax} {
		envconfig.Port(v, p, false)
	}
	if c.UDPPort < 0 && c.TCPPort < 0 && !c.TLSEnabled() {
		v.Failf(&c.UDPPort, "and %s are both off and no TLS is configured: set %s=false instead",
			v.Var(&c.TCPPort), v.Var(&c.Enabled))
	}
	if (c.RelayPortMin == 0) != (c.RelayPortMax == 0) || c.RelayPortMin > c.RelayPortMax {
		v.Failf(&c.RelayPortMin, "and %s must both be 0 or form a range, got %d-%d",
			v.Var(&c.RelayPortMax), c.RelayPortMin, c.RelayPortMax)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		v.Failf(&c.TLSCert, "and %s must be set together", v.Var(&c.TLSKey))
	}
}

func (c *Config) checkAddrs(v *envconfig.Checker) {
	for _, ip := range c.PublicIPs {
		if _, err := netip.ParseAddr(strings.TrimSpace(ip)); err != nil {
			v.Failf(&c.PublicIPs, "must list IP addresses, got %q", ip)
		}
	}
	if c.RelayIP != "" {
		ip, err := netip.ParseAddr(c.RelayIP)
		if err != nil || !ip.Unmap().Is4() || ip.IsUnspecified() {
			v.Failf(&c.RelayIP, "must be one IPv4 address, got %q", c.RelayIP)
		}
	}
	if ip := net.ParseIP(c.RelayBindAddr); c.RelayBindAddr != "" && ip.To4() == nil {
		v.Failf(&c.RelayBindAddr, "must be an IPv4 address (relayed sockets are IPv4), got %q", c.RelayBindAddr)
	}
	if _, err := parsePrefixes(c.AllowPeers); err != nil {
		v.Failf(&c.AllowPeers, ": %w", err)
	}
}

func (c *Config) checkAuth(v *envconfig.Checker) {
	if c.Realm == "" {
		v.Failf(&c.Realm, "must not be empty")
	}
	if c.Secret != "" && len(c.Secret) < 32 {
		v.Failf(&c.Secret, "must be at least 32 bytes, got %d", len(c.Secret))
	}
	envconfig.Between(v, &c.CredentialTTL, time.Minute, MaxCredentialTTL)
}

func (c *Config) checkBounds(v *envconfig.Checker) {
	for _, n := range []*int{&c.MaxAllocationsPerIdentity, &c.MaxAllocations, &c.UnauthBurst, &c.MaxConns, &c.MaxConnsPerIP} {
		envconfig.AtLeast(v, n, 1)
	}
	envconfig.Positive(v, &c.UnauthRate)
	envconfig.AtLeast(v, &c.ConnIdleTimeout, time.Second)
	envconfig.AtLeast(v, &c.ConnAllocateTimeout, time.Second)
}
