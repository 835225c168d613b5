// Package client is a Go participant of media-service: it speaks the
// signaling protocol of edge/PROTOCOL.md over a WebSocket and moves media
// over Pion PeerConnections, a publisher connection it offers and a
// subscriber connection the server offers. The edge's own tests, the load
// generator and the adversarial and TURN tests use it, so it exposes the
// protocol rather than hiding it: every server message reaches Events, and
// Send lets a caller write any message, well formed or not.
//
// When its network changes it keeps the participant on its own, as a
// browser client does: a lost WebSocket is resumed within the server's
// grace (reconnect.go), and a connection that goes disconnected or failed
// restarts ICE (icerestart.go); Options.NoResume turns both off.
//
// A Client is safe for concurrent use.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// Defaults of Options.
const (
	defaultEventBuffer = 256
	defaultTrackBuffer = 64
	handshakeTimeout   = 10 * time.Second
	writeTimeout       = 10 * time.Second
	// readLimit mirrors the server's: a server message above it is a bug.
	readLimit = 1 << 20
)

// MaxRedirects is how many `redirect` messages one Dial follows. A room
// has one owner, so one hop is the rule; a second or third covers an
// owner that moved while the client was on its way. A fourth means the
// instances disagree: Dial fails with ErrRedirectLoop rather than spin.
const MaxRedirects = 3

// ErrRedirectLoop is Dial's error when the server redirects it more than
// MaxRedirects times.
var ErrRedirectLoop = errors.New("client: redirect loop")

// Options tunes a Client. The zero value works.
type Options struct {
	// API builds both PeerConnections. Default: NewAPI(nil), which
	// includes loopback candidates; tests pass NewAPI(LoopbackOnly).
	API *webrtc.API
	// ICEServers, when non-nil, replaces the ICE servers (TURN) the server
	// hands out in `joined`.
	ICEServers []webrtc.ICEServer
	// ICETransportPolicy "relay" forces every connection through TURN.
	ICETransportPolicy webrtc.ICETransportPolicy
	// RTPHeaderEncryption is whether both connections negotiate RTP
	// header extension encryption (RFC 9335 Cryptex). Default: Pion's
	// (negotiate); the load generator's light receivers read the
	// extensions in the clear, so their runs disable it.
	RTPHeaderEncryption webrtc.RTPHeaderEncryptionPolicy
	// Dialer opens the WebSocket. Default: a dialer with a 10 s handshake
	// timeout.
	Dialer *websocket.Dialer
	// Header is sent with the WebSocket handshake.
	Header http.Header
	// OnEvent, when set, receives every server message other than the
	// offers, answers and candidates the Client handles itself; it is
	// called on the reading goroutine, so it must not block. When nil,
	// the messages go to Events instead.
	OnEvent func(*signal.Message)
	// EventBuffer is the capacity of Events (default 256). When it is
	// full, further events are dropped and counted in DroppedEvents: a
	// participant that does not read its events must not stall the
	// signaling.
	EventBuffer int
	// OnTrack, when set, receives every track forwarded to this
	// participant, on a goroutine of Pion's. When nil, they go to Tracks.
	OnTrack func(*RemoteTrack)
	// Log receives the client's diagnostics. Default: discarded.
	Log *slog.Logger
	// IgnoreLayers makes the client's simulcast tracks send every layer
	// whatever the server's `layers` messages say: a publisher without
	// dynacast, to measure what dynacast saves.
	IgnoreLayers bool
	// NoResume turns off what the client does on its own when its network
	// changes: resuming the session after a lost WebSocket, and ICE
	// restarts when a connection goes disconnected or failed.
	NoResume bool
}

// Joined is what the server said in `joined`.
type Joined struct {
	Room         string
	Participant  signal.Participant   // this participant
	Participants []signal.Participant // the others, when it joined
	ICEServers   []signal.ICEServer
}

// RemoteTrack is a track forwarded from another participant.
type RemoteTrack struct {
	// ParticipantID is the publisher's participant id (the msid stream id).
	ParticipantID string
	Track         *webrtc.TrackRemote
	Receiver      *webrtc.RTPReceiver
}

// Client is one participant's connection to a room.
type Client struct {
	opts      Options
	log       *slog.Logger
	conn      *websocket.Conn
	joined    Joined
	url       string // the signaling URL it joined at, after redirects
	redirects int    // redirects followed to get there

	writeMu sync.Mutex // serializes WebSocket writes (gorilla allows one writer)

	pub, sub         *webrtc.PeerConnection
	peers            peerGuard // orders negotiation steps against closePeers
	pubICE, subICE   *signal.Trickle
	remoteCandidates sync.Mutex // guards pending
	pending          map[string][]webrtc.ICECandidateInit
	negotiateMu      sync.Mutex                   // one publisher negotiation at a time
	offerSeq         uint64                       // guarded by negotiateMu: the last publisher offer's offer_id
	sourceOf         map[webrtc.TrackLocal]string // guarded by negotiateMu: PublishAs's sources
	answers          chan *signal.Message         // publisher answers and request errors
	events           chan *signal.Message
	tracks           chan *RemoteTrack
	dropped          atomic.Int64
	closeOnce        sync.Once
	done             chan struct{} // closed when the WebSocket has ended
	endMu            sync.Mutex    // guards leaveReason, closeErr
	leaveReason      string
	closeErr         error
	wg               sync.WaitGroup
	data             clientData
	speakers         speakerList
	mutes            ownMutes
	life             context.Context    // cancelled by Close: no more resumes or ICE restarts
	kill             context.CancelFunc // cancels life
	token            string             // the access token, for resumes
	resumeMu         sync.Mutex         // guards resume
	resume           resumeGrant        // from joined, then from each resumed
	restarting       [2]atomic.Bool     // an ICE restart loop runs, publisher and subscriber
	iceFailed        [2]chan struct{}   // a connection failed: its restart loop stops waiting
	subRestarted     chan struct{}      // a subscriber offer restarting ICE was answered
	resumes          atomic.Int64
	simulcastTracks
}

// DialError is a refusal of the WebSocket upgrade: the HTTP status and the
// JSON body the server sent with it.
type DialError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // from Retry-After; 0 when absent
	// URL, on a resume refused by a draining instance of a fleet, is
	// where the room went: join there (Move) as a new participant.
	URL string
}

func (e *DialError) Error() string {
	return fmt.Sprintf("client: dial refused: %d %s: %s", e.Status, e.Code, e.Message)
}

// Dial opens the signaling WebSocket to rtcURL (ws://host/v1/rtc) with
// token, waits for `joined`, and sets up both PeerConnections. A
// `redirect` instead of `joined` (the room lives on another instance) is
// followed with the same token, at most MaxRedirects times. A refusal
// before the upgrade is a *DialError.
func Dial(ctx context.Context, rtcURL, token string, opts Options) (*Client, error) {
	c, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	if err := c.join(ctx, rtcURL, token); err != nil {
		return nil, err
	}
	c.token = token
	if err := c.setupPeers(); err != nil {
		c.conn.Close()
		c.closePeers()
		return nil, err
	}
	c.wg.Add(1)
	go c.readLoop()
	return c, nil
}

func newClient(opts Options) (*Client, error) {
	if opts.API == nil {
		api, err := NewAPI(nil)
		if err != nil {
			return nil, err
		}
		opts.API = api
	}
	if opts.Dialer == nil {
		opts.Dialer = &websocket.Dialer{HandshakeTimeout: handshakeTimeout, Proxy: http.ProxyFromEnvironment}
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = defaultEventBuffer
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	life, kill := context.WithCancel(context.Background())
	return &Client{
		opts: opts, log: opts.Log, life: life, kill: kill,
		pending:         make(map[string][]webrtc.ICECandidateInit),
		simulcastTracks: simulcastTracks{simulcast: make(map[string]*SimulcastTrack)},
		answers:         make(chan *signal.Message, 1),
		iceFailed:       [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)},
		subRestarted:    make(chan struct{}, 1),
		events:          make(chan *signal.Message, opts.EventBuffer),
		tracks:          make(chan *RemoteTrack, defaultTrackBuffer),
		done:            make(chan struct{}),
		data:            clientData{messages: make(chan DataMessage, dataBuffer)},
	}, nil
}

func (c *Client) dial(ctx context.Context, rtcURL, token string) error {
	conn, err := c.open(ctx, rtcURL, url.Values{"access_token": {token}})
	if err != nil {
		return err
	}
	c.conn = conn
	return nil
}

// open opens a signaling WebSocket to rtcURL with params added to its
// query.
func (c *Client) open(ctx context.Context, rtcURL string, params url.Values) (*websocket.Conn, error) {
	u, err := url.Parse(rtcURL)
	if err != nil {
		return nil, fmt.Errorf("client: dial: parse url: %w", err)
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	u.RawQuery = q.Encode()
	conn, resp, err := c.opts.Dialer.DialContext(ctx, u.String(), c.opts.Header)
	if err != nil {
		if resp != nil {
			return nil, refusal(resp)
		}
		return nil, fmt.Errorf("client: dial %s: %w", u.Host, err)
	}
	conn.SetReadLimit(readLimit)
	return conn, nil
}

// refusal turns a refused handshake's response into a *DialError.
func refusal(resp *http.Response) error {
	defer resp.Body.Close()
	e := &DialError{Status: resp.StatusCode}
	var body struct{ Code, Message, URL string }
	if b, err := io.ReadAll(io.LimitReader(resp.Body, 4096)); err == nil && json.Unmarshal(b, &body) == nil {
		e.Code, e.Message, e.URL = body.Code, body.Message, body.URL
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// join dials rtcURL and waits for `joined`, following redirects. On
// success c.conn is the joined connection; on failure it is closed.
func (c *Client) join(ctx context.Context, rtcURL, token string) error {
	for {
		if err := c.dial(ctx, rtcURL, token); err != nil {
			return err
		}
		next, err := c.awaitJoined(ctx)
		if err == nil && next == "" {
			c.url = rtcURL
			return nil
		}
		c.conn.Close()
		if err != nil {
			return err
		}
		if c.redirects == MaxRedirects {
			return fmt.Errorf("%w: redirected %d times, the last time from %s to %s", ErrRedirectLoop, c.redirects+1, rtcURL, next)
		}
		c.redirects++
		c.log.Debug("redirected", "from", rtcURL, "to", next)
		rtcURL = next
	}
}

// redirectTarget checks the url of a `redirect`: a WebSocket URL with a
// host. The client sends its token there, so anything else is refused.
func redirectTarget(m *signal.Message) (string, error) {
	u, err := url.Parse(m.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return "", fmt.Errorf("client: redirect to %.100q: not a ws:// or wss:// URL", m.URL)
	}
	return m.URL, nil
}

// awaitJoined reads the first message, which must be `joined`, or a
// `redirect`, whose URL it returns.
func (c *Client) awaitJoined(ctx context.Context) (redirect string, err error) {
	m, err := readFirst(ctx, c.conn)
	if err != nil {
		return "", fmt.Errorf("client: wait for joined: %w", err)
	}
	if m.Type == signal.TypeRedirect {
		return redirectTarget(m)
	}
	if m.Type != signal.TypeJoined || m.Participant == nil {
		return "", fmt.Errorf("client: wait for joined: got %q first", m.Type)
	}
	c.joined = Joined{Room: m.Room, Participant: *m.Participant, Participants: m.Participants, ICEServers: m.ICEServers}
	c.setResume(m)
	return "", nil
}

// readFirst reads the first message of a new connection, by ctx's
// deadline or within the handshake timeout.
func readFirst(ctx context.Context, conn *websocket.Conn) (*signal.Message, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(handshakeTimeout)
	}
	_ = conn.SetReadDeadline(deadline)
	defer conn.SetReadDeadline(time.Time{})
	_, data, err := conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	return signal.Parse(data)
}

// Joined returns what the server said when this participant joined.
func (c *Client) Joined() Joined { return c.joined }

// URL is the signaling URL this participant joined at, after any
// redirects, without its access token.
func (c *Client) URL() string { return c.url }

// Redirects is how many redirects Dial followed to join.
func (c *Client) Redirects() int { return c.redirects }

// handoverMax bounds how long Move keeps the old participant once the
// new one has published, waiting for its connections.
const handoverMax = 5 * time.Second

// Move follows a `draining` message that names where the room went
// (its url) or any other move to rtcURL, make before break: a new
// participant joins at rtcURL with token and opts, setup (when not nil)
// publishes on it, and only once the new publisher connection is up and
// the new participant receives as many tracks as c (the others moved and
// their media reaches it), or after 5 s, does c leave. The room's other participants see the new
// session join before the old one leaves, and the caller's own media
// keeps flowing through c meanwhile. If the new join or setup fails, c
// stays as it was and the error is returned.
func (c *Client) Move(ctx context.Context, rtcURL, token string, opts Options, setup func(context.Context, *Client) error) (*Client, error) {
	next, err := Dial(ctx, rtcURL, token, opts)
	if err != nil {
		return nil, fmt.Errorf("client: move to %s: %w", rtcURL, err)
	}
	if setup != nil {
		if err := setup(ctx, next); err != nil {
			next.Close()
			return nil, fmt.Errorf("client: move to %s: %w", rtcURL, err)
		}
	}
	next.awaitHandover(ctx, c, handoverMax)
	if err := c.Leave(ctx); err != nil {
		c.log.Debug("leave_after_move_failed", "err", err)
	}
	return next, nil
}

// ID is this participant's id.
func (c *Client) ID() string { return c.joined.Participant.ID }

// Events delivers the server's messages other than offers, answers and
// candidates (participant_joined, participant_left, error, draining,
// leave, and any type a newer server adds), unless Options.OnEvent is set.
// It is closed when the connection ends.
func (c *Client) Events() <-chan *signal.Message { return c.events }

// DroppedEvents counts events dropped because Events was full.
func (c *Client) DroppedEvents() int64 { return c.dropped.Load() }

// Tracks delivers the tracks forwarded to this participant, unless
// Options.OnTrack is set. Read it: Pion's goroutine for a track waits
// until the track is taken or the client is closed.
func (c *Client) Tracks() <-chan *RemoteTrack { return c.tracks }

// Done is closed when the signaling connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// LeaveReason is the reason of the server's `leave`, if one came.
func (c *Client) LeaveReason() string {
	c.endMu.Lock()
	defer c.endMu.Unlock()
	return c.leaveReason
}

// Err is why the connection ended: a *websocket.CloseError carries the
// server's close code. It is nil while the connection is open.
func (c *Client) Err() error {
	c.endMu.Lock()
	defer c.endMu.Unlock()
	return c.closeErr
}

// Send writes m to the server as it is. Tests use it to send what the
// Client itself never would.
func (c *Client) Send(m *signal.Message) error {
	b, err := signal.Encode(m)
	if err != nil {
		return err
	}
	return c.SendRaw(b)
}

// SendRaw writes data as one text message, well formed or not.
func (c *Client) SendRaw(data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := c.conn.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("client: send: %w", err)
	}
	return nil
}

// Leave sends `leave` and waits until the server has closed the
// connection or ctx is done, then closes the client.
func (c *Client) Leave(ctx context.Context) error {
	err := c.Send(&signal.Message{Type: signal.TypeLeave})
	if err == nil {
		select {
		case <-c.done:
		case <-ctx.Done():
			err = fmt.Errorf("client: leave: %w", ctx.Err())
		}
	}
	return errors.Join(err, c.Close())
}

// Close ends the client at once: the WebSocket and both PeerConnections.
// It waits for the client's goroutines and is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.kill()
		c.writeMu.Lock()
		_ = c.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.conn.Close()
		c.writeMu.Unlock()
		c.closePeers()
	})
	c.wg.Wait()
	return nil
}

// closePeers closes both PeerConnections once no negotiation step runs;
// later steps do nothing (see peerGuard).
func (c *Client) closePeers() {
	c.peers.close(func() {
		for _, pc := range []*webrtc.PeerConnection{c.pub, c.sub} {
			if pc != nil {
				if err := pc.Close(); err != nil {
					c.log.Debug("peer_close_failed", "err", err)
				}
			}
		}
	})
}

// AwaitMedia waits until a track published by participantID arrives and
// its first RTP packet has been read, or ctx ends. It takes tracks from
// Tracks as they come, the awaited one and any other, so it suits callers
// that only want to know media flows.
func (c *Client) AwaitMedia(ctx context.Context, participantID string) error {
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("client: no track from %s: %w", participantID, ctx.Err())
		case rt := <-c.Tracks():
			if rt.ParticipantID != participantID {
				continue
			}
			return awaitRTP(ctx, rt)
		}
	}
}

// awaitRTP waits for the first RTP packet on rt. The read goroutine ends
// when the packet arrives or the track ends, which Close guarantees.
func awaitRTP(ctx context.Context, rt *RemoteTrack) error {
	got := make(chan error, 1)
	go func() { _, _, err := rt.Track.ReadRTP(); got <- err }()
	select {
	case err := <-got:
		if err != nil {
			return fmt.Errorf("client: read RTP from %s: %w", rt.ParticipantID, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: no RTP from %s: %w", rt.ParticipantID, ctx.Err())
	}
}
