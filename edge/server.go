package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/edge/web"
	"github.com/media-service/media-service/edge/webhook"
	"github.com/media-service/media-service/internal/connlimit"
	"github.com/media-service/media-service/internal/envconfig"
)

// Relay is what an instance needs from its embedded TURN relay: the
// credentials it hands to joining clients, and the drain hooks.
type Relay interface {
	// ICEServers returns the TURN servers and short-lived credentials for
	// a participant, as the `joined` message hands them out.
	ICEServers(identity string) []ICEServer
	// Drain refuses new allocations.
	Drain()
	// Close ends every allocation and the relay's listeners.
	Close() error
}

// ICEServer is one entry of the ICE server list handed to clients, in the
// browser's RTCIceServer shape.
type ICEServer = signal.ICEServer

// Options carries what the instance is handed rather than configured with.
type Options struct {
	// Log receives the instance's events. Required.
	Log *slog.Logger
	// Meter creates the instance's instruments. Default: a no-op meter.
	Meter metric.Meter
	// Metrics serves /metrics on the ops listener. Default: 404.
	Metrics http.Handler
	// Relay is the embedded TURN relay, if any.
	Relay Relay
	// Media is the forwarding core every session's PeerConnections come
	// from. Required. cmd creates it before New (so the relay can be told
	// the media addresses); from New on the Server owns it and closes it
	// after the sessions, at the end of the drain.
	Media *sfu.Engine
	// Webhooks receives the rooms' events (edge/webhook). The caller
	// closes it after Run has returned, so the events of the drain's
	// last sessions are delivered. Default: none.
	Webhooks *webhook.Notifier
	// Fleet is the fleet's directory (edge/fleet), when the instance is
	// one of several: joins are routed to their room's instance and the
	// drain moves rooms whole (route.go, fleetdrain.go). The caller runs
	// and closes it, after Run has returned. Default: none, the instance
	// serves every room itself.
	Fleet Directory
}

// Server is one edge instance. New binds every listener, Run serves until
// its context ends and then drains, Close ends everything at once.
type Server struct {
	cfg      Config
	log      *slog.Logger
	relay    Relay
	sessions *Sessions
	media    *sfu.Engine
	metrics  *metrics
	rooms    *rooms
	keys     auth.KeyPair
	upgrader websocket.Upgrader
	perAddr  *connlimit.Addrs    // sessions per client address
	conns    *connlimit.Listener // httpLn: open TCP connections of PORT
	routing  *routing            // the instance's part in a fleet; nil alone
	revoked  *revocations        // tokens of participants the server API removed

	admitted   atomic.Int64 // sessions admitted and not yet torn down: MaxSessions bounds it
	closingAll atomic.Bool  // the drain is closing every session
	deadline   atomic.Int64 // drain deadline, Unix nanoseconds; 0 before the drain

	echo    *echo.Echo
	httpLn  net.Listener
	httpSrv *http.Server
	opsLn   net.Listener
	opsSrv  *http.Server

	draining atomic.Bool
	closing  chan struct{} // closed by Close: skip the drain wait
	closeMu  sync.Once
	stopped  chan struct{} // closed when Run has returned
	running  atomic.Bool
}

// New validates cfg and binds the HTTP and ops listeners, so that a taken
// port fails here, before anything is served.
func New(cfg Config, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Log == nil {
		return nil, errors.New("edge: Options.Log is required")
	}
	if opts.Media == nil {
		return nil, errors.New("edge: Options.Media is required")
	}
	if opts.Meter == nil {
		opts.Meter = noop.NewMeterProvider().Meter("edge")
	}
	m, err := newMetrics(opts.Meter)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      opts.Log,
		relay:    opts.Relay,
		sessions: NewSessions(cfg.SessionShards),
		media:    opts.Media,
		metrics:  m,
		rooms:    newRooms(cfg.MaxRooms, cfg.MaxRoomParticipants, m),
		keys:     cfg.keys(),
		upgrader: newUpgrader(),
		perAddr:  connlimit.NewAddrs(cfg.MaxSessionsPerIP),
		revoked:  newRevocations(),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if s.routing, err = newRouting(opts.Fleet, opts.Meter); err != nil {
		return nil, err
	}
	if opts.Fleet != nil {
		s.rooms.claims = opts.Fleet
	}
	s.rooms.hooks = opts.Webhooks
	s.echo = s.newEcho()
	if s.httpLn, err = listen(envconfig.Name(&cfg, &cfg.Port), cfg.HTTPHost, cfg.Port); err != nil {
		return nil, err
	}
	s.conns = connlimit.NewListener(s.httpLn.(*net.TCPListener), httpConnLimits(cfg, m))
	s.httpLn = s.conns
	if s.opsLn, err = listen(envconfig.Name(&cfg, &cfg.OpsPort), cfg.OpsHost, cfg.OpsPort); err != nil {
		s.httpLn.Close()
		return nil, err
	}
	// ReadTimeout bounds a request's body too on PORT (see
	// Config.HTTPHeaderTimeout); not on ops, where it would cut a 30 s
	// CPU profile short.
	s.httpSrv = &http.Server{Handler: s.echo, ReadHeaderTimeout: cfg.HTTPHeaderTimeout,
		ReadTimeout: cfg.HTTPHeaderTimeout, IdleTimeout: cfg.HTTPIdleTimeout}
	s.opsSrv = &http.Server{Handler: opsHandler(opts.Metrics), ReadHeaderTimeout: cfg.HTTPHeaderTimeout,
		IdleTimeout: cfg.HTTPIdleTimeout}
	return s, nil
}

func listen(name, host string, port int) (net.Listener, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("edge: listen %s (%s): %w", addr, name, err)
	}
	return ln, nil
}

func (s *Server) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(middleware.Recover())
	e.HTTPErrorHandler = s.httpError
	e.GET("/health", s.handleHealth)
	e.GET("/ready", s.handleReady)
	e.GET("/v1/rtc", s.handleRTC)
	s.routeAPI(e)
	if s.cfg.DevMode() {
		e.GET("/v1/dev/token", s.handleDevToken)
	}
	e.GET("/*", echo.WrapHandler(web.Handler())) // demo page and browser client; API routes win over "/*"
	return e
}

// HTTPAddr is the bound address of the signaling listener.
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// OpsAddr is the bound address of the ops listener.
func (s *Server) OpsAddr() net.Addr { return s.opsLn.Addr() }

// Sessions is the instance's session manager.
func (s *Server) Sessions() *Sessions { return s.sessions }

// Draining reports whether the instance has begun to drain.
func (s *Server) Draining() bool { return s.draining.Load() }

// Run serves until ctx is done, then drains (see drain.go) and returns once
// every goroutine it started has ended. The cause of ctx, if it is a
// *ShutdownCause, names the reason and signal in the logs.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("edge: Run called twice")
	}
	defer close(s.stopped)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	serve := func(srv *http.Server, ln net.Listener, what string) {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("edge: serve %s on %s: %w", what, ln.Addr(), err)
		}
	}
	wg.Add(2)
	go serve(s.httpSrv, s.httpLn, "http")
	go serve(s.opsSrv, s.opsLn, "ops")
	loadCtx, stopLoad := context.WithCancel(context.Background())
	wg.Add(1)
	go func() { defer wg.Done(); s.rooms.speakersLoop(loadCtx) }()
	if s.routing != nil {
		wg.Add(2)
		go func() { defer wg.Done(); s.publishLoad(loadCtx) }()
		go func() { defer wg.Done(); s.followLost(loadCtx) }()
	}
	s.log.Info("server_started", "http_addr", s.httpLn.Addr().String(), "ops_addr", s.opsLn.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
	case <-s.closing:
	case runErr = <-errc:
	}
	s.drain(context.Cause(ctx))
	stopLoad()
	s.opsSrv.Close()
	wg.Wait()
	return runErr
}

// Close ends the instance at once: it skips what is left of the drain wait
// (a second signal), closes every session and waits for Run to return. It
// is idempotent. Without Run it only releases the listeners.
func (s *Server) Close() error {
	s.closeMu.Do(func() { close(s.closing) })
	if s.running.Load() {
		<-s.stopped
		return nil
	}
	s.httpLn.Close()
	s.opsLn.Close()
	if err := s.media.Close(); err != nil {
		s.log.Warn("media_close_failed", "err", err)
	}
	return nil
}
