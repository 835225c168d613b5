package redistest_test

import (
	"testing"

	"github.com/media-service/media-service/internal/redistest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A started server answers PING; a stopped one refuses connections; a
// restarted one answers again on the same address.
func TestStopAndRestart(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr
	if err := redistest.Ping(s.Addr); err != nil {
		t.Fatalf("Ping(%s) after Start = %v; want nil", s.Addr, err)
	}
	s.Stop()
	if err := redistest.Ping(s.Addr); err == nil {
		t.Fatalf("Ping(%s) after Stop = nil; want an error", s.Addr)
	}
	s.Stop() // a second Stop does nothing
	s.Restart()
	if s.Addr != addr {
		t.Errorf("Addr after Restart = %s; want %s", s.Addr, addr)
	}
	if err := redistest.Ping(s.Addr); err != nil {
		t.Fatalf("Ping(%s) after Restart = %v; want nil", s.Addr, err)
	}
	if got, want := s.URL(), "redis://"+addr; got != want {
		t.Errorf("URL() = %s; want %s", got, want)
	}
}
