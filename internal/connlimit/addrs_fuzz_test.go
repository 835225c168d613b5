package connlimit

import (
	"net/http"
	"net/netip"
	"testing"
)

// FuzzAddrs feeds the client address sources (the peer address and a
// trusted proxy header) to the per-address bound: no panic, a valid
// address always maps to a prefix that contains it, and acquire and
// release balance out to an empty table.
func FuzzAddrs(f *testing.F) {
	f.Add("198.51.100.7:5000", "203.0.113.9, 10.0.0.1")
	f.Add("[2001:db8::1]:443", "")
	f.Add("junk", "::ffff:1.2.3.4")
	f.Fuzz(func(t *testing.T, remote, header string) {
		a := NewAddrs(2)
		r := &http.Request{RemoteAddr: remote, Header: http.Header{"X-Client": {header}}}
		k := RequestBucket(r, "X-Client")
		if ip, err := netip.ParseAddr(header); err == nil && ip.Zone() == "" && !k.Contains(ip.Unmap()) {
			t.Fatalf("RequestBucket(header %q) = %s; want a prefix holding it", header, k)
		}
		for i, want := range []bool{true, true, false} {
			if got := a.Acquire(k); got != want {
				t.Fatalf("Acquire(%s) #%d = %v; want %v (the bound is 2)", k, i+1, got, want)
			}
		}
		a.Release(k)
		a.Release(k)
		if len(a.n) != 0 {
			t.Fatalf("table after balanced release = %v; want empty", a.n)
		}
	})
}
