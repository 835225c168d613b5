// Package netlab makes real network conditions on this machine for tests
// (and cmd/mediaload) and removes them again: a network namespace joined
// to the root namespace by a veth pair, a link that can be cut and
// rate-capped with tc tbf, Go code and commands (Chromium) that run behind
// that link, and a UDP impairment relay for what tbf cannot do (delay,
// loss, a blackhole, a changing source port).
//
// A subscriber behind a capped or cut link, as root:
//
//	h := netlab.NewHost(t, "sub")            // skips when not root (fails under CI=true)
//	svc := servicetest.Start(t, bin, append(append(env, servicetest.LoopbackEnv...), h.ServiceEnv()...))
//	api, _ := client.NewAPI(h.ConfigureICE)   // Pion's sockets are opened inside
//	c, _ := client.Dial(ctx, "ws://"+svc.HTTPAddr+"/v1/rtc", tok, client.Options{API: api,
//		Dialer: &websocket.Dialer{NetDialContext: h.DialContext}, ICEServers: []webrtc.ICEServer{}})
//	h.Cap(400, 0, 0)                          // its downlink: 400 kbit/s
//	h.Down(); h.Up()                          // cut and restore the path
//
// The server must listen on and advertise h.HostAddr (ServiceEnv does
// that for the binary): inside the namespace 127.0.0.1 is the namespace's
// own loopback, which is also why such a client gets no TURN servers.
// Chromium runs inside with chromedp.ModifyCmdFunc(h.Wrap).
//
// One client behind the relay, the others direct, on loopback:
//
//	mux, _ := svc.Find("media_engine_started")     // the server's ICE mux address
//	r, _ := netlab.NewRelay("127.0.0.1:0", mux["udp"].(string), seed)
//	n, _ := stdnet.NewNet()
//	api, _ := client.NewAPI(func(se *webrtc.SettingEngine) { client.LoopbackOnly(se); se.SetNet(r.Divert(n)) })
//	r.Impair(netlab.Impairment{}, netlab.Impairment{Delay: 80 * time.Millisecond, Loss: 0.02})
//	r.Blackhole(true); r.Rebind()            // a dead path; a new source port
//
// The kernel here has no netem, so delay and random loss come from Relay.
// Every namespace is named netlab-<pid>-<n>, and its veth pair takes a
// free /30 of 10.201.0.0/16, so parallel test binaries do not clash; New
// removes the namespaces of netlab processes that are gone.
//
// The veth's root-namespace end, with its 10.201 address, is an interface
// of the whole machine while the lab lasts: every ICE agent that gathers
// meanwhile (Chromium's, a server's on a wildcard address, Pion clients')
// offers it, may select a pair through it, and loses that pair when the
// lab removes it; media stops at once and ICE fails 15 s later. So no
// other package's WebRTC tests may run beside a lab: the test command runs
// packages one at a time (go test -p 1). Inside a package, tests that
// make a lab do not call t.Parallel beside WebRTC tests.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/transport/v5"
	"golang.org/x/sys/unix"

	"github.com/media-service/media-service/internal/testenv"
)

// nsPrefix starts every namespace netlab makes; cleanup finds leftovers by it.
const nsPrefix = "netlab-"

// netnsDir is where `ip netns add` pins named namespaces.
const netnsDir = "/var/run/netns"

// slots is how many /30 subnets 10.201.0.0/16 holds: one per veth pair.
const slots = 1 << 14

// seq numbers the namespaces of this process.
var seq atomic.Int64

// Host is a network namespace joined to the root namespace by a veth pair:
// HostDev (address HostAddr) in the root namespace, NSDev (address NSAddr)
// inside, loopback up inside. Its methods are safe for concurrent use.
// Close deletes the namespace, which deletes the veth pair and its qdiscs.
type Host struct {
	// Name is the namespace's name, for `ip netns exec`.
	Name string
	// HostDev and NSDev are the veth ends in the root namespace and in
	// the namespace.
	HostDev, NSDev string
	// HostAddr is the root side's address (what a server advertises to
	// the namespace); NSAddr the namespace side's. They share a /30.
	HostAddr, NSAddr netip.Addr

	nsFile    *os.File // the namespace, for setns; open until Close
	net       transport.Net
	closeOnce sync.Once
	closeErr  error
}

// NewHost is New for a test: it ends the test through testenv.Missing when
// the machine cannot make namespaces (not root, no ip or tc), fails it on
// any other error, and closes the host when the test ends, failed or not.
func NewHost(t testing.TB, name string) *Host {
	t.Helper()
	if err := Available(); err != nil {
		testenv.Missing(t, "netlab: %v", err)
	}
	h, err := New(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("netlab: close %s: %v", h.Name, err)
		}
	})
	return h
}

// Available reports why this machine cannot make namespaces, or nil: it
// takes root (CI runs as root) and iproute2's ip and tc.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root")
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (install iproute2)", tool)
		}
	}
	return nil
}

// New makes a namespace with a veth pair on a free /30 of 10.201.0.0/16.
// name only labels it in errors and listings. The caller must Close it.
func New(ctx context.Context, name string) (*Host, error) {
	removeLeftovers(ctx)
	h := &Host{Name: fmt.Sprintf("%s%d-%d-%s", nsPrefix, os.Getpid(), seq.Add(1), label(name))}
	if err := ip(ctx, "netns", "add", h.Name); err != nil {
		return nil, err
	}
	if err := h.setup(ctx); err != nil {
		h.Close()
		return nil, fmt.Errorf("netlab: new %s: %w", h.Name, err)
	}
	return h, nil
}

func (h *Host) setup(ctx context.Context) error {
	if err := h.addVeth(ctx); err != nil {
		return err
	}
	prefix := func(a netip.Addr) string { return netip.PrefixFrom(a, 30).String() }
	for _, args := range [][]string{
		{"addr", "add", prefix(h.HostAddr), "dev", h.HostDev},
		{"link", "set", h.HostDev, "up"},
		{"-n", h.Name, "addr", "add", prefix(h.NSAddr), "dev", h.NSDev},
		{"-n", h.Name, "link", "set", h.NSDev, "up"},
		{"-n", h.Name, "link", "set", "lo", "up"},
	} {
		if err := ip(ctx, args...); err != nil {
			return err
		}
	}
	f, err := os.Open(netnsDir + "/" + h.Name)
	if err != nil {
		return fmt.Errorf("open namespace: %w", err)
	}
	h.nsFile = f
	return h.Do(func() error {
		n, err := newNet(h)
		h.net = n
		return err
	})
}

// addVeth creates the veth pair on the first free slot from a random
// start. The root-side link name is the slot's lock: `ip link add` fails
// when another process holds it, and then the next slot is tried.
func (h *Host) addVeth(ctx context.Context) error {
	start := rand.IntN(slots)
	for i := range slots {
		slot := (start + i) % slots
		hostAddr, nsAddr := slotAddrs(slot)
		if inUse(hostAddr) {
			continue
		}
		hostDev, nsDev := fmt.Sprintf("nl%dh", slot), fmt.Sprintf("nl%dn", slot)
		err := ip(ctx, "link", "add", hostDev, "type", "veth", "peer", "name", nsDev, "netns", h.Name)
		if err != nil && strings.Contains(err.Error(), "File exists") {
			continue
		}
		if err != nil {
			return err
		}
		h.HostDev, h.NSDev, h.HostAddr, h.NSAddr = hostDev, nsDev, hostAddr, nsAddr
		return nil
	}
	return errors.New("no free /30 in 10.201.0.0/16")
}

// slotAddrs are the two usable addresses of slot's /30 in 10.201.0.0/16.
func slotAddrs(slot int) (host, ns netip.Addr) {
	b := [4]byte{10, 201, byte(slot >> 6), byte(slot&63) << 2}
	b[3]++
	host = netip.AddrFrom4(b)
	return host, host.Next()
}

// inUse reports whether an interface of the root namespace already has an
// address in addr's /30 (a network of the machine's own, not ours).
func inUse(addr netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	want := netip.PrefixFrom(addr, 30).Masked()
	for _, a := range addrs {
		if p, ok := a.(*net.IPNet); ok {
			if pa, ok := netip.AddrFromSlice(p.IP); ok && want.Contains(pa.Unmap()) {
				return true
			}
		}
	}
	return false
}

// ServiceEnv is the environment that makes a media-service reachable from
// the namespace: its HTTP listener and ICE muxes on HostAddr, the address
// it then advertises. Append it after servicetest.LoopbackEnv.
func (h *Host) ServiceEnv() []string {
	a := h.HostAddr.String()
	return []string{"MEDIA_HTTP_HOST=" + a, "MEDIA_ICE_BIND_ADDR=" + a, "MEDIA_ICE_TCP_BIND_ADDR=" + a}
}

// Close deletes the veth pair (and its qdiscs) and the namespace. It is
// idempotent.
func (h *Host) Close() error {
	h.closeOnce.Do(func() {
		if h.nsFile != nil {
			h.nsFile.Close()
		}
		// The kernel deletes a namespace's devices later, in the
		// background; deleting the veth first makes it gone on return,
		// so its slot and name are free for the next Host.
		if h.HostDev != "" {
			if err := ip(context.Background(), "link", "del", h.HostDev); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
				h.closeErr = err
			}
		}
		if err := ip(context.Background(), "netns", "del", h.Name); err != nil {
			h.closeErr = err
		}
	})
	return h.closeErr
}

var leftover = regexp.MustCompile(`^` + nsPrefix + `(\d+)-`)

// removeLeftovers deletes the namespaces of netlab processes that have
// ended without closing them (a killed test binary). A namespace of a
// live process is left alone, so parallel test binaries do not clash.
func removeLeftovers(ctx context.Context) {
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		m := leftover.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		ip(ctx, "netns", "del", e.Name()) // another cleaner may have won
	}
}

// label keeps the characters of name a namespace name allows, and few.
func label(name string) string {
	b := []byte(name)
	out := b[:0]
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			out = append(out, c)
		}
	}
	if len(out) > 24 {
		out = out[:24]
	}
	return string(out)
}

// ip runs iproute2's ip with args.
func ip(ctx context.Context, args ...string) error { return run(ctx, "ip", args...) }

func run(ctx context.Context, tool string, args ...string) error {
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netlab: %s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
