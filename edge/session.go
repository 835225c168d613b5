package edge

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
)

// Close reasons of sessions beyond the protocol's leave reasons: they
// label media_sessions_closed_total and never reach the client.
const (
	reasonClientLeave   = "client_leave"  // the client sent leave
	reasonClientClosed  = "client_closed" // the WebSocket ended from the client's side
	reasonMessageTooBig = "message_too_big"
	reasonInternal      = "internal" // our own failure (PeerConnection setup)
)

// sessionDeps is everything a session uses of its instance, and all it
// gets: no session holds the Server, so none can reach its listeners,
// its drain or its other sessions except through these.
type sessionDeps struct {
	cfg      sessionConfig
	log      *slog.Logger // the instance's; each session scopes it
	metrics  *metrics
	media    *sfu.Engine // makes the session's two connections and its publications
	rooms    *rooms      // the session leaves its room through it
	sessions *Sessions   // the manager that holds the session

	// iceServers are the relay's servers and credentials for an
	// identity; nil without a relay.
	iceServers func(identity string) []signal.ICEServer
	// closed is called once at the end of teardown, before Done closes:
	// the instance takes back the session's admission.
	closed func()
}

// sessionConfig is the part of Config a session reads (see Config for
// each field's meaning and default).
type sessionConfig struct {
	MaxTracks          int
	MaxCandidates      int
	IdleTimeout        time.Duration
	NegotiationTimeout time.Duration
	OfferInterval      time.Duration
	OfferBurst         int
	MessageRate        float64
	MessageBurst       int
	ResumeGrace        time.Duration
	WS                 wsConfig
	Data               dataConfig
}

func newSessionConfig(c Config) sessionConfig {
	return sessionConfig{
		MaxTracks: c.MaxTracks, MaxCandidates: c.MaxCandidates,
		IdleTimeout: c.IdleTimeout, NegotiationTimeout: c.NegotiationTimeout,
		OfferInterval: c.OfferInterval, OfferBurst: c.OfferBurst,
		MessageRate: c.MessageRate, MessageBurst: c.MessageBurst,
		ResumeGrace: c.ResumeGrace, WS: newWSConfig(c), Data: newDataConfig(c),
	}
}

// Session is one participant's connection: its signaling client, its two
// PeerConnections (publisher: the client offers and sends; subscriber: the
// server offers and sends) and the tracks it publishes and receives. It is
// owned by the Server's session manager from join until its teardown
// removes it. It sees its instance only through its sessionDeps.
//
// Goroutines: the reader (readLoop, then teardown) owns the WebSocket's
// read side and the session's end; the writer (wsClient.writeLoop) owns
// its write side; the negotiator (negotiateLoop) sends subscriber offers
// one at a time; one watcher per publication waits for its end. Pion's
// callbacks run on Pion's goroutines and only enqueue or call end.
type Session struct {
	id   string
	deps sessionDeps

	log      *slog.Logger // deps.log scoped to the session
	identity string
	grants   auth.Grants
	room     *room
	opened   time.Time              // WebSocket open: the start of the join time
	pub      *webrtc.PeerConnection // publisher: the client offers and sends
	sub      *sfu.SubscriberConn    // subscriber: the server offers and sends
	pubICE   *signal.Trickle
	subICE   *signal.Trickle
	offers   *rate.Limiter // publisher offers
	inbound  *rate.Limiter // every client message: paces the reader
	data     *sessionData  // its data channels, on pub

	renegotiate chan struct{} // cap 1: a subscriber offer is wanted
	answered    chan struct{} // cap 1: the outstanding offer was answered
	// pubOfferID is the offer_id of the publisher offer being answered,
	// set by the reader goroutine before it answers or refuses one and
	// echoed in that reply; subOfferID numbers the subscriber offers,
	// the last one sent being the outstanding one (negotiator goroutine).
	pubOfferID, subOfferID atomic.Uint64
	joinTimed              atomic.Bool // the join time was recorded
	resume                 resumeState // the resume credential, the grace, ICE restarts

	wsMu    sync.Mutex // guards ws and wsEpoch only; a leaf lock, taken under room.mu on resume
	ws      *wsClient  // the WebSocket now; nil while the session waits for a resume
	wsEpoch uint64     // counts the WebSockets attached by resumes

	mu            sync.Mutex                           // guards the fields below
	ended         bool                                 // no new subscriptions or watchers
	reason        string                               // why it ended
	subs          map[string]*sfu.Subscription         // by publication id
	receivers     map[*webrtc.RTPReceiver]struct{}     // tracks published and not ended, one per receiver whatever its layers
	candidates    map[string]map[uint64]struct{}       // distinct candidates of the current ICE generation, by target: see takeCandidates
	candidatesAll int                                  // candidates taken in every generation: see maxCandidateGenerations
	candidateSeed maphash.Seed                         // keys candidates; set once before the session is shared
	held          map[string][]webrtc.ICECandidateInit // candidates waiting for their connection's (next) remote description
	remoteUfrag   map[string]string                    // ICE username fragment of each connection's remote description
	sources       map[string]sfu.Source                // the publisher's offers' sources, by mid (mute.go)
	metadata      string                               // the application's, set by the server API
	jti           string                               // the token's revocation key (revoked.go); set before the session is shared
	tokenExp      time.Time                            // when the token stops working, leeway included; set with jti

	wg      sync.WaitGroup // writer, negotiator, watchers, notifications
	ending  chan struct{}  // closed by end
	endOnce sync.Once
	done    chan struct{} // closed when the session has fully closed
}

// newParticipantID returns "PA_" and 12 random characters: ids a client
// sees must not be guessable.
func newParticipantID() string { return "PA_" + rand.Text()[:12] }

// newSession builds the session of an admitted, upgraded client: its
// WebSocket client and both PeerConnections. It starts nothing.
func newSession(conn *websocket.Conn, c *auth.Claims, r *room, opened time.Time, deps sessionDeps) (*Session, error) {
	s := &Session{id: newParticipantID(), deps: deps, done: make(chan struct{}), ending: make(chan struct{})}
	s.identity, s.grants, s.room, s.opened = c.Identity(), c.Grants, r, opened
	s.log = deps.log.With("session", s.id, "room", r.name, "identity", s.identity)
	s.offers = rate.NewLimiter(rate.Every(deps.cfg.OfferInterval), deps.cfg.OfferBurst)
	s.inbound = rate.NewLimiter(rate.Limit(deps.cfg.MessageRate), deps.cfg.MessageBurst)
	s.renegotiate, s.answered = make(chan struct{}, 1), make(chan struct{}, 1)
	s.subs, s.held = make(map[string]*sfu.Subscription), make(map[string][]webrtc.ICECandidateInit)
	s.remoteUfrag = make(map[string]string)
	s.candidates, s.candidateSeed = newCandidateSets(), maphash.MakeSeed()
	s.resume = newResumeState(deps.cfg)
	s.receivers = make(map[*webrtc.RTPReceiver]struct{})
	s.ws = s.newWS(conn)
	var err error
	if s.pub, err = deps.media.NewPublisherPeerConnection(webrtc.Configuration{}); err != nil {
		return nil, err
	}
	if s.sub, err = deps.media.NewSubscriberConn(webrtc.Configuration{}); err != nil {
		_ = s.pub.Close()
		return nil, err
	}
	if err = s.openData(); err != nil {
		_ = errors.Join(s.pub.Close(), s.sub.Close())
		return nil, err
	}
	s.pubICE = signal.NewTrickle(s.candidateSender(signal.TargetPublisher))
	s.subICE = signal.NewTrickle(s.candidateSender(signal.TargetSubscriber))
	s.pub.OnICECandidate(s.pubICE.Candidate)
	s.sub.PeerConnection().OnICECandidate(s.subICE.Candidate)
	s.sub.OnSubscriptionState(s.sendSubscriptionState)
	s.pub.OnTrack(s.onTrack)
	s.pub.OnConnectionStateChange(s.connectionState(signal.TargetPublisher))
	s.sub.PeerConnection().OnConnectionStateChange(s.connectionState(signal.TargetSubscriber))
	return s, nil
}

// start joins the room, greets the client and the room, and starts the
// session's goroutines. The reader runs teardown when it ends.
func (s *Session) start() {
	s.deps.metrics.sessions.Add(bg, 1)
	// joined is queued inside the room's lock: once s is a member, a
	// concurrent joiner may queue participant_joined to it, and that must
	// come after joined.
	others, pubs := s.room.join(s, func(others []*Session) { s.send(s.joinedMessage(others)) })
	s.deps.metrics.participants.Add(bg, 1)
	s.wg.Add(2)
	ws := s.currentWS()
	go func() { defer s.wg.Done(); ws.writeLoop() }()
	// The negotiator starts after joined is queued: a publication elsewhere
	// may already have asked for a subscriber offer.
	go func() { defer s.wg.Done(); s.negotiateLoop() }()
	for _, o := range others {
		o.send(&signal.Message{Type: signal.TypeParticipantJoined, Participant: s.participant()})
	}
	for _, p := range pubs {
		s.subscribe(p)
	}
	go s.run()
}

func (s *Session) joinedMessage(others []*Session) *signal.Message {
	m := &signal.Message{Type: signal.TypeJoined, Protocol: signal.Version, Room: s.room.name,
		Participant: s.participant(), Participants: make([]signal.Participant, 0, len(others)),
		ICEServers: []signal.ICEServer{}}
	if s.resume.grace > 0 {
		m.Resume, m.ResumeGraceMS = s.resume.currentCredential(), s.resume.grace.Milliseconds()
	}
	for _, o := range others {
		m.Participants = append(m.Participants, s.room.describeLocked(o))
	}
	if s.deps.iceServers != nil {
		m.ICEServers = append(m.ICEServers, s.deps.iceServers(s.identity)...)
	}
	return m
}

// ID returns the session's id (the participant id).
func (s *Session) ID() string { return s.id }

// Identity is the participant's identity from its token.
func (s *Session) Identity() string { return s.identity }

// Done is closed once the session has fully closed.
func (s *Session) Done() <-chan struct{} { return s.done }

func (s *Session) participant() *signal.Participant {
	return &signal.Participant{ID: s.id, Identity: s.identity, Metadata: s.Metadata()}
}

// notifyDraining tells the client the instance is draining, by when it
// must have left and, when its room moved to another instance, that
// instance's signaling URL. It does not wait for a slow client.
func (s *Session) notifyDraining(deadline time.Time, url string) {
	if !s.track() {
		return
	}
	go func() {
		defer s.wg.Done()
		s.send(&signal.Message{Type: signal.TypeDraining, Deadline: deadline.UTC().Truncate(time.Second), URL: url})
	}()
}

// isEnded reports whether end was called.
func (s *Session) isEnded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// track adds one goroutine to s.wg unless the session has ended; it
// reports whether it did. Adding after end would race teardown's Wait.
func (s *Session) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.wg.Add(1)
	return true
}

// Close ends the session for reason and waits until it has fully closed.
// It is idempotent; it must not be called from the session's own
// goroutines (they call end).
func (s *Session) Close(reason string) {
	s.end(reason)
	<-s.done
}

// end starts the end of the session without waiting: it records the
// reason (the first one wins) and tells the writer how to close the
// WebSocket. The reader then runs the teardown.
func (s *Session) end(reason string) { s.endFor(reason, nil) }

// endFor is end; first, when not nil, runs only when this call is the one
// that ends the session, before anything is closed, so what it counts is
// counted once per session and before the client sees the close.
func (s *Session) endFor(reason string, first func()) {
	s.endOnce.Do(func() {
		if first != nil {
			first()
		}
		s.mu.Lock()
		s.ended, s.reason = true, reason
		s.mu.Unlock()
		close(s.ending)
		s.resume.stopTimers()
		if ws := s.currentWS(); ws != nil {
			ws.stop(s.lastWords(reason))
		}
	})
}

// lastWords maps a close reason to what the client is told: the
// protocol's leave reasons get a `leave` message; the close code says
// whether it was normal (1000), the server going away (1001) or a policy
// (1008).
func (s *Session) lastWords(reason string) lastWords {
	leave := func(code int) lastWords {
		b, _ := signal.Encode(&signal.Message{Type: signal.TypeLeave, Reason: reason})
		return lastWords{msg: b, code: code}
	}
	switch reason {
	case signal.ReasonServerShutdown:
		return leave(websocket.CloseGoingAway)
	case signal.ReasonTimeout:
		return leave(websocket.ClosePolicyViolation)
	case signal.ReasonSlowClient:
		return lastWords{code: websocket.ClosePolicyViolation, abort: true}
	case signal.ReasonICEFailed, signal.ReasonDuplicateIdentity, signal.ReasonRemoved, signal.ReasonRoomClosed:
		return leave(websocket.CloseNormalClosure)
	case reasonInternal:
		return leave(websocket.CloseInternalServerErr)
	}
	return lastWords{code: websocket.CloseNormalClosure}
}

// send enqueues m for the client. A client whose queue stays full is slow:
// its session ends. Nothing is dropped silently: a message that cannot be
// queued ends the connection, so the client knows to reconnect.
func (s *Session) send(m *signal.Message) { s.sendEpoch(m) }

// sendEpoch is send, and returns the epoch of the WebSocket m went to
// (see resumeEpoch).
func (s *Session) sendEpoch(m *signal.Message) (epoch uint64) {
	b, err := signal.Encode(m)
	if err != nil {
		s.log.Error("signal_encode_failed", "type", m.Type, "err", err)
		return
	}
	s.wsMu.Lock()
	ws, epoch := s.ws, s.wsEpoch
	s.wsMu.Unlock()
	if ws == nil {
		// The WebSocket is lost and the session waits for a resume,
		// which sends the full room state and the outstanding offer
		// again: nothing is lost that matters then.
		s.log.Debug("signal_held_for_resume", "type", m.Type)
		return epoch
	}
	switch err := ws.send(b); {
	case errors.Is(err, errSlowClient):
		s.slowClient()
	case err != nil:
		s.log.Debug("signal_not_sent", "type", m.Type, "err", err)
	}
	return epoch
}

// sendDetached sends m on a goroutine of the session's, so a caller that
// serves others (a data relay, the speakers round) never waits on this
// client's full queue; send's rule still holds for it. round, when not
// nil, is done once the send is. Nothing is sent once the session ended.
func (s *Session) sendDetached(m *signal.Message, round *sync.WaitGroup) {
	if !s.track() {
		return
	}
	if round != nil {
		round.Add(1)
	}
	go func() {
		defer s.wg.Done()
		if round != nil {
			defer round.Done()
		}
		s.send(m)
	}()
}

// slowClient ends the session of a client that does not take its
// messages: its queue stayed full, or a write to it timed out. The reader
// and the writer can both find the client slow at once; it is logged and
// counted once, and only when it is what ended the session.
func (s *Session) slowClient() {
	s.endFor(signal.ReasonSlowClient, func() {
		s.log.Info("slow_client", "queue", s.deps.cfg.WS.SendQueue)
		s.deps.metrics.slow.Add(bg, 1)
	})
}

// sendError answers a refused request; the session continues.
func (s *Session) sendError(code, msg string) { s.sendErrorOn("", code, msg) }

// sendErrorOn is sendError naming target, the connection whose offer or
// answer the error refuses; a publisher offer's refusal echoes its id.
func (s *Session) sendErrorOn(target, code, msg string) {
	s.deps.metrics.signalError(code)
	m := &signal.Message{Type: signal.TypeError, Code: code, Target: target, Message: msg}
	if target == signal.TargetPublisher { // only the reader refuses publisher offers
		m.OfferID = s.pubOfferID.Load()
	}
	s.send(m)
}

// recordJoin records the join time once, when media first flows.
func (s *Session) recordJoin(first string) {
	if s.joinTimed.CompareAndSwap(false, true) {
		s.deps.metrics.joinDuration(time.Since(s.opened), first)
	}
}

// writeFailed is the writer's report of a failed write or ping on ws. A
// write that timed out means the client stopped reading: a slow client.
// Any other failure means the connection is gone: the session ends, or,
// when it may be resumed, the connection is closed so that the reader
// starts the grace period.
func (s *Session) writeFailed(ws *wsClient, err error) {
	s.log.Debug("signal_write_failed", "err", err)
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		s.slowClient()
		return
	}
	if s.deps.cfg.ResumeGrace > 0 {
		ws.stop(lastWords{abort: true})
		return
	}
	s.end(reasonClientClosed)
}

// connectionState ends the session when either connection is closed by
// the client (Pion closes the connection when the peer's DTLS says
// close_notify), or fails (ICE gave up after the engine's timeouts) and
// is not restarted within the resume grace (see iceLost): either way the
// participant's media is gone while its WebSocket may live on.
func (s *Session) connectionState(target string) func(webrtc.PeerConnectionState) {
	return func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			s.iceRecovered(target)
		case webrtc.PeerConnectionStateFailed:
			if !s.isEnded() {
				s.iceLost(target)
			}
		case webrtc.PeerConnectionStateClosed:
			if s.isEnded() { // our own teardown closes them too
				return
			}
			s.log.Info("peer_connection_lost", "target", target, "state", st.String())
			s.end(signal.ReasonICEFailed)
		}
	}
}

// teardown runs once on the reader goroutine after the session ended:
// nothing the session owned outlives it.
func (s *Session) teardown() {
	s.wg.Wait() // writer (connection closed), negotiator, watchers
	others, owned := s.deps.rooms.leave(s.room, s)
	s.deps.metrics.participants.Add(bg, -1)
	for _, p := range owned {
		p.Close()
	}
	for _, o := range others {
		o.unsubscribe(owned...)
		o.send(&signal.Message{Type: signal.TypeParticipantLeft, Participant: s.participant()})
	}
	s.closeMedia()
	s.deps.sessions.Remove(s.id)
	s.deps.closed()
	s.deps.metrics.sessions.Add(bg, -1)
	s.deps.metrics.sessionClosed(s.reason)
	s.log.Info("session_closed", "reason", s.reason, "duration", time.Since(s.opened).Round(time.Millisecond).String())
	close(s.done)
}

// closeMedia ends the session's subscriptions and both PeerConnections.
func (s *Session) closeMedia() {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		if err := s.sub.Unsubscribe(sub); err != nil {
			s.log.Debug("subscription_close_failed", "err", err)
		}
	}
	if err := errors.Join(closePeer(s.pub), closePeer(s.sub)); err != nil {
		s.log.Debug("peer_close_failed", "err", err)
	}
}

// String names the session in logs and errors.
func (s *Session) String() string { return fmt.Sprintf("session %s (%s)", s.id, s.identity) }
