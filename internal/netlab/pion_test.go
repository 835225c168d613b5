package netlab

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestPionInside: a PeerConnection configured with ConfigureICE gathers
// only the namespace's address, connects to a peer in the root namespace
// across the veth, and its data really crosses it: with the link down,
// ICE loses the connection.
func TestPionInside(t *testing.T) {
	h := NewHost(t, t.Name())
	var inside, outside webrtc.SettingEngine
	h.ConfigureICE(&inside)
	outside.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	outside.SetIPFilter(func(ip net.IP) bool { return ip.Equal(net.IP(h.HostAddr.AsSlice())) })
	outside.SetICETimeouts(time.Second, 2*time.Second, 200*time.Millisecond)
	in := newPeer(t, inside)
	out := newPeer(t, outside)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	states := stateWatch(out, webrtc.PeerConnectionStateConnected, webrtc.PeerConnectionStateDisconnected)
	if _, err := in.CreateDataChannel("probe", nil); err != nil {
		t.Fatal(err)
	}
	connect(t, in, out)
	wait(ctx, t, states[webrtc.PeerConnectionStateConnected], "connected")

	pair, err := in.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("selected pair: %v, %v", pair, err)
	}
	if a, _ := netip.ParseAddr(pair.Local.Address); a != h.NSAddr {
		t.Errorf("inside peer's local candidate = %s; want %s", pair.Local.Address, h.NSAddr)
	}
	if a, _ := netip.ParseAddr(pair.Remote.Address); a != h.HostAddr {
		t.Errorf("inside peer's remote candidate = %s; want %s", pair.Remote.Address, h.HostAddr)
	}
	if err := h.Down(); err != nil {
		t.Fatal(err)
	}
	wait(ctx, t, states[webrtc.PeerConnectionStateDisconnected], "disconnected after Down")
}

func newPeer(t *testing.T, se webrtc.SettingEngine) *webrtc.PeerConnection {
	t.Helper()
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// connect runs offer and answer between two peers with complete
// candidate gathering (no trickle).
func connect(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	desc := func(pc *webrtc.PeerConnection, make func(*webrtc.OfferOptions) (webrtc.SessionDescription, error)) webrtc.SessionDescription {
		sd, err := make(nil)
		if err != nil {
			t.Fatal(err)
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(sd); err != nil {
			t.Fatal(err)
		}
		<-gathered
		return *pc.LocalDescription()
	}
	offer := desc(offerer, offerer.CreateOffer)
	if err := answerer.SetRemoteDescription(offer); err != nil {
		t.Fatal(err)
	}
	answer := desc(answerer, func(*webrtc.OfferOptions) (webrtc.SessionDescription, error) { return answerer.CreateAnswer(nil) })
	if err := offerer.SetRemoteDescription(answer); err != nil {
		t.Fatal(err)
	}
}

// stateWatch closes a channel per state the first time pc reaches it.
// Make it before the connection can change state.
func stateWatch(pc *webrtc.PeerConnection, states ...webrtc.PeerConnectionState) map[webrtc.PeerConnectionState]chan struct{} {
	chans := make(map[webrtc.PeerConnectionState]chan struct{})
	for _, st := range states {
		chans[st] = make(chan struct{})
	}
	var once sync.Map
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if ch, ok := chans[s]; ok {
			if _, done := once.LoadOrStore(s, true); !done {
				close(ch)
			}
		}
	})
	return chans
}

func wait(ctx context.Context, t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("not %s in time", what)
	}
}
