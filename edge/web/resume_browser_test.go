package web_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// cutter is a TCP relay in front of the service that can reset every
// connection through it at once, as a proxy restart or a NAT that forgot
// its mappings does to a browser's signaling.
type cutter struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []*net.TCPConn
	wg     sync.WaitGroup
}

func newCutter(t *testing.T, target string) *cutter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{l: l, target: target}
	c.wg.Add(1)
	go c.serve()
	t.Cleanup(func() { l.Close(); c.reset(); c.wg.Wait() })
	return c
}

func (c *cutter) url() string { return "http://" + c.l.Addr().String() }

func (c *cutter) serve() {
	defer c.wg.Done()
	for {
		in, err := c.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", c.target)
		if err != nil {
			in.Close()
			continue
		}
		c.mu.Lock()
		c.conns = append(c.conns, in.(*net.TCPConn), out.(*net.TCPConn))
		c.mu.Unlock()
		c.wg.Add(2)
		go c.pipe(in, out)
		go c.pipe(out, in)
	}
}

func (c *cutter) pipe(dst, src net.Conn) {
	defer c.wg.Done()
	_, err := io.Copy(dst, src)
	if err == nil || errors.Is(err, net.ErrClosed) {
		dst.(*net.TCPConn).CloseWrite()
	}
}

// reset resets every connection through the relay, both sides.
func (c *cutter) reset() {
	c.mu.Lock()
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	for _, tc := range conns {
		_ = tc.SetLinger(0)
		tc.Close()
	}
}

// TestBrowserResumesAfterSignalingReset: the signaling connections of two
// pages are reset while their media flows. Each page resumes on its own
// as the same participant: no tile goes away, no error shows, and video
// keeps playing.
func TestBrowserResumesAfterSignalingReset(t *testing.T) {
	b := newBrowser(t)
	svc := startService(t, "MEDIA_RESUME_GRACE=15s")
	front := newCutter(t, svc.HTTPAddr)
	names := []string{"alice", "bob"}
	pages := []*page{b.open(t, "alice", joinURL(front.url(), "resume", "alice")), b.open(t, "bob", joinURL(front.url(), "resume", "bob"))}
	checkRoom(t, pages, names)
	var before []snapshot
	for _, p := range pages {
		before = append(before, p.snapshot())
	}

	front.reset()
	for i, p := range pages {
		s := p.waitFor("resume", 20*time.Second, func(s snapshot) bool { return s.Resumes >= 1 && s.State == "connected" })
		if s.Self == nil || s.Self.ID != before[i].Self.ID || s.Reconnects != 0 {
			t.Errorf("%s after the reset: self %+v, %d reconnects; want %s and none", p.name, s.Self, s.Reconnects, before[i].Self.ID)
		}
		remote, _ := s.remote(others(names, i)[0])
		was, _ := before[i].remote(others(names, i)[0])
		if remote.ID != was.ID || len(s.Tiles) != 2 || len(s.Errors) != 0 {
			t.Errorf("%s after the reset: %s; want the same two tiles and no error", p.name, s)
		}
		waitReceiving(p, others(names, i)...)
	}
}
