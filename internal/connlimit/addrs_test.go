package connlimit

import (
	"net/http"
	"net/netip"
	"runtime"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them (see
// Addrs.ReleaseWhenDone).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRequestBucket(t *testing.T) {
	tests := []struct {
		name, header, value, remote, want string
	}{
		{"peer IPv4", "", "", "198.51.100.7:5000", "198.51.100.7/32"},
		{"peer IPv6 by /64", "", "", "[2001:db8:1:2:3:4:5:6]:5000", "2001:db8:1:2::/64"},
		{"mapped IPv4", "", "", "[::ffff:198.51.100.7]:5000", "198.51.100.7/32"},
		{"untrusted header ignored", "", "203.0.113.9", "198.51.100.7:5000", "198.51.100.7/32"},
		{"trusted header", "Fly-Client-IP", "203.0.113.9", "10.0.0.1:5000", "203.0.113.9/32"},
		{"trusted header, list", "X-Forwarded-For", " 203.0.113.9 , 10.0.0.1", "10.0.0.1:5000", "203.0.113.9/32"},
		{"trusted header, junk", "Fly-Client-IP", "not-an-ip", "10.0.0.1:5000", "10.0.0.1/32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			r.Header.Set("Fly-Client-IP", tt.value)
			r.Header.Set("X-Forwarded-For", tt.value)
			if got := RequestBucket(r, tt.header); got.String() != tt.want {
				t.Errorf("RequestBucket(%s, %s=%q) = %s; want %s", tt.remote, tt.header, tt.value, got, tt.want)
			}
		})
	}
}

// TestAddrsReleaseWhenDone: a slot handed to ReleaseWhenDone comes back
// once done is closed, and not before.
func TestAddrsReleaseWhenDone(t *testing.T) {
	a := NewAddrs(1)
	k := Bucket(netip.MustParseAddr("198.51.100.7"))
	if !a.Acquire(k) {
		t.Fatal("Acquire on an empty bucket = false; want true")
	}
	done := make(chan struct{})
	a.ReleaseWhenDone(k, done)
	if a.Acquire(k) {
		t.Fatal("Acquire before done = true; want false (the bound is 1)")
	}
	close(done)
	for !a.Acquire(k) { // the release is asynchronous; a lost release hangs until the test timeout
		runtime.Gosched()
	}
	if got := a.Held(k); got != 1 {
		t.Errorf("Held after re-acquire = %d; want 1", got)
	}
}

// TestAddrsOff: a bound of 0 admits everything and counts nothing.
func TestAddrsOff(t *testing.T) {
	a := NewAddrs(0)
	k := Bucket(netip.MustParseAddr("2001:db8::1"))
	for range 1000 {
		if !a.Acquire(k) {
			t.Fatal("Acquire with no bound = false; want true")
		}
	}
	if got := a.Held(k); got != 0 {
		t.Errorf("Held with no bound = %d; want 0", got)
	}
}
