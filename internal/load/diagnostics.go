package load

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/media-service/media-service/edge/signal"
)

// diagWriter passes the first show lines on to w and counts them all,
// except the benign ones.
type diagWriter struct {
	w    io.Writer // nil: count only
	show int64
	n    atomic.Int64
}

// benignDiagnostics are log lines every join or leave produces: ICE
// trying to check before the trickled candidates have arrived, and
// streams accepted while the connection closes.
var benignDiagnostics = [][]byte{[]byte("Failed to ping without candidate pairs"), []byte("stream is already closed")}

func (d *diagWriter) Write(p []byte) (int, error) {
	for _, b := range benignDiagnostics {
		if bytes.Contains(p, b) {
			return len(p), nil
		}
	}
	if d.n.Add(1) <= d.show && d.w != nil {
		_, _ = fmt.Fprintf(d.w, "client: %s", p)
	}
	return len(p), nil
}

// serverEvents counts the server's `error` codes, with their messages, and
// `leave` reasons sent to the participants: a healthy run has none but the
// leaves it asked for. Apart from those it counts the redirects the
// clients followed to the instance that holds a participant's room.
type serverEvents struct {
	mu        sync.Mutex // guards counts
	counts    map[string]int64
	redirects atomic.Int64
}

// redirectCounter is what edge/client's Client offers once the fleet's
// routing is merged (branch fleet-route): how many `redirect` messages
// Dial followed to join. Until then no client has it, and no join is
// counted as redirected.
type redirectCounter interface{ Redirects() int }

// countRedirects counts the redirects a client followed to join. It is
// the hook for the fleet's routing; with it merged, the assertion can
// become a plain call of (*client.Client).Redirects.
func (e *serverEvents) countRedirects(c any) {
	if rc, ok := c.(redirectCounter); ok {
		e.redirects.Add(int64(rc.Redirects()))
	}
}

// observe is the clients' OnEvent; it runs on their read goroutines.
func (e *serverEvents) observe(m *signal.Message) {
	var key string
	switch m.Type {
	case signal.TypeError:
		// The message names the server's reason (an offer that cannot be
		// applied, an answer with no offer outstanding): what a failed run
		// needs to be diagnosed. The server's messages are a fixed set.
		key = "error " + m.Code + " (" + m.Message + ")"
	case signal.TypeLeave:
		key = "leave " + m.Reason
	default:
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = make(map[string]int64)
	}
	e.counts[key]++
}

func (e *serverEvents) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.counts)
}
