// Package webhook tells the application's backend what happens on an
// instance: rooms starting and finishing, participants joining and
// leaving, tracks published and unpublished. Each event is POSTed as JSON
// to every configured URL, signed with the API secret (see Signature),
// in the order the instance saw them, retried with exponential backoff
// on a network error or a 5xx for a bounded time.
//
// Nothing waits for a receiver: Notify only appends to a bounded queue
// per URL (dropping, and counting, the oldest event when it is full), and
// one sender goroutine per URL delivers from it. Close delivers what is
// queued, bounded by its context, then stops the senders.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// The events.
const (
	RoomStarted       = "room_started"
	RoomFinished      = "room_finished"
	ParticipantJoined = "participant_joined"
	ParticipantLeft   = "participant_left"
	TrackPublished    = "track_published"
	TrackUnpublished  = "track_unpublished"
)

// SignatureHeader carries an event's signature: "sha256=" and the
// lowercase hex HMAC-SHA256 of the request body, keyed with the API
// secret. A receiver computes the same over the body it read and
// compares in constant time; the body's id and created_at let it refuse
// a replay.
const SignatureHeader = "X-Media-Signature"

// Backoff between attempts: it doubles from the first to the cap.
const (
	backoffFirst = 250 * time.Millisecond
	backoffCap   = 8 * time.Second
)

// Event is one webhook's body.
type Event struct {
	// ID is unique per event ("EV_" and 12 random characters): a receiver
	// that saw it already (a retry whose answer was lost) ignores it.
	ID    string `json:"id"`
	Event string `json:"event"`
	// CreatedAt is when the instance saw it, in Unix seconds.
	CreatedAt   int64        `json:"created_at"`
	Room        Room         `json:"room"`
	Participant *Participant `json:"participant,omitempty"`
	Track       *Track       `json:"track,omitempty"`
}

// Room names the event's room.
type Room struct {
	Name string `json:"name"`
}

// Participant is the participant of a participant or track event.
type Participant struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
}

// Track is the track of a track event.
type Track struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Source string `json:"source"`
}

// Sign returns the SignatureHeader value of body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether sig is body's signature under secret.
func Verify(secret string, body []byte, sig string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(sig))
}

// Notifier delivers events to the configured URLs. A nil *Notifier, or
// one without URLs, takes every event and does nothing.
type Notifier struct {
	cfg     Config
	secret  string
	log     *slog.Logger
	client  *http.Client
	senders []*sender
	results metric.Int64Counter // media_webhook_events_total{result}

	closeOnce sync.Once
	stop      context.CancelFunc // ends the senders: called by Close once the queues drained or its context ended
	wg        sync.WaitGroup     // the senders
}

// New validates cfg and starts one sender per URL, which run until
// Close. secret signs every event.
func New(cfg Config, secret string, log *slog.Logger, meter metric.Meter) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if secret == "" {
		return nil, errors.New("webhook: the API secret is required to sign events")
	}
	results, err := meter.Int64Counter("media_webhook_events",
		metric.WithDescription("Webhook events by result: delivered, failed (given up after retries or a 4xx), dropped (the queue was full)."))
	if err != nil {
		return nil, fmt.Errorf("webhook: metrics: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	n := &Notifier{cfg: cfg, secret: secret, log: log, results: results, stop: stop,
		client: &http.Client{Timeout: cfg.Timeout, CheckRedirect: noRedirects}}
	for _, r := range []string{resultDelivered, resultFailed, resultDropped} {
		results.Add(context.Background(), 0, metric.WithAttributes(attribute.String("result", r)))
	}
	for _, u := range cfg.URLs {
		s := &sender{n: n, url: strings.TrimSpace(u), wake: make(chan struct{}, 1), idle: make(chan struct{})}
		n.senders = append(n.senders, s)
		n.wg.Go(func() { s.run(ctx) })
	}
	return n, nil
}

// noRedirects makes a redirect the receiver's answer: a signed event is
// not passed on to wherever a receiver points.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Results of events: the values of media_webhook_events_total's result.
const (
	resultDelivered = "delivered"
	resultFailed    = "failed"
	resultDropped   = "dropped"
)

func (n *Notifier) count(result string) {
	n.results.Add(context.Background(), 1, metric.WithAttributes(attribute.String("result", result)))
}

// Notify queues ev for every URL, filling in its id and time. It never
// blocks on a receiver.
func (n *Notifier) Notify(ev Event) {
	if n == nil || len(n.senders) == 0 {
		return
	}
	ev.ID = "EV_" + rand.Text()[:12]
	ev.CreatedAt = time.Now().Unix()
	body, err := json.Marshal(ev)
	if err != nil { // not reached: Event has only strings and numbers
		n.log.Error("webhook_encode_failed", "event", ev.Event, "err", err)
		return
	}
	for _, s := range n.senders {
		s.enqueue(body)
	}
}

// Close delivers what is queued until ctx ends, then stops every sender
// (an attempt under way is cancelled) and waits for them. It is
// idempotent.
func (n *Notifier) Close(ctx context.Context) {
	if n == nil {
		return
	}
	n.closeOnce.Do(func() {
		for _, s := range n.senders {
			s.closing()
		}
		for _, s := range n.senders {
			select {
			case <-s.idle:
			case <-ctx.Done():
			}
		}
		n.stop()
	})
	n.wg.Wait()
}

// sender delivers one URL's events in order, one at a time.
type sender struct {
	n    *Notifier
	url  string
	wake chan struct{} // cap 1: the queue got an event, or Close began

	mu      sync.Mutex // guards queue and closed
	queue   [][]byte   // oldest first; at most cfg.QueueSize
	closed  bool       // Close began: idle is closed once queue empties
	idle    chan struct{}
	idleSet bool
}

// enqueue appends body, dropping the oldest when the queue is full.
func (s *sender) enqueue(body []byte) {
	s.mu.Lock()
	if len(s.queue) >= s.n.cfg.QueueSize {
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.n.count(resultDropped)
	}
	s.queue = append(s.queue, body)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// closing marks the sender draining: it signals idle once its queue is
// empty.
func (s *sender) closing() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next returns the oldest queued event, or nil when there is none (and
// then, when draining, signals idle).
func (s *sender) next() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		if s.closed && !s.idleSet {
			s.idleSet = true
			close(s.idle)
		}
		return nil
	}
	body := s.queue[0]
	s.queue[0] = nil
	s.queue = s.queue[1:]
	return body
}

// run delivers events until ctx ends (Close).
func (s *sender) run(ctx context.Context) {
	for {
		body := s.next()
		if body == nil {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		s.deliver(ctx, body)
	}
}

// deliver posts body until it is accepted (2xx), refused (a 4xx other
// than 408 and 429), RetryFor has passed, or ctx ends.
func (s *sender) deliver(ctx context.Context, body []byte) {
	giveUp := time.Now().Add(s.n.cfg.RetryFor)
	wait := backoffFirst
	for {
		status, err := s.post(ctx, body)
		switch {
		case err == nil && status/100 == 2:
			s.n.count(resultDelivered)
			return
		case err == nil && status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
			s.n.log.Warn("webhook_refused", "url", s.url, "status", status)
			s.n.count(resultFailed)
			return
		}
		if time.Now().Add(wait).After(giveUp) || !sleep(ctx, wait) {
			s.n.log.Warn("webhook_failed", "url", s.url, "status", status, "err", err)
			s.n.count(resultFailed)
			return
		}
		wait = min(2*wait, backoffCap)
	}
}

// post makes one attempt and returns the receiver's status.
func (s *sender) post(ctx context.Context, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(SignatureHeader, Sign(s.n.secret, body))
	resp, err := s.n.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
	resp.Body.Close()
	return resp.StatusCode, nil
}

// sleep waits d unless ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
