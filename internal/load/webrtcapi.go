package load

import (
	"fmt"
	"io"
	"net"
	"net/url"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"

	"github.com/media-service/media-service/edge/client"
)

// newLoadAPI builds the Pion API every synthetic participant shares. It
// behaves as a browser does towards the server (NACK generation and
// response, RTCP reports, transport-cc sequence numbers on what it sends
// and feedback on what it receives) but leaves out Pion's stats and
// simulcast interceptors, which cost the load generator CPU per packet and
// change nothing the server sees. Against a loopback server ICE is kept on
// loopback UDP, so nothing leaves the machine. With nack false the
// participants never ask for retransmissions (-nack=false), which separates
// the server's forwarding cost from its NACK handling. Pion's own warnings
// and errors (RTP on an SSRC the description does not have, ...) go to
// pionLog.
func newLoadAPI(loopback, nack bool, pionLog io.Writer) (*webrtc.API, error) {
	return newLoadAPIWith(loopback, nack, false, pionLog)
}

// newLoadAPIWith is newLoadAPI, able to publish simulcast (the mid and
// rid header extensions registered) when simulcast is set.
func newLoadAPIWith(loopback, nack, simulcast bool, pionLog io.Writer) (*webrtc.API, error) {
	return newLoadAPIIn(loopback, nack, simulcast, pionLog, nil)
}

// newLoadAPIIn is newLoadAPIWith whose settings configure changes last
// (a netlab namespace's sockets, for the capped scenario); nil changes
// nothing.
func newLoadAPIIn(loopback, nack, simulcast bool, pionLog io.Writer, configure func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	return buildLoadAPI(loopback, nack, simulcast, false, pionLog, configure)
}

// newLightAPI is the API of one light participant (light.go): its UDP
// sockets come from n, and it has no TWCC sender interceptor (the light
// receiver sends the transport-wide feedback) while it still negotiates
// transport-cc as a browser does.
func newLightAPI(loopback, nack bool, pionLog io.Writer, n transport.Net) (*webrtc.API, error) {
	return buildLoadAPI(loopback, nack, false, true, pionLog, func(se *webrtc.SettingEngine) { se.SetNet(n) })
}

// buildLoadAPI is newLoadAPIIn, for a light participant when light.
func buildLoadAPI(loopback, nack, simulcast, light bool, pionLog io.Writer, configure func(*webrtc.SettingEngine)) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("load api: codecs: %w", err)
	}
	if simulcast {
		if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
			return nil, fmt.Errorf("load api: simulcast extensions: %w", err)
		}
	}
	ir := &interceptor.Registry{}
	if nack {
		if err := webrtc.ConfigureNack(m, ir); err != nil {
			return nil, fmt.Errorf("load api: nack: %w", err)
		}
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("load api: reports: %w", err)
	}
	if err := configureTWCCFeedback(m, ir, light); err != nil {
		return nil, fmt.Errorf("load api: twcc feedback: %w", err)
	}
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		return nil, fmt.Errorf("load api: twcc header: %w", err)
	}
	var se webrtc.SettingEngine
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer, lf.DefaultLogLevel = pionLog, logging.LogLevelWarn
	se.LoggerFactory = lf
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	if loopback {
		client.LoopbackOnly(&se)
	}
	if configure != nil {
		configure(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// configureTWCCFeedback negotiates transport-cc for audio and video and,
// unless light (whose receiver sends the feedback itself), adds Pion's
// feedback sender.
func configureTWCCFeedback(m *webrtc.MediaEngine, ir *interceptor.Registry, light bool) error {
	if !light {
		return webrtc.ConfigureTWCCSender(m, ir)
	}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, kind)
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return err
		}
	}
	return nil
}

// isLoopbackURL reports whether the instance at base is on this machine.
func isLoopbackURL(base string) bool {
	u, err := url.Parse(base)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// rtcURL is the signaling WebSocket URL of the instance at base.
func rtcURL(base string) string {
	u, _ := url.Parse(base)
	u.Scheme = map[string]string{"https": "wss"}[u.Scheme]
	if u.Scheme == "" {
		u.Scheme = "ws"
	}
	u.Path, u.RawQuery = "/v1/rtc", ""
	return u.String()
}
