package client

import (
	"context"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// iceRestartInterval paces the client's ICE restarts while a connection
// stays down: each restart gathers on the network as it is now, so one
// made in a tunnel is followed by another after it. A restarted agent
// keeps checking between them, so the connection comes back as soon as
// the path does, not at the next restart.
const iceRestartInterval = 2 * time.Second

// restartAnswerWait bounds the wait for the answer to a publisher restart
// offer. Longer than iceRestartInterval: a loaded server answers late,
// and giving up early leaves the offer outstanding, so the next restart
// would take the late answer to this one for its own. The restart loop
// waits meanwhile.
const restartAnswerWait = 10 * time.Second

// watchICE restarts ICE on target's connection when it goes disconnected
// or failed, and again every iceRestartInterval until it is up.
func (c *Client) watchICE(target string, pc *webrtc.PeerConnection) {
	if c.opts.NoResume {
		return
	}
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		if st == webrtc.ICEConnectionStateDisconnected || st == webrtc.ICEConnectionStateFailed {
			c.startRestarts(target, pc)
		}
	})
}

func restartSlot(target string) int {
	if target == signal.TargetPublisher {
		return 0
	}
	return 1
}

// startRestarts starts target's restart loop unless it runs.
func (c *Client) startRestarts(target string, pc *webrtc.PeerConnection) {
	slot := &c.restarting[restartSlot(target)]
	if c.life.Err() != nil || !slot.CompareAndSwap(false, true) {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer slot.Store(false)
		c.restartUntilUp(target, pc)
	}()
}

func (c *Client) restartUntilUp(target string, pc *webrtc.PeerConnection) {
	t := time.NewTicker(iceRestartInterval)
	defer t.Stop()
	for !iceUp(pc.ICEConnectionState()) {
		if err := c.RestartICE(target); err != nil {
			c.log.Debug("ice_restart_failed", "target", target, "err", err)
		}
		select {
		case <-t.C:
		case <-c.life.Done():
			return
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
		ctx, cancel := context.WithTimeout(c.life, restartAnswerWait)
		defer cancel()
		return c.negotiateWith(ctx, &webrtc.OfferOptions{ICERestart: true})
	case signal.TargetSubscriber:
		if c.sub.RemoteDescription() == nil {
			return nil
		}
		return c.Send(&signal.Message{Type: signal.TypeICERestart, Target: signal.TargetSubscriber})
	}
	return nil
}
