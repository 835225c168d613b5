package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"

	"github.com/media-service/media-service/edge/signal"
)

// Backoff of resume attempts: the first comes at once (a WebSocket reset
// by a proxy is back in a round trip), then the waits double up to
// resumeBackoffMax, until the server's grace period runs out.
const (
	resumeBackoffMin = 100 * time.Millisecond
	resumeBackoffMax = 2 * time.Second
)

// resumeGrant is what the server said about resuming: the credential that
// resumes the session once, and how long it keeps the session.
type resumeGrant struct {
	credential string
	grace      time.Duration
}

// setResume keeps the resume credential of a joined or resumed message.
func (c *Client) setResume(m *signal.Message) {
	c.resumeMu.Lock()
	defer c.resumeMu.Unlock()
	c.resume = resumeGrant{credential: m.Resume, grace: time.Duration(m.ResumeGraceMS) * time.Millisecond}
}

func (c *Client) resumeGrant() resumeGrant {
	c.resumeMu.Lock()
	defer c.resumeMu.Unlock()
	return c.resume
}

// Resumes counts the sessions resumes this client made.
func (c *Client) Resumes() int64 { return c.resumes.Load() }

// resumeAfter runs on the reader when the WebSocket failed with lost: it
// reconnects with the resume credential, with backoff, until the grace
// period ends, and makes the new connection the client's. It returns nil
// once resumed, or the error that ends the client: lost itself when no
// resume applies (the server ended the session, or the client closed),
// or lost joined with the last refusal.
func (c *Client) resumeAfter(lost error) error {
	g := c.resumeGrant()
	if c.opts.NoResume || g.credential == "" || c.LeaveReason() != "" || !abnormal(lost) {
		return lost
	}
	if c.life.Err() != nil {
		return lost
	}
	c.log.Debug("signaling_lost", "err", lost)
	ctx, cancel := context.WithTimeout(c.life, g.grace) // Close cancels it
	defer cancel()
	for wait := time.Duration(0); ; wait = min(max(2*wait, resumeBackoffMin), resumeBackoffMax) {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("client: resume: %w (after %w)", ctx.Err(), lost)
		}
		err := c.tryResume(ctx, g.credential)
		if err == nil {
			return nil
		}
		c.log.Debug("resume_failed", "err", err)
		if !retryable(err) {
			return errors.Join(lost, err)
		}
	}
}

// abnormal reports whether the WebSocket was lost rather than closed by
// the server on purpose (which sends a close frame with its code).
func abnormal(err error) bool {
	var ce *websocket.CloseError
	return !errors.As(err, &ce) || ce.Code == websocket.CloseAbnormalClosure
}

// retryable reports whether a failed resume may be tried again: the
// network is still down, or the server asks to wait. A refused
// credential, an unknown session or a draining instance are final.
func retryable(err error) bool {
	var de *DialError
	if !errors.As(err, &de) {
		return true
	}
	return de.Status == http.StatusConflict || de.Status == http.StatusTooManyRequests
}

// tryResume opens a resuming connection and, once the server says
// `resumed`, makes it the client's.
func (c *Client) tryResume(ctx context.Context, credential string) error {
	conn, err := c.open(ctx, c.url, url.Values{"access_token": {c.token},
		"participant": {c.ID()}, "resume": {credential}})
	if err != nil {
		return err
	}
	m, err := readFirst(ctx, conn)
	if err == nil && m.Type != signal.TypeResumed {
		err = fmt.Errorf("got %q first", m.Type)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("client: resume: wait for resumed: %w", err)
	}
	c.writeMu.Lock()
	old := c.conn
	c.conn = conn
	c.writeMu.Unlock()
	old.Close()
	c.resumes.Add(1)
	c.log.Debug("resumed")
	_ = c.handle(m)
	return nil
}
