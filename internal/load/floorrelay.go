package load

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// The floor is the cheapest possible forwarder: one goroutine that
// receives a UDP packet and sends it once to every other member of the
// sender's group. No SRTP, no RTCP, no buffers: a server's cost per
// forwarded packet is reported as a multiple of this one.
//
// It runs as a child process (`mediaload floor-relay`) so that its CPU time
// is the whole of a process's CPU time, measured exactly as the server's
// is (by the process, not sampled from outside), and never mixed with the
// load generator's own work.

// Wire format between floor members and the relay. A member registers its
// socket in a group; everything else it sends is media.
var (
	floorRegister = []byte("mlreg") // followed by the group, big-endian uint32
	floorAck      = []byte("mlack")
)

// floorOverhead pads floor packets to the size the same payload has on the
// wire to a real server: a 12-byte RTP header before it and a 10-byte SRTP
// authentication tag after it.
const (
	floorHeader = 12
	floorTag    = 10
)

// floorRelay is the relay's state. Only the serve goroutine touches the
// maps; the counters are read by the control loop.
type floorRelay struct {
	conn    *net.UDPConn
	groupOf map[netip.AddrPort]uint32
	members map[uint32][]netip.AddrPort
	in, out atomic.Uint64

	// batch, when set, sends all copies of a packet with sendmmsg calls
	// instead of one sendto each: not the floor, but a yardstick for what
	// batched writes would save a server.
	batch *ipv4.PacketConn
	msgs  []ipv4.Message
}

func newFloorRelay(conn *net.UDPConn) *floorRelay {
	return &floorRelay{conn: conn, groupOf: make(map[netip.AddrPort]uint32), members: make(map[uint32][]netip.AddrPort)}
}

// serve relays until the socket is closed.
func (r *floorRelay) serve() {
	buf := make([]byte, 2048)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors from a closed member socket; keep relaying
		}
		r.handle(buf[:n], from)
	}
}

func (r *floorRelay) handle(p []byte, from netip.AddrPort) {
	if len(p) == len(floorRegister)+4 && bytes.HasPrefix(p, floorRegister) {
		r.register(from, binary.BigEndian.Uint32(p[len(floorRegister):]))
		return
	}
	r.in.Add(1)
	g, ok := r.groupOf[from]
	if !ok {
		return
	}
	if r.batch != nil {
		r.sendBatch(p, from, r.members[g])
		return
	}
	for _, m := range r.members[g] {
		if m == from {
			continue
		}
		if _, err := r.conn.WriteToUDPAddrPort(p, m); err == nil {
			r.out.Add(1)
		}
	}
}

// sendBatch sends p to every member but from, in as few sendmmsg calls as
// the kernel takes.
func (r *floorRelay) sendBatch(p []byte, from netip.AddrPort, members []netip.AddrPort) {
	r.msgs = r.msgs[:0]
	for _, m := range members {
		if m != from {
			r.msgs = append(r.msgs, ipv4.Message{Buffers: [][]byte{p}, Addr: net.UDPAddrFromAddrPort(m)})
		}
	}
	for msgs := r.msgs; len(msgs) > 0; {
		n, err := r.batch.WriteBatch(msgs, 0)
		if err != nil || n == 0 {
			return
		}
		r.out.Add(uint64(n))
		msgs = msgs[n:]
	}
}

func (r *floorRelay) register(from netip.AddrPort, g uint32) {
	if _, ok := r.groupOf[from]; !ok {
		r.groupOf[from] = g
		r.members[g] = append(r.members[g], from)
	}
	_, _ = r.conn.WriteToUDPAddrPort(floorAck, from) // a lost ack is retried by the member
}

// FloorRelayCommand is the subcommand of mediaload that runs
// ServeFloorRelay: the floor starts Config.RelayExe with it.
const FloorRelayCommand = "floor-relay"

// ServeFloorRelay is the child process: it prints "addr HOST:PORT", then
// answers each "usage" line on stdin with "usage CPU_NS IN OUT" (its own
// user+system CPU time from getrusage and its packet counters) and exits
// when stdin closes. With the argument "-batch" it sends with sendmmsg.
func ServeFloorRelay(args []string, stdin io.Reader, stdout io.Writer) error {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("floor-relay: listen: %w", err)
	}
	setBuffers(conn)
	r := newFloorRelay(conn)
	if len(args) > 0 && args[0] == "-batch" {
		r.batch = ipv4.NewPacketConn(conn)
	}
	var wg sync.WaitGroup
	wg.Go(r.serve)
	defer wg.Wait()
	defer conn.Close()
	if _, err := fmt.Fprintf(stdout, "addr %s\n", conn.LocalAddr()); err != nil {
		return fmt.Errorf("floor-relay: write address: %w", err)
	}
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "usage" {
			continue
		}
		cpu, err := selfCPU()
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(stdout, "usage %d %d %d\n", cpu.Nanoseconds(), r.in.Load(), r.out.Load()); err != nil {
			return fmt.Errorf("floor-relay: write usage: %w", err)
		}
	}
	return nil
}

// socketBuffer is the receive and send buffer asked for on every floor
// socket, so a scheduling hiccup of the load generator is not counted as
// the relay's loss. The kernel caps it at net.core.rmem_max.
const socketBuffer = 4 << 20

func setBuffers(c *net.UDPConn) {
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
}
