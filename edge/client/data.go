package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/signal"
)

// dataBuffer is the capacity of Data. When it is full the channel's
// reader waits: the client then takes no more messages, SCTP pushes back
// on the server, and the server drops what this client does not take
// (it sends error data_dropped), as it would for any slow receiver.
const dataBuffer = 256

// DataMessage is one message relayed from another participant.
type DataMessage struct {
	From    string // the sender's identity, set by the server
	Topic   string
	Payload []byte
	Lossy   bool // it came on the lossy channel
}

// clientData is the client's two data channels on its publisher
// connection, set once by OpenData (SendData must come after it), and the
// queue of relayed messages, made with the Client.
type clientData struct {
	reliable, lossy *webrtc.DataChannel
	messages        chan DataMessage
}

// OpenData creates the data channels (_reliable and _lossy, pre-negotiated
// with ids 0 and 1, as edge/PROTOCOL.md says) and negotiates the publisher
// connection with them, then waits until both are open. Call it before
// Publish to have one negotiation carry both; calling it again does
// nothing more than wait for the open.
func (c *Client) OpenData(ctx context.Context) error {
	c.negotiateMu.Lock()
	opened, err := c.createData()
	if err == nil && opened {
		err = c.negotiate(ctx)
	}
	c.negotiateMu.Unlock()
	if err != nil {
		return err
	}
	for _, dc := range []*webrtc.DataChannel{c.data.reliable, c.data.lossy} {
		if err := awaitOpen(ctx, dc); err != nil {
			return err
		}
	}
	return nil
}

// createData creates the channels unless they exist; it reports whether
// it did. The caller holds negotiateMu.
func (c *Client) createData() (bool, error) {
	if c.data.reliable != nil {
		return false, nil
	}
	yes, no, zero := true, false, uint16(0)
	rel, lossyID := uint16(signal.DataReliableID), uint16(signal.DataLossyID)
	r, err := c.pub.CreateDataChannel(signal.DataReliableLabel, &webrtc.DataChannelInit{Negotiated: &yes, ID: &rel, Ordered: &yes})
	if err != nil {
		return false, fmt.Errorf("client: data channel: %w", err)
	}
	l, err := c.pub.CreateDataChannel(signal.DataLossyLabel, &webrtc.DataChannelInit{
		Negotiated: &yes, ID: &lossyID, Ordered: &no, MaxRetransmits: &zero})
	if err != nil {
		return false, fmt.Errorf("client: data channel: %w", err)
	}
	c.data.reliable, c.data.lossy = r, l
	r.OnMessage(c.onData(false))
	l.OnMessage(c.onData(true))
	return true, nil
}

// awaitOpen polls until dc is open or ctx ends: an open that happened
// before an OnOpen was set would be missed.
func awaitOpen(ctx context.Context, dc *webrtc.DataChannel) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for dc.ReadyState() != webrtc.DataChannelStateOpen {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("client: data channel %s not open: %w", dc.Label(), ctx.Err())
		}
	}
	return nil
}

// onData hands a relayed message to Data, waiting while Data is full
// (see dataBuffer) until the client closes.
func (c *Client) onData(lossy bool) func(webrtc.DataChannelMessage) {
	return func(m webrtc.DataChannelMessage) {
		f, err := signal.ParseDataFrame(m.Data)
		if err != nil || len(f.Identities) != 1 {
			c.log.Debug("bad_data_frame", "err", err)
			return
		}
		select {
		case c.data.messages <- DataMessage{From: f.Identities[0], Topic: f.Topic, Payload: f.Payload, Lossy: lossy}:
		case <-c.done:
		}
	}
}

// Data delivers the messages relayed to this participant, after OpenData.
// Read it: while it is full, this participant takes no more.
func (c *Client) Data() <-chan DataMessage { return c.data.messages }

// ErrNoData is SendData's error before OpenData.
var ErrNoData = errors.New("client: data channels not open (call OpenData)")

// SendData sends payload under topic on the reliable channel (lossy false)
// or the lossy one, to the participants with the identities in to, or to
// everyone else in the room when to is empty. The server's refusals
// (data_too_large, data_rate_limited, not_permitted) come back as `error`
// messages on Events.
func (c *Client) SendData(lossy bool, topic string, payload []byte, to ...string) error {
	b, err := signal.AppendDataFrame(nil, signal.DataFrame{Topic: topic, Identities: to, Payload: payload})
	if err != nil {
		return err
	}
	return c.SendDataRaw(lossy, b)
}

// SendDataRaw sends b as it is on one of the data channels: tests use it
// for frames the Client itself never builds.
func (c *Client) SendDataRaw(lossy bool, b []byte) error {
	dc := c.data.reliable
	if lossy {
		dc = c.data.lossy
	}
	if dc == nil {
		return ErrNoData
	}
	if err := dc.Send(b); err != nil {
		return fmt.Errorf("client: send data: %w", err)
	}
	return nil
}
