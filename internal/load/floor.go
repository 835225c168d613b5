package load

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
)

// floorOptions says how to start the child relay.
type floorOptions struct {
	exe    string    // the mediaload binary, run as `exe floor-relay`
	batch  bool      // the relay sends with sendmmsg
	stderr io.Writer // the relay's standard error; nil discards it
	cpus   string    // the taskset CPU list the relay runs on, as the spawned instance does; empty: not pinned
}

// What the floor relay's sends are, as the report names them.
const (
	FloorSendsBatched = "sendmmsg" // each packet's copies in as few sendmmsg calls as the kernel takes
	FloorSendsSingle  = "sendto"   // one sendto per copy
)

// sends names what the relay does: batching needs sendmmsg, which
// golang.org/x/net/ipv4 uses on Linux only (elsewhere a batch is sent
// one message at a time).
func (fo floorOptions) sends() string {
	if fo.batch && runtime.GOOS == "linux" {
		return FloorSendsBatched
	}
	return FloorSendsSingle
}

// runFloor measures the bare relay with topology t: every member a UDP
// socket registered in its group, publishers sending the same paced media
// as the real run.
func runFloor(ctx context.Context, fo floorOptions, t topology, mc MediaConfig, tm Timing, pr *progress) (*phaseResult, error) {
	build := func(ctx context.Context, m *mediaRun, proc *relayProc) ([]*floorMember, error) {
		return buildFloor(ctx, m, proc, t)
	}
	return runFloorBuilt(ctx, fo, mc, tm, pr, build)
}

// floorBuilder registers a floor's members with the relay and creates
// their senders (not started) and expectations.
type floorBuilder func(ctx context.Context, m *mediaRun, proc *relayProc) ([]*floorMember, error)

// runFloorBuilt is runFloor with the members build makes.
func runFloorBuilt(ctx context.Context, fo floorOptions, mc MediaConfig, tm Timing, pr *progress, build floorBuilder) (*phaseResult, error) {
	proc, err := startRelayProc(ctx, fo)
	if err != nil {
		return nil, err
	}
	defer proc.close()
	m := newMediaRun(newClock(), mc)
	members, err := build(ctx, m, proc)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer closeMembers(members)
	if err != nil {
		return nil, err
	}
	for _, fm := range members {
		wg.Go(func() { fm.receive(m.clk) })
	}
	m.eachSender(m.start)
	var u0, u1 relayUsage
	res := &phaseResult{cpuKnown: true}
	res.window, err = m.measure(ctx, tm, windowHooks{
		open:     func() (err error) { pr.reset(m); u0, err = proc.usage(); return err },
		close:    func() (err error) { u1, err = proc.usage(); return err },
		progress: func(el time.Duration) { pr.media("floor", el, m) },
	})
	if err != nil {
		return nil, err
	}
	res.media = m.totals()
	res.cpu = u1.cpu - u0.cpu
	res.sendErrors, res.skipped = m.sendErrors(), m.skipped()
	return res, nil
}

// buildFloor registers every member and creates the publishers' senders
// (not started) and each member's expectations.
func buildFloor(ctx context.Context, m *mediaRun, proc *relayProc, t topology) ([]*floorMember, error) {
	var all []*floorMember
	for gi, g := range t {
		var group []*floorMember
		var pubs [][]*source
		for i := range g.publishers + g.listeners {
			conn, err := joinFloor(ctx, proc.addr, uint32(gi))
			if err != nil {
				return all, err
			}
			fm := &floorMember{conn: conn, sink: m.addSink(), relay: proc.addr}
			all, group = append(all, fm), append(group, fm)
			var srcs []*source
			if i < g.publishers {
				for _, k := range []mediaKind{kindAudio, kindVideo} {
					if m.cfg.pps(k) > 0 {
						srcs = append(srcs, m.newSender(k, fm.writer(m.cfg.size(k))).src)
					}
				}
			}
			pubs = append(pubs, srcs)
		}
		expectOthers(group, pubs)
	}
	return all, nil
}

// expectOthers makes every member expect every source of the group's
// other members.
func expectOthers(group []*floorMember, srcs [][]*source) {
	for i, fm := range group {
		for j, ss := range srcs {
			if i == j {
				continue
			}
			for _, s := range ss {
				fm.sink.expect(s)
			}
		}
	}
}

func closeMembers(ms []*floorMember) {
	for _, fm := range ms {
		fm.conn.Close()
	}
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
