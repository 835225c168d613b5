package web_test

import (
	"testing"
	"time"
)

// A chat message typed on one page reaches the other page over the data
// channel, named with its sender's identity, and the sender sees its own.
func TestBrowserChatOverDataChannel(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t)
	alice := b.open(t, "alice", joinURL(serviceURL(svc), "chat", "alice"))
	bob := b.open(t, "bob", joinURL(serviceURL(svc), "chat", "bob"))
	checkRoom(t, []*page{alice, bob}, []string{"alice", "bob"})
	alice.waitFor("open the data channel", mediaTimeout, func(snapshot) bool {
		var open bool
		alice.value(`mediaClient.session?.data?.reliable.readyState === "open"`, &open)
		return open
	})

	alice.typeInto("chat-input", "hello from alice")
	alice.click("chat-send")
	s := bob.waitFor("show alice's chat message", 15*time.Second, func(s snapshot) bool { return len(s.Chat) > 0 })
	if c := s.Chat[0]; len(s.Chat) != 1 || c.From != "alice" || c.Text != "hello from alice" || c.Self {
		t.Errorf("bob's chat = %+v; want one message from alice: hello from alice", s.Chat)
	}
	s = alice.snapshot()
	if len(s.Chat) != 1 || !s.Chat[0].Self || s.Chat[0].Text != "hello from alice" {
		t.Errorf("alice's chat = %+v; want her own message, once", s.Chat)
	}
	if len(s.Errors) > 0 {
		t.Errorf("alice: page showed errors %v; want none", s.Errors)
	}
}
