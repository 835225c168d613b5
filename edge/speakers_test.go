package edge

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"

	"github.com/media-service/media-service/edge/client"
	"github.com/media-service/media-service/edge/signal"
)

// talker publishes one audio track whose packets carry the level it is
// set to, every 20 ms as Opus does.
type talker struct {
	level atomic.Uint32 // -dBov, 0 loudest, 127 silence
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startTalker(t *testing.T, c *client.Client, level uint8) *talker {
	t.Helper()
	tr, err := client.NewAudioTrack("mic")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	senders, err := c.Publish(ctx, tr)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	id := client.AudioLevelID(senders[0])
	if id == 0 {
		t.Fatal("the server did not negotiate the audio level extension")
	}
	tk := &talker{stop: make(chan struct{})}
	tk.level.Store(uint32(level))
	tk.wg.Add(1)
	go func() {
		defer tk.wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(1); ; seq++ {
			select {
			case <-tk.stop:
				return
			case <-tick.C:
			}
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960},
				Payload: make([]byte, 60)}
			_ = pkt.Header.SetExtension(id, []byte{0x80 | byte(tk.level.Load())})
			_ = tr.WriteRTP(pkt)
		}
	}()
	t.Cleanup(func() { close(tk.stop); tk.wg.Wait() })
	return tk
}

// awaitSpeakers waits for a speakers message on c naming exactly ids, in
// order, and returns when it came.
func awaitSpeakers(t *testing.T, c *client.Client, timeout time.Duration, ids ...string) time.Time {
	t.Helper()
	waitEvent(t, c, timeout, "speakers "+joinIDs(ids), func(m *signal.Message) bool {
		if m.Type != signal.TypeSpeakers || len(m.Speakers) != len(ids) {
			return false
		}
		for i, s := range m.Speakers {
			if s.ID != ids[i] {
				return false
			}
		}
		return true
	})
	return time.Now()
}

func joinIDs(ids []string) string {
	out := "["
	for i, id := range ids {
		if i > 0 {
			out += " "
		}
		out += id
	}
	return out + "]"
}

// TestActiveSpeakers: alice speaks loud while bob is silent, then alice
// falls silent and bob speaks: every member is told, in order, within a
// second of each change, and nothing while the order stays.
func TestActiveSpeakers(t *testing.T) {
	ts := startServer(t, nil)
	alice := ts.dial(t, "talk", "alice")
	bob := ts.dial(t, "talk", "bob")
	carol := ts.dial(t, "talk", "carol") // only listens
	a := startTalker(t, alice, 10)
	b := startTalker(t, bob, 127)

	awaitSpeakers(t, carol, 10*time.Second, alice.ID())
	awaitSpeakers(t, bob, 5*time.Second, alice.ID())

	// Both speak, bob louder: he leads.
	b.level.Store(3)
	awaitSpeakers(t, carol, 5*time.Second, bob.ID(), alice.ID())

	// The switch: alice silent, bob loud. The list must follow within
	// one second by design (two windows); the deadline has a second
	// more for a loaded machine.
	a.level.Store(127)
	switched := time.Now()
	got := awaitSpeakers(t, carol, 2*time.Second, bob.ID())
	t.Logf("speakers followed the switch after %s", got.Sub(switched).Round(time.Millisecond))

	// Nobody speaks: the empty list, once.
	b.level.Store(127)
	awaitSpeakers(t, carol, 2*time.Second)
	if got := carol.Speakers(); len(got) != 0 {
		t.Errorf("carol.Speakers() = %v; want none", got)
	}
	quiet := time.NewTimer(3 * speakerInterval) // rounds in which nothing may be sent
	defer quiet.Stop()
	select {
	case m := <-carol.Events():
		t.Errorf("carol got %s %v while nothing changed; want nothing", m.Type, m.Speakers)
	case <-quiet.C:
	}
}
