package edge

import (
	"time"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/internal/connlimit"
	"github.com/media-service/media-service/internal/envconfig"
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
	// MaxSessions bounds the sessions of this instance (MEDIA_MAX_SESSIONS);
	// joins beyond it get 503. Unset or 0, DeriveDefaults makes it the
	// fan-out capacity measured for the instance's GOMAXPROCS less a
	// margin (see capacity.go): 64 at one, 84 at two.
	MaxSessions int `env:"MEDIA_MAX_SESSIONS"`
	// APIKey is the access tokens' issuer (MEDIA_API_KEY). With no
	// APISecret the instance runs in dev mode with a fixed, public key pair.
	APIKey string `env:"MEDIA_API_KEY"`
	// APISecret signs and checks access tokens, HS256 (MEDIA_API_SECRET).
	// Empty means dev mode: insecure, for local use only.
	APISecret string `env:"MEDIA_API_SECRET"`

	// MaxSessionsPerIP bounds the sessions one client address holds at
	// once, an IPv6 client counting by its /64 (MEDIA_MAX_SESSIONS_PER_IP,
	// default 64, as many as TURN allows one address TCP connections: an
	// office behind one NAT; 0 turns it off). A join beyond it gets 429
	// too_many_sessions, so one host cannot take the instance's
	// MaxSessions.
	MaxSessionsPerIP int `env:"MEDIA_MAX_SESSIONS_PER_IP" envDefault:"64"`
	// ClientIPHeader names the request header that carries the client's
	// address when a proxy stands in front (MEDIA_CLIENT_IP_HEADER, default
	// none: the TCP peer address; on Fly "Fly-Client-IP"). Set it only
	// behind a proxy that overwrites the header: a client can send any
	// value itself.
	ClientIPHeader string `env:"MEDIA_CLIENT_IP_HEADER"`

	// MaxConnsPerIP bounds the TCP connections one client address holds
	// open on PORT at once, an IPv6 client counting by its /64
	// (MEDIA_MAX_CONNS_PER_IP, default 128; 0 turns it off). It counts
	// from the accept, before a request is read, so clients that connect
	// and send nothing are bounded too; a connection beyond it is reset at
	// once and counted in media_http_conn_refusals. The default leaves a
	// host at MEDIA_MAX_SESSIONS_PER_IP (64 sessions, one connection each)
	// as many again for page loads, health checks and reconnects; when
	// both are on it must exceed that bound. With MEDIA_CLIENT_IP_HEADER
	// set every TCP peer is the proxy, so this bound is not applied (it
	// would cap the whole instance): the proxy's own limits and
	// MEDIA_MAX_CONNS stand in.
	MaxConnsPerIP int `env:"MEDIA_MAX_CONNS_PER_IP" envDefault:"128"`
	// MaxConns bounds the TCP connections open on PORT in total
	// (MEDIA_MAX_CONNS, default 4096; 0 turns it off): each costs a file
	// descriptor, a goroutine and buffers, so this is the last line
	// against a flood from many addresses. At the bound every new
	// connection is reset, health checks included, until some close: the
	// per-address bound keeps one host from getting there. When on it
	// must exceed MEDIA_MAX_SESSIONS (every session holds a connection).
	// Keep the process's file limit above it plus TURN's connections.
	MaxConns int `env:"MEDIA_MAX_CONNS" envDefault:"4096"`
	// HTTPHeaderTimeout bounds reading one request on PORT and on the ops
	// port (MEDIA_HTTP_HEADER_TIMEOUT, default 10s): from the accept, or
	// on a kept-alive connection from the next request's first byte, to
	// the end of its headers. On PORT it bounds any request body too (no
	// route reads one, and a declared body that never arrives would
	// otherwise hold the connection forever). A connection that sends
	// nothing is closed when it passes.
	HTTPHeaderTimeout time.Duration `env:"MEDIA_HTTP_HEADER_TIMEOUT" envDefault:"10s"`
	// HTTPIdleTimeout closes a kept-alive connection on PORT or the ops
	// port that sends no next request for that long
	// (MEDIA_HTTP_IDLE_TIMEOUT, default 75s). It does not apply to
	// WebSockets (MEDIA_WS_IDLE_TIMEOUT does). The default is above the
	// 60s for which common proxies keep an idle pooled connection, so the
	// proxy, not this server, closes it first: a server closing first
	// races the proxy's reuse of the connection, which fails as a 502.
	HTTPIdleTimeout time.Duration `env:"MEDIA_HTTP_IDLE_TIMEOUT" envDefault:"75s"`

	// MaxRooms bounds the rooms of this instance (MEDIA_MAX_ROOMS, default
	// 100); a join that would open one more gets 503 full.
	MaxRooms int `env:"MEDIA_MAX_ROOMS" envDefault:"100"`
	// MaxRoomParticipants bounds the participants of one room
	// (MEDIA_MAX_ROOM_PARTICIPANTS, default 50): every participant
	// receives every other's tracks, so a room's cost grows with the
	// square of its size. A join beyond it gets 403 room_full.
	MaxRoomParticipants int `env:"MEDIA_MAX_ROOM_PARTICIPANTS" envDefault:"50"`
	// MaxTracks bounds the tracks one participant publishes
	// (MEDIA_MAX_TRACKS_PER_PARTICIPANT, default 4: camera, microphone,
	// screen and its audio). An offer beyond it gets error track_limit.
	MaxTracks int `env:"MEDIA_MAX_TRACKS_PER_PARTICIPANT" envDefault:"4"`
	// MaxCandidates bounds the ICE candidates one session may send, both
	// connections together (MEDIA_MAX_ICE_CANDIDATES, default 50): a
	// browser sends a handful; more only loads the ICE agent.
	MaxCandidates int `env:"MEDIA_MAX_ICE_CANDIDATES" envDefault:"50"`
	// SendQueue is the per-client queue of signaling messages
	// (MEDIA_WS_SEND_QUEUE, default 256).
	SendQueue int `env:"MEDIA_WS_SEND_QUEUE" envDefault:"256"`
	// SendTimeout is how long a message may wait for room in a full send
	// queue before the client is disconnected as slow
	// (MEDIA_WS_SEND_TIMEOUT, default 1s).
	SendTimeout time.Duration `env:"MEDIA_WS_SEND_TIMEOUT" envDefault:"1s"`
	// WriteTimeout bounds one WebSocket write (MEDIA_WS_WRITE_TIMEOUT,
	// default 10s).
	WriteTimeout time.Duration `env:"MEDIA_WS_WRITE_TIMEOUT" envDefault:"10s"`
	// PingInterval is how often the server pings each client
	// (MEDIA_WS_PING_INTERVAL, default 10s).
	PingInterval time.Duration `env:"MEDIA_WS_PING_INTERVAL" envDefault:"10s"`
	// IdleTimeout closes a client silent for that long, pongs included
	// (MEDIA_WS_IDLE_TIMEOUT, default 30s). It must exceed PingInterval.
	IdleTimeout time.Duration `env:"MEDIA_WS_IDLE_TIMEOUT" envDefault:"30s"`
	// ReadLimit is the largest message a client may send, in bytes
	// (MEDIA_WS_READ_LIMIT, default 65536); a larger one closes with 1009.
	ReadLimit int64 `env:"MEDIA_WS_READ_LIMIT" envDefault:"65536"`
	// MessageRate and MessageBurst pace what the server reads from one
	// client (MEDIA_WS_MESSAGE_RATE, default 50 per second;
	// MEDIA_WS_MESSAGE_BURST, default 100). Beyond them the server reads
	// more slowly and TCP pushes back on the client: nothing is dropped,
	// but a flood of messages cannot take more than its share of a core.
	// A browser sends a few dozen messages when it joins, then a handful.
	MessageRate  float64 `env:"MEDIA_WS_MESSAGE_RATE" envDefault:"50"`
	MessageBurst int     `env:"MEDIA_WS_MESSAGE_BURST" envDefault:"100"`
	// OfferBurst and OfferInterval rate-limit a client's publisher offers
	// (MEDIA_OFFER_BURST, default 10; MEDIA_OFFER_INTERVAL, default 1s:
	// one more offer allowed per interval): renegotiation costs the
	// server a full SDP round, so a storm of them is refused with
	// error rate_limited.
	OfferBurst    int           `env:"MEDIA_OFFER_BURST" envDefault:"10"`
	OfferInterval time.Duration `env:"MEDIA_OFFER_INTERVAL" envDefault:"1s"`
	// NegotiationTimeout is how long the server waits for the answer to a
	// subscriber offer before it closes the session with reason timeout
	// (MEDIA_NEGOTIATION_TIMEOUT, default 15s): without the answer no
	// later change can reach the client.
	NegotiationTimeout time.Duration `env:"MEDIA_NEGOTIATION_TIMEOUT" envDefault:"15s"`
	// DataMaxMessage bounds one data channel message, frame header
	// included (MEDIA_DATA_MAX_MESSAGE, default 15360 bytes, 15 KiB: what
	// every browser sends unfragmented and LiveKit's guidance). A larger
	// one is dropped and its sender gets error data_too_large; the session
	// goes on. The publisher connection advertises max-message-size 65536,
	// so clients refuse anything above that themselves.
	DataMaxMessage int `env:"MEDIA_DATA_MAX_MESSAGE" envDefault:"15360"`
	// DataMessageRate and DataMessageBurst bound the data messages one
	// participant sends, both channels together (MEDIA_DATA_MESSAGE_RATE,
	// default 100 per second; MEDIA_DATA_MESSAGE_BURST, default 200).
	// Beyond them messages are dropped, counted, and the sender gets
	// error data_rate_limited at most once a second: each message costs
	// one send per recipient, so the rate bounds a room's fan-out.
	DataMessageRate  float64 `env:"MEDIA_DATA_MESSAGE_RATE" envDefault:"100"`
	DataMessageBurst int     `env:"MEDIA_DATA_MESSAGE_BURST" envDefault:"200"`
	// DataMaxBuffered bounds what waits in one receiver's data channels
	// (MEDIA_DATA_MAX_BUFFERED, default 262144 bytes): a reliable message
	// that would take a receiver's backlog beyond it is dropped for that
	// receiver, which gets error data_dropped at most once a second; lossy
	// messages are dropped already beyond an eighth of it. Nobody else
	// waits for a slow receiver. It is memory the instance holds per
	// receiver that falls behind: 17 messages of the largest size.
	DataMaxBuffered int `env:"MEDIA_DATA_MAX_BUFFERED" envDefault:"262144"`
	// RetryAfter is the Retry-After of 503 refusals (MEDIA_RETRY_AFTER,
	// default 2s, whole seconds).
	RetryAfter time.Duration `env:"MEDIA_RETRY_AFTER" envDefault:"2s"`
	// ResumeGrace is how long a session outlives its lost WebSocket, and
	// a failed PeerConnection waits for an ICE restart, with its media
	// flowing where the network allows (MEDIA_RESUME_GRACE, default 15s;
	// 0 turns resume off, at most 5m): a phone going through a tunnel
	// comes back as the same participant. A session in its grace counts
	// against MaxSessions and drains like any other.
	ResumeGrace time.Duration `env:"MEDIA_RESUME_GRACE" envDefault:"15s"`
}

// DevMode reports whether no API secret is configured, so the instance
// uses the fixed dev key pair and serves /v1/dev/token.
func (c Config) DevMode() bool { return c.APISecret == "" }

// httpConnLimits are the connection bounds of PORT. Behind a proxy
// (ClientIPHeader set) every TCP peer is the proxy, so the per-address
// bound would cap the whole instance at MaxConnsPerIP: it is left off,
// and only the total applies.
func httpConnLimits(cfg Config, m *metrics) connlimit.Limits {
	perIP := cfg.MaxConnsPerIP
	if cfg.ClientIPHeader != "" {
		perIP = 0
	}
	return connlimit.Limits{PerAddr: perIP, Total: cfg.MaxConns,
		Counted: func(d int64) { m.conns.Add(bg, d) }, Refused: m.connRefused}
}

// Validate checks every value of c; an error names the variable of the
// first bad one. New calls it; cmd/media-service calls it first, so a bad
// value stops the start before anything is bound.
func (c Config) Validate() error {
	v := envconfig.Check("edge", &c)
	envconfig.Port(v, &c.Port, false)
	envconfig.Port(v, &c.OpsPort, false)
	envconfig.Positive(v, &c.DrainTimeout)
	envconfig.AtLeast(v, &c.SessionShards, 1)
	envconfig.AtLeast(v, &c.MaxSessions, 1)
	envconfig.OffOrMore(v, &c.MaxSessionsPerIP)
	c.checkConns(v)
	c.checkLimits(v)
	c.checkSignaling(v)
	c.checkKeys(v)
	return v.Err()
}

// Keys is the key pair access tokens are signed and checked with: the
// configured one, or in dev mode the public dev pair. It checks the pair
// by the rule Validate applies, so `media-service token` mints only what
// an instance with the same environment accepts.
func (c Config) Keys() (auth.KeyPair, error) {
	v := envconfig.Check("edge", &c)
	c.checkKeys(v)
	if err := v.Err(); err != nil {
		return auth.KeyPair{}, err
	}
	return c.keys(), nil
}

// checkKeys checks the API key pair: no secret (dev mode), or a secret of
// at least auth.MinSecretLen bytes with its key.
func (c *Config) checkKeys(v *envconfig.Checker) {
	if c.APISecret != "" && len(c.APISecret) < auth.MinSecretLen {
		v.Failf(&c.APISecret, "must be at least %d bytes, got %d", auth.MinSecretLen, len(c.APISecret))
	}
	if c.APISecret != "" && c.APIKey == "" {
		v.Failf(&c.APIKey, "is required when %s is set", v.Var(&c.APISecret))
	}
}

// checkConns checks the connection bounds and HTTP timeouts of PORT.
// A connection bound at or below the matching session bound would refuse
// sessions the session bound admits, and leave no connection for a
// health check.
func (c *Config) checkConns(v *envconfig.Checker) {
	envconfig.OffOrMore(v, &c.MaxConnsPerIP)
	envconfig.OffOrMore(v, &c.MaxConns)
	if c.MaxConns > 0 && c.MaxConns <= c.MaxSessions {
		v.Failf(&c.MaxConns, "(%d) must exceed %s (%d), or be 0 (off)", c.MaxConns, v.Var(&c.MaxSessions), c.MaxSessions)
	}
	if c.ClientIPHeader == "" && c.MaxConnsPerIP > 0 && c.MaxConnsPerIP <= c.MaxSessionsPerIP {
		v.Failf(&c.MaxConnsPerIP, "(%d) must exceed %s (%d), or be 0 (off)", c.MaxConnsPerIP, v.Var(&c.MaxSessionsPerIP), c.MaxSessionsPerIP)
	}
	envconfig.Positive(v, &c.HTTPHeaderTimeout)
	envconfig.Positive(v, &c.HTTPIdleTimeout)
}

// checkLimits checks the per-room, per-instance and per-participant
// bounds.
func (c *Config) checkLimits(v *envconfig.Checker) {
	for _, n := range []*int{&c.MaxRooms, &c.MaxRoomParticipants, &c.MaxTracks,
		&c.MaxCandidates, &c.SendQueue, &c.OfferBurst, &c.MessageBurst, &c.DataMessageBurst} {
		envconfig.AtLeast(v, n, 1)
	}
}

// checkSignaling checks the WebSocket timings and sizes.
func (c *Config) checkSignaling(v *envconfig.Checker) {
	for _, d := range []*time.Duration{&c.SendTimeout, &c.WriteTimeout, &c.PingInterval,
		&c.IdleTimeout, &c.OfferInterval, &c.NegotiationTimeout, &c.RetryAfter} {
		envconfig.Positive(v, d)
	}
	envconfig.Positive(v, &c.MessageRate)
	envconfig.Positive(v, &c.DataMessageRate)
	if c.DataMaxMessage < 16 || c.DataMaxMessage > sfu.MaxDataMessage {
		v.Failf(&c.DataMaxMessage, "must be 16 to %d bytes, got %d", sfu.MaxDataMessage, c.DataMaxMessage)
	}
	if c.DataMaxBuffered < c.DataMaxMessage {
		v.Failf(&c.DataMaxBuffered, "(%d) must be at least %s (%d)", c.DataMaxBuffered, v.Var(&c.DataMaxMessage), c.DataMaxMessage)
	}
	if c.RetryAfter < time.Second {
		v.Failf(&c.RetryAfter, "must be at least 1s (Retry-After is in whole seconds), got %s", c.RetryAfter)
	}
	if c.IdleTimeout <= c.PingInterval {
		v.Failf(&c.IdleTimeout, "(%s) must exceed %s (%s)", c.IdleTimeout, v.Var(&c.PingInterval), c.PingInterval)
	}
	if c.ResumeGrace < 0 || c.ResumeGrace > maxResumeGrace {
		v.Failf(&c.ResumeGrace, "must be 0 (off) to %s, got %s", maxResumeGrace, c.ResumeGrace)
	}
	if c.ReadLimit < 1024 {
		v.Failf(&c.ReadLimit, "must be at least 1024 bytes, got %d", c.ReadLimit)
	}
}
