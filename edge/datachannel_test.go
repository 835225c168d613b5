package edge

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/auth"
	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/sfu"
	"github.com/media-service/media-service/edge/signal"
	"github.com/media-service/media-service/internal/netlab"
)

// dialData joins room as identity with grants g and opens its data
// channels.
func dialData(t *testing.T, ts *testServer, room, identity string, g auth.Grants) *client.Client {
	t.Helper()
	c := ts.dialWith(t, ts.token(t, room, identity, g), client.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.OpenData(ctx); err != nil {
		t.Fatalf("%s: OpenData: %v", identity, err)
	}
	return c
}

// nextData returns c's next relayed message, failing after timeout.
func nextData(t *testing.T, c *client.Client, timeout time.Duration, what string) client.DataMessage {
	t.Helper()
	select {
	case m := <-c.Data():
		return m
	case <-time.After(timeout):
		t.Fatalf("%s: no data message within %s", what, timeout)
	}
	return client.DataMessage{}
}

func sendData(t *testing.T, c *client.Client, lossy bool, topic, payload string, to ...string) {
	t.Helper()
	if err := c.SendData(lossy, topic, []byte(payload), to...); err != nil {
		t.Fatalf("SendData(%q): %v", payload, err)
	}
}

// TestDataRelay: reliable messages reach every other participant in
// order with the sender's identity; targeted ones reach only their
// targets; lossy ones arrive too; the sender gets none of its own.
func TestDataRelay(t *testing.T) {
	ts := startServer(t, nil)
	alice := dialData(t, ts, "data", "alice", bothGrants)
	bob := dialData(t, ts, "data", "bob", bothGrants)
	carol := dialData(t, ts, "data", "carol", bothGrants)

	const n = 100
	for i := range n {
		sendData(t, alice, false, "chat", fmt.Sprintf("m%03d", i))
	}
	for _, c := range []*client.Client{bob, carol} {
		for i := range n {
			m := nextData(t, c, 5*time.Second, "reliable message")
			want := fmt.Sprintf("m%03d", i)
			if m.From != "alice" || m.Topic != "chat" || string(m.Payload) != want || m.Lossy {
				t.Fatalf("message %d = %+v (payload %q); want from alice, topic chat, %q, reliable", i, m, m.Payload, want)
			}
		}
	}

	// Targeted: only bob gets it. carol's next message is the broadcast
	// that follows, on the same ordered channel.
	sendData(t, alice, false, "dm", "for bob", "bob")
	sendData(t, alice, false, "chat", "for all")
	if m := nextData(t, bob, 5*time.Second, "targeted"); string(m.Payload) != "for bob" {
		t.Errorf("bob's next message = %q; want %q", m.Payload, "for bob")
	}
	if m := nextData(t, carol, 5*time.Second, "broadcast"); string(m.Payload) != "for all" {
		t.Errorf("carol's next message = %q; want %q (not the one for bob)", m.Payload, "for all")
	}
	nextData(t, bob, 5*time.Second, "broadcast")

	// Lossy: on loopback nothing is lost.
	sendData(t, bob, true, "cursor", "x=1", "carol")
	got := nextData(t, carol, 5*time.Second, "lossy message")
	if got.From != "bob" || !got.Lossy || string(got.Payload) != "x=1" {
		t.Errorf("carol's lossy message = %+v; want from bob, lossy, x=1", got)
	}

	select {
	case m := <-alice.Data():
		t.Errorf("alice received %+v; want none of her own messages, nor bob's lossy one for carol", m)
	default:
	}
	// Counted just after the send, so a receiver may be a moment early.
	waitFor(t, 5*time.Second, "media_data_messages_delivered{kind=reliable} reaching 2n+3", func() bool {
		return ts.counter(t, "media_data_messages_delivered", "kind", "reliable") == 2*n+3
	})
}

// TestDataRefusals: an oversized message, a malformed frame and a sender
// without publish_data are refused with an error, and each session goes
// on: the next good message arrives.
func TestDataRefusals(t *testing.T) {
	ts := startServer(t, nil)
	alice := dialData(t, ts, "data", "alice", bothGrants)
	bob := dialData(t, ts, "data", "bob", bothGrants)
	mute := dialData(t, ts, "data", "mute", auth.Grants{Subscribe: true, PublishData: auth.Allow(false)})

	big := bytes.Repeat([]byte{'x'}, 15<<10)
	if err := alice.SendData(false, "", big); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, alice, 5*time.Second, "data_too_large", isCode(signal.CodeDataTooLarge))
	// Beyond the connection's max-message-size the client's own stack
	// refuses: the server never has to take it.
	if err := alice.SendData(false, "", bytes.Repeat([]byte{'x'}, sfu.MaxDataMessage+1)); err == nil {
		t.Errorf("SendData(%d bytes) = nil; want the client's refusal above max-message-size %d", sfu.MaxDataMessage+1, sfu.MaxDataMessage)
	}
	if err := alice.SendDataRaw(false, []byte{7, 0, 0}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, alice, 5*time.Second, "data_invalid", isCode(signal.CodeDataInvalid))
	sendData(t, mute, false, "chat", "not allowed")
	waitEvent(t, mute, 5*time.Second, "not_permitted", isCode(signal.CodeNotPermitted))

	sendData(t, alice, false, "chat", "after")
	for _, c := range []*client.Client{bob, mute} {
		if m := nextData(t, c, 5*time.Second, "message after the refusals"); string(m.Payload) != "after" {
			t.Errorf("next message = %q (from %s); want alice's %q: nothing refused was relayed", m.Payload, m.From, "after")
		}
	}
	// A channel of the client's own making is closed by the server.
	extra, err := alice.Publisher().CreateDataChannel("mine", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the server closes the client's own channel", func() bool {
		return extra.ReadyState() == webrtc.DataChannelStateClosed
	})
	for reason, want := range map[string]int64{"too_large": 1, "invalid": 1, "not_permitted": 1, "unknown_channel": 1} {
		if got := ts.counter(t, "media_data_messages_refused", "reason", reason); got != want {
			t.Errorf("media_data_messages_refused{reason=%s} = %d; want %d", reason, got, want)
		}
	}
}

func isCode(code string) func(*signal.Message) bool {
	return func(m *signal.Message) bool { return m.Type == signal.TypeError && m.Code == code }
}

// TestDataBeforeOpen: messages sent to a participant after it offered
// data but before its channels opened on the server's side (its path is
// cut until then, through a relay) wait and arrive once they open,
// reliable ones in order. The two sides of an association open one after
// the other, so a client may be sent to the moment its own side opened,
// before the server's has: a loaded CI host lost such a participant's
// first messages.
func TestDataBeforeOpen(t *testing.T) {
	ts := startServer(t, nil)
	alice := dialData(t, ts, "data", "alice", bothGrants)
	relay, err := netlab.NewRelay("127.0.0.1:0", ts.srv.media.UDPAddr().String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	relay.Blackhole(true)
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	cut, err := client.NewAPI(func(se *webrtc.SettingEngine) {
		client.LoopbackOnly(se)
		se.SetNet(relay.Divert(n))
	})
	if err != nil {
		t.Fatal(err)
	}
	bob := ts.dialWith(t, ts.token(t, "data", "bob", bothGrants), client.Options{API: cut})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opened := make(chan error, 1)
	go func() { opened <- bob.OpenData(ctx) }()
	waitFor(t, 10*time.Second, "bob's data offer answered", func() bool {
		s := ts.member("data", "bob")
		return s != nil && s.data.offered.Load()
	})

	sendData(t, alice, false, "hello", "first")
	sendData(t, alice, true, "hello", "lossy")
	sendData(t, alice, false, "hello", "second")
	relay.Blackhole(false)
	if err := <-opened; err != nil {
		t.Fatalf("bob: OpenData: %v", err)
	}
	var reliable []string
	lossy := 0
	for len(reliable) < 2 {
		m := nextData(t, bob, 10*time.Second, "bob's messages")
		if m.Lossy {
			lossy++
			continue
		}
		reliable = append(reliable, string(m.Payload))
	}
	if reliable[0] != "first" || reliable[1] != "second" {
		t.Errorf("bob got %q; want [first second]", reliable)
	}
	if lossy == 0 { // unordered: it may come after the reliable ones
		select {
		case <-bob.Data():
			lossy++
		case <-time.After(5 * time.Second):
		}
	}
	if lossy != 1 {
		t.Errorf("bob got %d lossy messages; want 1 (loopback loses none)", lossy)
	}
	if got := ts.counter(t, "media_data_messages_dropped", "", ""); got != 0 {
		t.Errorf("media_data_messages_dropped = %d; want 0", got)
	}
}

// member returns the session of identity in room, or nil.
func (ts *testServer) member(room, identity string) *Session {
	rs := ts.srv.rooms
	rs.mu.Lock()
	r := rs.m[room]
	rs.mu.Unlock()
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.members {
		if s.identity == identity {
			return s
		}
	}
	return nil
}

// TestDataFloodLimited: a participant flooding the room gets only its
// burst and rate through, is told, and another participant's messages
// still arrive in order among the flood.
func TestDataFloodLimited(t *testing.T) {
	const burst = 20
	ts := startServer(t, func(c *Config) { c.DataMessageRate, c.DataMessageBurst = 20, burst })
	flood := dialData(t, ts, "data", "flood", bothGrants)
	calm := dialData(t, ts, "data", "calm", bothGrants)
	bob := dialData(t, ts, "data", "bob", bothGrants)

	start := time.Now()
	const sent, calmEvery = 2000, 200
	for i := range sent {
		sendData(t, flood, false, "spam", fmt.Sprint(i))
		if i%calmEvery == 0 { // calm stays within its own burst
			sendData(t, calm, false, "chat", fmt.Sprint("calm", i/calmEvery))
		}
	}
	waitEvent(t, flood, 5*time.Second, "data_rate_limited", isCode(signal.CodeDataRateLimited))
	sendData(t, calm, false, "chat", "done")

	var fromFlood, fromCalm int
	for {
		m := nextData(t, bob, 10*time.Second, "calm's last message")
		if m.From == "flood" {
			fromFlood++
			continue
		}
		if want := fmt.Sprint("calm", fromCalm); fromCalm < sent/calmEvery && string(m.Payload) != want {
			t.Fatalf("calm's message %d = %q; want %q", fromCalm, m.Payload, want)
		}
		if string(m.Payload) == "done" {
			break
		}
		fromCalm++
	}
	waitFor(t, 10*time.Second, "the server has read every message", func() bool {
		return ts.counter(t, "media_data_messages_received", "", "") == sent+sent/calmEvery+1
	})
	// What the limiter can have let through in the time taken.
	allowed := burst + int(20*time.Since(start).Seconds()) + 1
	passed := sent - int(ts.counter(t, "media_data_messages_refused", "reason", "rate_limited"))
	if passed > allowed || passed < burst || fromFlood > passed {
		t.Errorf("%d of flood's %d messages passed the limiter, bob got %d; want %d to %d, bob no more",
			passed, sent, fromFlood, burst, allowed)
	}
	if fromCalm != sent/calmEvery {
		t.Errorf("bob got %d of calm's %d messages; want all", fromCalm, sent/calmEvery)
	}
}

// TestDataSlowReceiver: a receiver that stops taking messages loses its
// own (counted, and it is told) while another receiver gets every one of
// the same sender's messages in order.
func TestDataSlowReceiver(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.DataMaxBuffered = 64 << 10 })
	alice := dialData(t, ts, "data", "alice", bothGrants)
	slow := dialData(t, ts, "data", "slow", bothGrants) // never reads Data
	carol := dialData(t, ts, "data", "carol", bothGrants)

	// 10 KB messages in lockstep with carol, so her backlog stays one
	// message while slow's fills: its client's queue (256 messages), then
	// its SCTP receive window (1 MiB), then the server's 64 KiB bound.
	payload := bytes.Repeat([]byte{'d'}, 10_000)
	const n = 500
	for i := range n {
		copy(payload, fmt.Sprintf("%05d", i))
		if err := alice.SendData(false, "bulk", payload); err != nil {
			t.Fatal(err)
		}
		m := nextData(t, carol, 5*time.Second, fmt.Sprintf("carol's message %d", i))
		if got := string(m.Payload[:5]); got != fmt.Sprintf("%05d", i) {
			t.Fatalf("carol's message %d is %q; want %05d", i, got, i)
		}
	}
	if got := ts.counter(t, "media_data_messages_dropped", "kind", "reliable"); got == 0 {
		t.Errorf("media_data_messages_dropped{kind=reliable} = 0; want the slow receiver's drops")
	}
	waitEvent(t, slow, 5*time.Second, "data_dropped", isCode(signal.CodeDataDropped))
}
