package client

import (
	"context"
	"errors"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// iceRestartInterval paces the client's ICE restarts while a connection
// stays down: each restart gathers on the network as it is now, so one
// made in a tunnel is followed by another after it. A restarted agent
// keeps checking between them, so the connection comes back as soon as
// the path does, not at the next restart. It is also how long a
// disconnected connection gets to come back by itself first, as a
// browser's does: under CPU load a connection misses a few checks and
// recovers, and restarting it at once would only interrupt it.
const iceRestartInterval = 2 * time.Second

// iceRestartTimeout bounds one restart's exchange of descriptions, after
// which it is abandoned and made again. It is far above a round trip:
// on a loaded machine an answer can take seconds, and a restart given up
// too early leaves its answer to arrive while the next one waits.
const iceRestartTimeout = 10 * time.Second

// watchICE restarts ICE on target's connection when it goes failed, or
// stays disconnected for iceRestartInterval, and again every
// iceRestartInterval until it is up.
func (c *Client) watchICE(target string, pc *webrtc.PeerConnection) {
	if c.opts.NoResume {
		return
	}
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		switch st {
		case webrtc.ICEConnectionStateDisconnected:
			c.startRestarts(target, pc, iceRestartInterval)
		case webrtc.ICEConnectionStateFailed:
			c.startRestarts(target, pc, 0)
		}
	})
}

func restartSlot(target string) int {
	if target == signal.TargetPublisher {
		return 0
	}
	return 1
}

// startRestarts starts target's restart loop, which first waits grace for
// the connection to come back by itself, unless a loop runs: one restart
// at a time per connection. A failed connection cuts a running loop's
// grace short.
func (c *Client) startRestarts(target string, pc *webrtc.PeerConnection, grace time.Duration) {
	if grace == 0 {
		select {
		case c.iceFailed[restartSlot(target)] <- struct{}{}:
		default:
		}
	}
	slot := &c.restarting[restartSlot(target)]
	if c.life.Err() != nil || !slot.CompareAndSwap(false, true) {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer slot.Store(false)
		defer drain(c.iceFailed[restartSlot(target)])
		c.restartUntilUp(target, pc, grace)
	}()
}

// restartUntilUp waits grace, then restarts target's connection until it
// is up, each restart completed or abandoned before the next and
// iceRestartInterval apart.
func (c *Client) restartUntilUp(target string, pc *webrtc.PeerConnection, grace time.Duration) {
	failed := c.iceFailed[restartSlot(target)]
	for wait := grace; ; wait = iceRestartInterval {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-failed:
			t.Stop()
		case <-c.life.Done():
			t.Stop()
			return
		}
		if iceUp(pc.ICEConnectionState()) {
			return
		}
		if err := c.RestartICE(target); err != nil {
			c.log.Debug("ice_restart_failed", "target", target, "err", err)
		}
	}
}

func iceUp(st webrtc.ICEConnectionState) bool {
	return st == webrtc.ICEConnectionStateConnected || st == webrtc.ICEConnectionStateCompleted
}

// RestartICE restarts ICE on target's connection: the publisher
// connection with an offer of new ICE credentials, the subscriber by
// asking the server for one. A connection never negotiated has nothing to
// restart. The client calls it on its own (see Options.NoResume).
func (c *Client) RestartICE(target string) error {
	switch target {
	case signal.TargetPublisher:
		if c.pub.RemoteDescription() == nil {
			return nil
		}
		c.negotiateMu.Lock()
		defer c.negotiateMu.Unlock()
		ctx, cancel := context.WithTimeout(c.life, iceRestartTimeout)
		defer cancel()
		return c.negotiateWith(ctx, &webrtc.OfferOptions{ICERestart: true})
	case signal.TargetSubscriber:
		if c.sub.RemoteDescription() == nil {
			return nil
		}
		return c.restartSubscriber()
	}
	return nil
}

// restartSubscriber asks the server for a subscriber offer restarting ICE
// and waits, for at most iceRestartTimeout, until it is answered.
func (c *Client) restartSubscriber() error {
	drain(c.subRestarted) // a restart answered before this one was asked for
	if err := c.Send(&signal.Message{Type: signal.TypeICERestart, Target: signal.TargetSubscriber}); err != nil {
		return err
	}
	t := time.NewTimer(iceRestartTimeout)
	defer t.Stop()
	select {
	case <-c.subRestarted:
		return nil
	case <-t.C:
		return errors.New("client: subscriber ice restart: no offer in time")
	case <-c.done:
		return errors.New("client: subscriber ice restart: connection closed")
	}
}

// drain empties a signal channel of one slot.
func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
