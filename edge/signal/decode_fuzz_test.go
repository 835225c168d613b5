package signal

import (
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the client message decoder: it must
// never panic, every refusal must be an *Error with a known code, and every
// accepted message must carry what its type needs.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"offer","target":"publisher","sdp":"v=0"}`,
		`{"type":"answer","target":"subscriber","sdp":"v=0"}`,
		`{"type":"candidate","target":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMLineIndex":0}}`,
		`{"type":"leave"}`, `{"type":1}`, `[]`, `{"type":"offer","sdp":null}`, "\x00",
	} {
		f.Add([]byte(s))
	}
	codes := map[string]bool{CodeBadMessage: true, CodeUnknownType: true, CodeInvalidSDP: true, CodeInvalidCandidate: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || !codes[se.Code] {
				t.Fatalf("Decode(%q) error %v; want an *Error with a known code", data, err)
			}
			return
		}
		switch m.Type {
		case TypeOffer, TypeAnswer:
			if m.SDP == "" || m.Target == "" {
				t.Fatalf("Decode(%q) accepted %s without sdp or target", data, m.Type)
			}
		case TypeCandidate:
			if m.Candidate == nil || (m.Target != TargetPublisher && m.Target != TargetSubscriber) {
				t.Fatalf("Decode(%q) accepted a candidate without candidate or target", data)
			}
		case TypeLeave:
		default:
			t.Fatalf("Decode(%q) accepted type %q", data, m.Type)
		}
	})
}
