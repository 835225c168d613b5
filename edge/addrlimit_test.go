package edge

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestAddrLimitKey(t *testing.T) {
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
			l := newAddrLimit(1, tt.header)
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			r.Header.Set("Fly-Client-IP", tt.value)
			r.Header.Set("X-Forwarded-For", tt.value)
			if got := l.key(r); got.String() != tt.want {
				t.Errorf("key(%s, %s=%q) = %s; want %s", tt.remote, tt.header, tt.value, got, tt.want)
			}
		})
	}
}

// FuzzAddrLimit feeds the client address sources (the peer address and
// a trusted proxy header) to the per-address bound: no panic, a valid
// address always maps to a prefix that contains it, and acquire and
// release balance out to an empty table.
func FuzzAddrLimit(f *testing.F) {
	f.Add("198.51.100.7:5000", "203.0.113.9, 10.0.0.1")
	f.Add("[2001:db8::1]:443", "")
	f.Add("junk", "::ffff:1.2.3.4")
	f.Fuzz(func(t *testing.T, remote, header string) {
		l := newAddrLimit(2, "X-Client")
		r := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Client": {header}}}
		k := l.key(r)
		if ip, err := netip.ParseAddr(header); err == nil && ip.Zone() == "" && !k.Contains(ip.Unmap()) {
			t.Fatalf("key(header %q) = %s; want a prefix holding it", header, k)
		}
		if got := [3]bool{l.acquire(k), l.acquire(k), l.acquire(k)}; got != [3]bool{true, true, false} {
			t.Fatalf("acquire(%s) three times did not stop at 2", k)
		}
		l.release(k)
		l.release(k)
		if len(l.n) != 0 {
			t.Fatalf("table after balanced release = %v; want empty", l.n)
		}
	})
}
