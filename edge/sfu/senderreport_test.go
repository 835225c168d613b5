package sfu

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestSenderReports: a stream a subscriber receives gets a sender report
// every second, whichever path wrote its packets (the direct one, or
// Pion's when the server is the DTLS client and has no keys of its own):
// its packet and octet counts are what the subscriber received, its NTP
// time is the wall clock's, and its RTP time is the newest packet's,
// carried on at the codec's clock rate as time passes.
func TestSenderReports(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dtlsRole  webrtc.DTLSRole
		viaDirect bool
	}{
		{"direct", webrtc.DTLSRoleClient, true},
		{"pion", webrtc.DTLSRoleServer, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			pub := h.newPublisher(t)
			video, _ := pub.publications(t)
			sub := h.newSubscriber(t, clientAPIAnswering(t, tc.dtlsRole))
			sub.subscribe(t, video)
			r := sub.awaitTracks(t, 1, pub.video)[webrtc.RTPCodecTypeVideo]
			if got := sub.conn.direct.ready.Load(); got != tc.viaDirect {
				t.Fatalf("direct path ready = %v; want %v", got, tc.viaDirect)
			}
			reports := senderReportsOf(r)

			const n = 300
			first := pub.video.send(t, n)
			checkSenderReports(t, r, reports, first+n-1, float64(vp8.ClockRate))
		})
	}
}

// senderReportsOf delivers the sender reports r's receiver gets for its
// track, until the connection closes.
func senderReportsOf(r *received) <-chan *rtcp.SenderReport {
	out := make(chan *rtcp.SenderReport, 64)
	ssrc := uint32(r.track.SSRC())
	go func() {
		for {
			pkts, _, err := r.recv.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == ssrc {
					select {
					case out <- sr:
					default:
					}
				}
			}
		}
	}()
	return out
}

// checkSenderReports counts what r receives until the packet with index
// last, then waits for two reports in a row that count exactly that, and
// checks them.
func checkSenderReports(t *testing.T, r *received, reports <-chan *rtcp.SenderReport, last uint32, clockRate float64) {
	t.Helper()
	var (
		packets, octets uint32
		newest          *rtp.Packet
		sawLast         bool
		prev            *rtcp.SenderReport
		matched         int
	)
	deadline := time.After(waitFor)
	for {
		select {
		case pkt := <-r.pkts:
			packets++
			octets += uint32(len(pkt.Payload))
			newest = pkt
			if len(pkt.Payload) >= 4 && binary.BigEndian.Uint32(pkt.Payload) == last {
				sawLast = true
			}
			continue
		case sr := <-reports:
			if !sawLast || len(r.pkts) > 0 || sr.PacketCount != packets {
				prev = nil
				continue
			}
			matched++
			if sr.OctetCount != octets {
				t.Fatalf("sender report octets = %d; want %d, the payload the subscriber received", sr.OctetCount, octets)
			}
			if at := ntpToTime(sr.NTPTime); time.Since(at).Abs() > 5*time.Second {
				t.Fatalf("sender report NTP time %s; want the wall clock, %s", at, time.Now())
			}
			ahead := int32(sr.RTPTime - newest.Timestamp)
			if ahead < 0 || float64(ahead) > clockRate*waitFor.Seconds() {
				t.Fatalf("sender report RTP time %d is %d ticks after the newest packet's %d; want it to follow within the test's time", sr.RTPTime, ahead, newest.Timestamp)
			}
			if prev != nil {
				// No packet between the two: the RTP time moved with the clock.
				elapsed := float64(sr.NTPTime-prev.NTPTime) / (1 << 32)
				moved, want := float64(int32(sr.RTPTime-prev.RTPTime)), elapsed*clockRate
				if math.Abs(moved-want) > 0.01*want+clockRate/1000 {
					t.Fatalf("RTP time moved %.0f ticks in %.3f s between two reports; want %.0f at %.0f Hz", moved, elapsed, want, clockRate)
				}
				return
			}
			prev = sr
		case <-deadline:
			t.Fatalf("no two sender reports in a row counting the %d packets (%d octets) the subscriber received within %s (%d matched)", packets, octets, waitFor, matched)
		}
	}
}

// ntpToTime is the time of a 64-bit NTP timestamp.
func ntpToTime(ntp uint64) time.Time {
	sec := int64(ntp>>32) - ntpEpochOffset
	ns := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return time.Unix(sec, ns)
}

// TestNTPTime: the NTP timestamp of a few instants (RFC 5905's epoch is
// 1900, 2208988800 s before Unix's).
func TestNTPTime(t *testing.T) {
	for _, tc := range []struct {
		at   time.Time
		want uint64
	}{
		{time.Unix(0, 0), 2208988800 << 32},
		{time.Unix(1, 500_000_000), (2208988801 << 32) | 1<<31},
		{time.Unix(1_800_000_000, 250_000_000), (4008988800 << 32) | 1<<30},
	} {
		if got := ntpTime(tc.at); got != tc.want {
			t.Errorf("ntpTime(%s) = %#x; want %#x", tc.at.UTC(), got, tc.want)
		}
		if back := ntpToTime(tc.want); !back.Equal(tc.at) {
			t.Errorf("ntpToTime(%#x) = %s; want %s", tc.want, back.UTC(), tc.at.UTC())
		}
	}
}
