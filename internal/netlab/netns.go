package netlab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
	"golang.org/x/sys/unix"
)

// Do runs fn inside the namespace, on an OS thread of its own, and
// returns its error. A socket fn opens stays in the namespace for its
// whole life, wherever it is used afterwards: the namespace is the
// socket's, not the thread's. fn must not start goroutines that open
// sockets: they would run on other threads, in the root namespace.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked, and so dies with this goroutine,
		// unless it is back in its own namespace: a thread left in ours
		// must never run another goroutine.
		runtime.LockOSThread()
		errc <- h.enter(fn)
	}()
	return <-errc
}

// enter switches the locked thread into the namespace, runs fn and
// switches back, unlocking the thread only when that succeeded.
func (h *Host) enter(fn func() error) error {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return fmt.Errorf("netlab: open own namespace: %w", err)
	}
	defer self.Close()
	if err := unix.Setns(int(h.nsFile.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netlab: enter %s: %w", h.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netlab: leave %s: %w", h.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// DialContext dials from inside the namespace: give it to a
// websocket.Dialer's NetDialContext or an http.Transport's DialContext.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a packet socket inside the namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := h.Do(func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Net is a Pion transport.Net whose sockets are opened inside the
// namespace and whose interfaces are the namespace's, for
// webrtc.SettingEngine.SetNet (ConfigureICE does that).
func (h *Host) Net() transport.Net { return h.net }

// ConfigureICE makes a Pion SettingEngine gather and connect from inside
// the namespace, on NSAddr over UDP only: pass it to client.NewAPI.
func (h *Host) ConfigureICE(se *webrtc.SettingEngine) {
	se.SetNet(h.net)
	se.SetIncludeLoopbackCandidate(false)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	addr := h.NSAddr
	se.SetIPFilter(func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		return ok && a.Unmap() == addr
	})
}

// Command is a command that runs inside the namespace (ip netns exec).
// It is killed when ctx ends.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	h.Wrap(cmd)
	return cmd
}

// Wrap makes a command that has not started yet run inside the namespace,
// through `ip netns exec`, which keeps its arguments, environment and
// extra files (chromedp's DevTools pipe), and has it killed if this
// process dies. For Chromium driven by chromedp:
//
//	chromedp.NewExecAllocator(ctx, append(flags, chromedp.ModifyCmdFunc(h.Wrap))...)
//
// Inside, 127.0.0.1 is the namespace's loopback: point the page at
// HostAddr, and since that is not a secure origin, pass Chromium
// --unsafely-treat-insecure-origin-as-secure=http://HostAddr:port for
// getUserMedia.
func (h *Host) Wrap(cmd *exec.Cmd) {
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		cmd.Err = fmt.Errorf("netlab: %w", err)
		return
	}
	cmd.Args = append([]string{ipPath, "netns", "exec", h.Name, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = ipPath
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

// nsNet is stdnet.Net with every socket opened in the namespace. Its
// interface list is read once, inside, when the Host is made.
type nsNet struct {
	*stdnet.Net
	h *Host
}

// newNet must run inside the namespace (in Do), where it lists the
// namespace's interfaces.
func newNet(h *Host) (*nsNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, fmt.Errorf("netlab: list interfaces: %w", err)
	}
	return &nsNet{Net: n, h: h}, nil
}

func (n *nsNet) ListenPacket(network, address string) (c net.PacketConn, err error) {
	err = n.h.Do(func() error { c, err = n.Net.ListenPacket(network, address); return err })
	return c, err
}

func (n *nsNet) ListenUDP(network string, laddr *net.UDPAddr) (c transport.UDPConn, err error) {
	err = n.h.Do(func() error { c, err = n.Net.ListenUDP(network, laddr); return err })
	return c, err
}

func (n *nsNet) ListenTCP(network string, laddr *net.TCPAddr) (l transport.TCPListener, err error) {
	err = n.h.Do(func() error { l, err = n.Net.ListenTCP(network, laddr); return err })
	return l, err
}

func (n *nsNet) Dial(network, address string) (c net.Conn, err error) {
	err = n.h.Do(func() error { c, err = n.Net.Dial(network, address); return err })
	return c, err
}

func (n *nsNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (c transport.UDPConn, err error) {
	err = n.h.Do(func() error { c, err = n.Net.DialUDP(network, laddr, raddr); return err })
	return c, err
}

func (n *nsNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (c transport.TCPConn, err error) {
	err = n.h.Do(func() error { c, err = n.Net.DialTCP(network, laddr, raddr); return err })
	return c, err
}

// CreateDialer and CreateListenConfig wrap the standard ones rather than
// hand out stdnet's: theirs would open sockets later, on any thread, in
// the root namespace.
func (n *nsNet) CreateDialer(d *net.Dialer) transport.Dialer { return nsDialer{n.h, d} }

func (n *nsNet) CreateListenConfig(lc *net.ListenConfig) transport.ListenConfig {
	return nsListenConfig{n.h, lc}
}

type nsDialer struct {
	h *Host
	d *net.Dialer
}

func (d nsDialer) Dial(network, address string) (c net.Conn, err error) {
	err = d.h.Do(func() error { c, err = d.d.Dial(network, address); return err })
	return c, err
}

type nsListenConfig struct {
	h  *Host
	lc *net.ListenConfig
}

func (l nsListenConfig) Listen(ctx context.Context, network, address string) (ln net.Listener, err error) {
	err = l.h.Do(func() error { ln, err = l.lc.Listen(ctx, network, address); return err })
	return ln, err
}

func (l nsListenConfig) ListenPacket(ctx context.Context, network, address string) (c net.PacketConn, err error) {
	err = l.h.Do(func() error { c, err = l.lc.ListenPacket(ctx, network, address); return err })
	return c, err
}
