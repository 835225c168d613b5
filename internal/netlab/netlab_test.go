package netlab

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// udpPair is a socket on the root side (HostAddr) and one in the
// namespace (NSAddr), to send across the veth in both directions.
func udpPair(t *testing.T, h *Host) (root, ns net.PacketConn) {
	t.Helper()
	root, err := net.ListenPacket("udp4", net.JoinHostPort(h.HostAddr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	ns, err = h.ListenPacket("udp4", net.JoinHostPort(h.NSAddr.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return root, ns
}

// reaches reports whether a datagram from `from` arrives at `to` within
// `within`, sending one every 50 ms meanwhile (a send into a link that is
// down may fail: that is "does not reach" too).
func reaches(from, to net.PacketConn, within time.Duration) bool {
	deadline := time.Now().Add(within)
	buf := make([]byte, 64)
	for time.Now().Before(deadline) {
		from.WriteTo([]byte("ping"), to.LocalAddr())
		to.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, addr, err := to.ReadFrom(buf); err == nil && string(buf[:n]) == "ping" &&
			addr.(*net.UDPAddr).IP.Equal(from.LocalAddr().(*net.UDPAddr).IP) {
			return true
		}
	}
	return false
}

// TestHostPath: a datagram crosses the veth both ways with the veth
// addresses as sources; Down stops it, Up lets it through again.
func TestHostPath(t *testing.T) {
	h := NewHost(t, t.Name())
	root, ns := udpPair(t, h)
	if !reaches(ns, root, 10*time.Second) || !reaches(root, ns, 10*time.Second) {
		t.Fatalf("no datagram between %s and %s", h.HostAddr, h.NSAddr)
	}
	if err := h.Down(); err != nil {
		t.Fatal(err)
	}
	if reaches(ns, root, 500*time.Millisecond) || reaches(root, ns, 500*time.Millisecond) {
		t.Fatal("a datagram crossed a link that is down")
	}
	if err := h.Up(); err != nil {
		t.Fatal(err)
	}
	if !reaches(ns, root, 10*time.Second) || !reaches(root, ns, 10*time.Second) {
		t.Fatal("no datagram after Up")
	}
}

// TestDoIsInside: code in Do sees the namespace's interfaces (its veth
// end, not the root's), and the calling goroutine stays outside.
func TestDoIsInside(t *testing.T) {
	h := NewHost(t, t.Name())
	var inside []string
	if err := h.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			inside = append(inside, i.Name)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !contains(inside, h.NSDev) || contains(inside, h.HostDev) {
		t.Errorf("interfaces inside = %v; want %s and not %s", inside, h.NSDev, h.HostDev)
	}
	if _, err := net.InterfaceByName(h.HostDev); err != nil {
		t.Errorf("outside after Do: %v", err)
	}
	want := errors.New("from inside")
	if err := h.Do(func() error { return want }); err != want {
		t.Errorf("Do(fn) = %v; want fn's error", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestHostsDoNotClash: two hosts get different subnets and devices, and
// Close removes the namespace and both veth ends.
func TestHostsDoNotClash(t *testing.T) {
	a, b := NewHost(t, "a"), NewHost(t, "b")
	if netip.PrefixFrom(a.HostAddr, 30).Masked() == netip.PrefixFrom(b.HostAddr, 30).Masked() || a.HostDev == b.HostDev {
		t.Fatalf("two hosts share %s/%s", a.HostAddr, a.HostDev)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(netnsDir + "/" + a.Name); !os.IsNotExist(err) {
		t.Errorf("namespace %s after Close: %v", a.Name, err)
	}
	if _, err := net.InterfaceByName(a.HostDev); err == nil {
		t.Errorf("veth %s still there after Close", a.HostDev)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
}

// TestLeftoversRemoved: a namespace of a process that has ended is
// removed by the next New; one of a live process is not.
func TestLeftoversRemoved(t *testing.T) {
	if Available() != nil {
		NewHost(t, "skip") // skips or fails the way every test here does
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := nsPrefix + strconv.Itoa(dead.Process.Pid) + "-1-stale"
	if err := ip(context.Background(), "netns", "add", stale); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ip(context.Background(), "netns", "del", stale) })
	live := NewHost(t, "live")
	NewHost(t, "next")
	if _, err := os.Stat(netnsDir + "/" + stale); !os.IsNotExist(err) {
		t.Errorf("leftover %s still there: %v", stale, err)
	}
	if _, err := os.Stat(netnsDir + "/" + live.Name); err != nil {
		t.Errorf("live namespace %s removed: %v", live.Name, err)
	}
}

// TestCap: with a 400 kbit/s tbf on the downlink, a sender far above it
// is received at no more than the cap (plus the bucket); CapUplink caps
// the other direction alone; Uncap lifts both.
func TestCap(t *testing.T) {
	h := NewHost(t, t.Name())
	root, ns := udpPair(t, h)
	if err := h.Cap(400, 0, 0); err != nil {
		t.Fatal(err)
	}
	got := blast(t, root, ns, 2*time.Second)
	const limit = 400_000/8*2 + defaultBurst // 2 s at the cap, plus one bucket
	if got == 0 || got*100 > limit*105 {
		t.Errorf("received %d bytes in 2 s through a 400 kbit/s cap; want 1 to %d", got, limit)
	}
	if err := h.Uncap(); err != nil {
		t.Fatal(err)
	}
	if err := h.CapUplink(400, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := blast(t, ns, root, 2*time.Second); got == 0 || got*100 > limit*105 {
		t.Errorf("received %d bytes in 2 s through a 400 kbit/s uplink cap; want 1 to %d", got, limit)
	}
	if got := blast(t, root, ns, 2*time.Second); got < 2*limit {
		t.Errorf("received %d bytes in 2 s downlink with only the uplink capped; want over %d", got, 2*limit)
	}
	if err := h.Uncap(); err != nil {
		t.Fatal(err)
	}
	if got := blast(t, root, ns, 2*time.Second); got < 2*limit {
		t.Errorf("received %d bytes in 2 s without a cap; want over %d", got, 2*limit)
	}
	if err := h.Uncap(); err != nil {
		t.Errorf("Uncap without a cap = %v; want nil", err)
	}
	if err := h.Cap(0, 0, 0); err == nil {
		t.Error("Cap(0) = nil; want an error")
	}
}

// blast sends 1000-byte datagrams from `from` to `to` for d, paced at
// about 4 Mbit/s, and returns the bytes `to` received meanwhile.
func blast(t *testing.T, from, to net.PacketConn, d time.Duration) int {
	t.Helper()
	done := make(chan int)
	go func() {
		total := 0
		buf := make([]byte, 2048)
		to.SetReadDeadline(time.Now().Add(d + 200*time.Millisecond))
		for {
			n, _, err := to.ReadFrom(buf)
			if err != nil {
				done <- total
				return
			}
			total += n
		}
	}()
	pkt := make([]byte, 1000)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); <-tick.C {
		from.WriteTo(pkt, to.LocalAddr())
	}
	return <-done
}

// TestCommandInside: a command run through Command sees the namespace's
// veth end and not the root's.
func TestCommandInside(t *testing.T) {
	h := NewHost(t, t.Name())
	out, err := h.Command(context.Background(), "ip", "-br", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("ip link inside: %v: %s", err, out)
	}
	if s := string(out); !strings.Contains(s, h.NSDev) || strings.Contains(s, h.HostDev) {
		t.Errorf("links inside:\n%s\nwant %s and not %s", s, h.NSDev, h.HostDev)
	}
}

// TestParallelHosts: hosts made at once, as parallel tests do, all work
// and get subnets of their own.
func TestParallelHosts(t *testing.T) {
	seen := make(chan netip.Addr, 6)
	for i := range 6 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			h := NewHost(t, "par")
			root, ns := udpPair(t, h)
			if !reaches(ns, root, 10*time.Second) {
				t.Errorf("no datagram from %s to %s", h.NSAddr, h.HostAddr)
			}
			seen <- h.HostAddr
		})
	}
	t.Cleanup(func() {
		close(seen)
		addrs := map[netip.Addr]bool{}
		for a := range seen {
			if addrs[a] {
				t.Errorf("two hosts on %s", a)
			}
			addrs[a] = true
		}
	})
}
