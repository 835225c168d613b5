package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// runFloorRelay is the child process: it prints "addr HOST:PORT", then
// answers each "usage" line on stdin with "usage CPU_NS IN OUT" (its own
// user+system CPU time from getrusage and its packet counters) and exits
// when stdin closes. With the argument "-batch" it sends with sendmmsg.
func runFloorRelay(args []string, stdin io.Reader, stdout io.Writer) error {
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

// relayUsage is one reading of the child relay.
type relayUsage struct {
	cpu     time.Duration
	in, out uint64
}

// relayProc is the parent's handle on the child relay process.
type relayProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	addr  netip.AddrPort
}

// startRelayProc starts exe as the floor relay (batched with sendmmsg
// when batch is set). env is added to the child's environment (tests use
// it to make the test binary act as mediaload).
func startRelayProc(ctx context.Context, exe string, env []string, batch bool) (*relayProc, error) {
	args := []string{"floor-relay"}
	if batch {
		args = append(args, "-batch")
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("floor: stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("floor: stdout pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("floor: start relay %s: %w", exe, err)
	}
	p := &relayProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	line, err := p.line("addr")
	if err == nil {
		p.addr, err = netip.ParseAddrPort(line)
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("floor: relay address: %w", err)
	}
	return p, nil
}

// line reads the child's next line, which must start with word.
func (p *relayProc) line(word string) (string, error) {
	if !p.out.Scan() {
		if err := p.out.Err(); err != nil {
			return "", err
		}
		return "", io.ErrUnexpectedEOF
	}
	rest, ok := strings.CutPrefix(p.out.Text(), word+" ")
	if !ok {
		return "", fmt.Errorf("want %q line, got %q", word, p.out.Text())
	}
	return rest, nil
}

func (p *relayProc) usage() (relayUsage, error) {
	var u relayUsage
	if _, err := io.WriteString(p.stdin, "usage\n"); err != nil {
		return u, fmt.Errorf("floor: ask usage: %w", err)
	}
	line, err := p.line("usage")
	if err != nil {
		return u, fmt.Errorf("floor: read usage: %w", err)
	}
	var ns int64
	if _, err := fmt.Sscanf(line, "%d %d %d", &ns, &u.in, &u.out); err != nil {
		return u, fmt.Errorf("floor: parse usage %q: %w", line, err)
	}
	u.cpu = time.Duration(ns)
	return u, nil
}

// close ends the child (its stdin closes) and waits for it.
func (p *relayProc) close() error {
	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("floor: relay exit: %w", err)
	}
	return nil
}

// floorMember is one synthetic participant of the floor: a UDP socket
// registered with the relay, its sink, and (for a publisher) its senders.
type floorMember struct {
	conn  *net.UDPConn
	sink  *sink
	relay netip.AddrPort
}

// joinFloor opens a socket and registers it in group g, retrying until
// the relay acknowledges (UDP may drop the first try) or ctx ends.
func joinFloor(ctx context.Context, relay netip.AddrPort, g uint32) (*net.UDPConn, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("floor: member listen: %w", err)
	}
	setBuffers(conn)
	reg := binary.BigEndian.AppendUint32(append([]byte(nil), floorRegister...), g)
	buf := make([]byte, 64)
	for ctx.Err() == nil {
		if _, err := conn.WriteToUDPAddrPort(reg, relay); err != nil {
			break
		}
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _, err := conn.ReadFromUDPAddrPort(buf)
		if err == nil && bytes.Equal(buf[:n], floorAck) {
			_ = conn.SetReadDeadline(time.Time{})
			return conn, nil
		}
	}
	conn.Close()
	return nil, fmt.Errorf("floor: register with relay %s: no acknowledgement", relay)
}

// receive reads media until the socket closes, accounting each payload
// (the packet without its RTP header and tag padding).
func (fm *floorMember) receive(clk clock) {
	buf := make([]byte, 2048)
	for {
		n, _, err := fm.conn.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n < floorHeader+floorTag {
			continue
		}
		fm.sink.observe(buf[floorHeader:n-floorTag], clk.now())
	}
}

// writer is the member's transport for one sender: header, payload and
// tag padding in one datagram to the relay.
func (fm *floorMember) writer(size int) packetWriter {
	pkt := make([]byte, floorHeader+size+floorTag)
	return func(p rtpPacket) error {
		pkt[0] = 0x80
		binary.BigEndian.PutUint16(pkt[2:4], p.seq)
		binary.BigEndian.PutUint32(pkt[4:8], p.ts)
		copy(pkt[floorHeader:], p.payload)
		_, err := fm.conn.WriteToUDPAddrPort(pkt, fm.relay)
		return err
	}
}
