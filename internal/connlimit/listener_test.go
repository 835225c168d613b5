package connlimit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// listenLocal is a Listener on 127.0.0.1:0 under lim, closed when the
// test ends.
func listenLocal(t *testing.T, lim Limits) *Listener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(ln, lim)
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, l *Listener) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var local = Bucket(netip.MustParseAddr("127.0.0.1"))

// TestListenerCloseReleasesOnce: closing an accepted connection twice
// (as net/http and a WebSocket both may) gives its slot back once.
func TestListenerCloseReleasesOnce(t *testing.T) {
	var gauge int64
	l := listenLocal(t, Limits{PerAddr: 2, Total: 2, Counted: func(d int64) { gauge += d }})
	for range 3 { // more rounds than the bound: a slot lost or counted twice shows
		client := dial(t, l)
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got := l.Open(); got != 1 || gauge != 1 {
			t.Fatalf("after accept: Open() = %d, gauge %d; want 1 and 1", got, gauge)
		}
		c.Close()
		c.Close()
		client.Close()
		if got, held := l.Open(), l.Held(local); got != 0 || held != 0 || gauge != 0 {
			t.Fatalf("after two Close calls: Open() = %d, Held = %d, gauge %d; want 0, 0, 0", got, held, gauge)
		}
	}
}

// TestListenerRefuses: a connection over either bound is reset at once,
// reported with its reason, and the next one within the bounds is
// accepted.
func TestListenerRefuses(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		want Reason
	}{
		{"per address", Limits{PerAddr: 1, Total: 5}, ReasonPerIP},
		{"in total", Limits{Total: 1}, ReasonTotal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var refused []Reason
			tt.lim.Refused = func(r Reason) { mu.Lock(); refused = append(refused, r); mu.Unlock() }
			l := listenLocal(t, tt.lim)
			dial(t, l)
			held, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			over := dial(t, l)
			accepted := make(chan net.Conn)
			go func() {
				c, _ := l.Accept() // resets over, then waits for the next
				accepted <- c
			}()
			over.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := over.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
				t.Errorf("read on the connection over the bound = %v; want a reset", err)
			}
			held.Close()
			dial(t, l)
			c := <-accepted
			if c == nil {
				t.Fatal("Accept after a slot came back failed")
			}
			c.Close()
			mu.Lock()
			defer mu.Unlock()
			if len(refused) != 1 || refused[0] != tt.want {
				t.Errorf("refusals = %v; want [%s]", refused, tt.want)
			}
		})
	}
}
