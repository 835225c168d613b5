package edge

import "testing"

func TestSignalingURL(t *testing.T) {
	for _, tc := range []struct{ base, want string }{
		{"https://media-2.example.com", "wss://media-2.example.com/v1/rtc"},
		{"https://media-2.example.com/", "wss://media-2.example.com/v1/rtc"},
		{"http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/rtc"},
		{"https://example.com/media", "wss://example.com/media/v1/rtc"},
		{"wss://media.example.com", "wss://media.example.com/v1/rtc"},
	} {
		if got, err := SignalingURL(tc.base); err != nil || got != tc.want {
			t.Errorf("SignalingURL(%q) = %q, %v; want %q", tc.base, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "media.example.com", "ftp://media.example.com", "https://", "https://u:p@example.com",
		"https://example.com/?x=1", "https://example.com/#f", "://"} {
		if got, err := SignalingURL(bad); err == nil {
			t.Errorf("SignalingURL(%q) = %q; want an error", bad, got)
		}
	}
}
