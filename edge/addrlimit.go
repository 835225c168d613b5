package edge

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// addrLimit bounds the sessions one client address holds at once, so a
// single host (or a script in dev mode, where anyone can mint tokens)
// cannot take the whole instance's MaxSessions. An IPv6 client counts by
// its /64, the block one host or one home network is given, so rotating
// through its own addresses gains nothing.
//
// A zero max turns the bound off.
type addrLimit struct {
	max    int
	header string // trusted header that carries the client address, or ""

	mu sync.Mutex // guards n
	n  map[netip.Prefix]int
}

func newAddrLimit(max int, header string) *addrLimit {
	return &addrLimit{max: max, header: header, n: make(map[netip.Prefix]int)}
}

// key is the bucket the request's client address counts in. It is the
// TCP peer, unless a header is configured and parses: behind a proxy the
// peer is the proxy, and only the proxy's header names the client.
func (l *addrLimit) key(r *http.Request) netip.Prefix {
	var ip netip.Addr
	if l.header != "" {
		ip, _ = netip.ParseAddr(strings.TrimSpace(firstField(r.Header.Get(l.header))))
	}
	if !ip.IsValid() {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		ip, _ = netip.ParseAddr(host)
	}
	return addrBucket(ip)
}

// addrBucket is the bucket an address counts in: an IPv4 address alone
// (an IPv4-mapped IPv6 address as its IPv4 form), an IPv6 address by its
// /64. An invalid address is the zero Prefix: one shared bucket.
func addrBucket(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// firstField is the first comma-separated field of a header value (an
// X-Forwarded-For list starts with the client).
func firstField(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return first
}

// acquire counts one more session for k; false when k is at the bound.
func (l *addrLimit) acquire(k netip.Prefix) bool {
	if l.max <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[k] >= l.max {
		return false
	}
	l.n[k]++
	return true
}

// release gives back one session of k.
func (l *addrLimit) release(k netip.Prefix) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[k]--; l.n[k] <= 0 {
		delete(l.n, k)
	}
}

// releaseWhenDone gives back k's session once done is closed: the
// session's teardown has finished.
func (l *addrLimit) releaseWhenDone(k netip.Prefix, done <-chan struct{}) {
	if l.max <= 0 {
		return
	}
	go func() {
		<-done
		l.release(k)
	}()
}
