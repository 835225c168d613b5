package turn

import (
	"net"
	"net/netip"
)

// addrCacheSize bounds the source addresses a batchReader keeps as
// net.Addr values: beyond it (a flood from many sources) it starts over.
const addrCacheSize = 4096

// addrCache turns source addresses into the net.Addr values Pion wants,
// each made once. Its one user is a read loop, so it has no lock.
type addrCache struct {
	m map[netip.AddrPort]*net.UDPAddr
}

func newAddrCache() addrCache { return addrCache{m: make(map[netip.AddrPort]*net.UDPAddr)} }

// get returns ap as a *net.UDPAddr that no one may change.
func (c *addrCache) get(ap netip.AddrPort) net.Addr {
	if a, ok := c.m[ap]; ok {
		return a
	}
	if len(c.m) >= addrCacheSize {
		clear(c.m)
	}
	a := net.UDPAddrFromAddrPort(ap)
	c.m[ap] = a
	return a
}
