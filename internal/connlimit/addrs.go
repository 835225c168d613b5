// Package connlimit bounds connections and sessions per client address
// and in total, with no knowledge of what they carry. Addrs counts what
// each address holds; Listener puts a TCP listener under a per-address
// and a total bound, in the manner of golang.org/x/net/netutil's
// LimitListener, except that a connection over a bound is reset at once
// instead of waiting for a slot.
package connlimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// Addrs bounds what one client address holds at once (sessions,
// connections), so a single host cannot take a whole instance's share.
// An IPv6 client counts by its /64, the block one host or one home
// network is given, so rotating through its own addresses gains nothing.
// A max of 0 or less turns the bound off: Acquire always succeeds and
// nothing is counted. Its methods are safe for concurrent use.
type Addrs struct {
	max int

	mu sync.Mutex // guards n
	n  map[netip.Prefix]int
}

// NewAddrs returns a bound of max per address bucket; 0 is no bound.
func NewAddrs(max int) *Addrs {
	return &Addrs{max: max, n: make(map[netip.Prefix]int)}
}

// Acquire counts one more for bucket k; false when k is at the bound.
func (a *Addrs) Acquire(k netip.Prefix) bool {
	if a.max <= 0 {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[k] >= a.max {
		return false
	}
	a.n[k]++
	return true
}

// Release gives back one of k's slots.
func (a *Addrs) Release(k netip.Prefix) {
	if a.max <= 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n[k]--; a.n[k] <= 0 {
		delete(a.n, k)
	}
}

// ReleaseWhenDone gives back one of k's slots once done is closed (the
// holder's teardown has finished). It starts a goroutine that waits for
// done: done must be closed eventually.
func (a *Addrs) ReleaseWhenDone(k netip.Prefix, done <-chan struct{}) {
	if a.max <= 0 {
		return
	}
	go func() {
		<-done
		a.Release(k)
	}()
}

// Held is how many slots bucket k holds now.
func (a *Addrs) Held(k netip.Prefix) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[k]
}

// Bucket is the bucket an address counts in: an IPv4 address alone (an
// IPv4-mapped IPv6 address as its IPv4 form), an IPv6 address by its
// /64. An invalid address is the zero Prefix: one shared bucket.
func Bucket(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// RequestBucket is the bucket r's client address counts in. It is the
// TCP peer's, unless trustedHeader is set and its first field parses as
// an address: behind a proxy the peer is the proxy, and only the proxy's
// header (Fly-Client-IP, X-Forwarded-For) names the client. Name a
// header only behind a proxy that overwrites it: a client can send any
// value itself.
func RequestBucket(r *http.Request, trustedHeader string) netip.Prefix {
	var ip netip.Addr
	if trustedHeader != "" {
		ip, _ = netip.ParseAddr(strings.TrimSpace(firstField(r.Header.Get(trustedHeader))))
	}
	if !ip.IsValid() {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		ip, _ = netip.ParseAddr(host)
	}
	return Bucket(ip)
}

// firstField is the first comma-separated field of a header value (an
// X-Forwarded-For list starts with the client).
func firstField(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return first
}
