package edge

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// closeGrace bounds the last words of a connection: the queued messages,
// the `leave` and the close frame, and the wait for the client's close
// frame in reply.
const closeGrace = time.Second

var (
	// errSlowClient: a message found no room in the send queue in time.
	errSlowClient = errors.New("edge: slow client: send queue full")
	// errClientClosing: the client is closing; the message is not sent,
	// and the closing connection tells the client so.
	errClientClosing = errors.New("edge: client closing")
)

// wsClient is the signaling WebSocket of one session. Its writer
// goroutine is the only writer of messages: everyone else enqueues with
// send, which waits at most cfg.SendTimeout for room (else the client is
// slow). The session's reader goroutine is the only reader. stop ends the
// writer, which writes what is queued, an optional last message and a close
// frame, waits up to closeGrace for the reader to see the client's reply,
// and closes the connection.
type wsClient struct {
	conn *websocket.Conn
	cfg  wsConfig

	queue    chan []byte   // encoded messages; the writer drains it
	stopping chan struct{} // closed by stop
	readDone chan struct{} // closed by the reader when it returns
	done     chan struct{} // closed when the writer has closed the connection
	stopOnce sync.Once
	last     lastWords // set by stop before stopping closes
	// peerClosed: the client sent a close frame, so it meant to go and
	// its session is not kept for a resume. Set by the reader before
	// readDone closes.
	peerClosed bool
	onFail     func(error)
}

// lastWords is how the writer ends the connection.
type lastWords struct {
	msg   []byte // a final message (`leave`), or nil
	code  int    // close code
	abort bool   // close at once: the client does not read anyway
}

// socketSendBuffer caps the kernel's send buffer of a signaling socket.
// Signaling needs little (a large SDP is tens of KiB), and without a cap
// the kernel grows it to megabytes, which both costs memory per client and
// hides a client that stopped reading from the send queue for a long time.
const socketSendBuffer = 64 << 10

// The socket controls the signaling connection needs, asked for by
// interface: the HTTP listener's conns wrap a *net.TCPConn (internal/connlimit)
// and have its methods, but are not one.
type (
	sendBufferSetter interface{ SetWriteBuffer(bytes int) error }
	halfCloser       interface {
		net.Conn
		CloseWrite() error
	}
)

// wsConfig is the part of Config a session's WebSocket reads (see Config
// for each field's meaning and default).
type wsConfig struct {
	ReadLimit    int64
	SendQueue    int
	SendTimeout  time.Duration
	WriteTimeout time.Duration
	PingInterval time.Duration
}

func newWSConfig(c Config) wsConfig {
	return wsConfig{ReadLimit: c.ReadLimit, SendQueue: c.SendQueue, SendTimeout: c.SendTimeout,
		WriteTimeout: c.WriteTimeout, PingInterval: c.PingInterval}
}

func newWSClient(conn *websocket.Conn, cfg wsConfig, onFail func(error)) *wsClient {
	conn.SetReadLimit(cfg.ReadLimit)
	if tc, ok := conn.UnderlyingConn().(sendBufferSetter); ok {
		_ = tc.SetWriteBuffer(socketSendBuffer) // best effort: the queue bounds remain
	}
	return &wsClient{
		conn: conn, cfg: cfg, onFail: onFail,
		queue:    make(chan []byte, cfg.SendQueue),
		stopping: make(chan struct{}),
		readDone: make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// send enqueues one message. It returns errSlowClient when the queue stayed
// full for cfg.SendTimeout, and errClientClosing once stop was called.
func (c *wsClient) send(b []byte) error {
	select {
	case <-c.stopping:
		return errClientClosing
	default:
	}
	select {
	case c.queue <- b:
		return nil
	default:
	}
	t := time.NewTimer(c.cfg.SendTimeout)
	defer t.Stop()
	select {
	case c.queue <- b:
		return nil
	case <-c.stopping:
		return errClientClosing
	case <-t.C:
		return errSlowClient
	}
}

// stop makes the writer end the connection with last. Only the first call
// counts.
func (c *wsClient) stop(last lastWords) {
	c.stopOnce.Do(func() {
		c.last = last
		close(c.stopping)
		// A write already blocked on a client that stopped reading
		// would hold the close (and a drain) for the whole write
		// timeout: cut it to the close grace, as the last words are.
		_ = c.conn.UnderlyingConn().SetWriteDeadline(time.Now().Add(closeGrace))
		if last.abort {
			// The writer may be blocked in a write to a client that
			// does not read, and nothing more could reach it: close the
			// socket now (net.Conn allows Close from any goroutine).
			_ = c.conn.UnderlyingConn().Close()
		}
	})
}

// writeLoop is the writer goroutine: messages in order, a ping every
// cfg.PingInterval, each write bounded by cfg.WriteTimeout.
func (c *wsClient) writeLoop() {
	defer close(c.done)
	ping := time.NewTicker(c.cfg.PingInterval)
	defer ping.Stop()
	for {
		select { // stopping first: select would pick at random among ready cases
		case <-c.stopping:
			c.finish()
			return
		default:
		}
		select {
		case b := <-c.queue:
			c.fail(c.write(websocket.TextMessage, b, time.Now().Add(c.cfg.WriteTimeout)))
		case <-ping.C:
			c.fail(c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout)))
		case <-c.stopping:
			c.finish()
			return
		}
	}
}

func (c *wsClient) fail(err error) {
	if err != nil {
		c.onFail(err)
	}
}

func (c *wsClient) write(kind int, b []byte, deadline time.Time) error {
	_ = c.conn.SetWriteDeadline(deadline)
	return c.conn.WriteMessage(kind, b)
}

// finish writes the last words within closeGrace and closes the
// connection.
func (c *wsClient) finish() {
	if c.last.abort {
		c.conn.Close()
		return
	}
	deadline := time.Now().Add(closeGrace)
	defer c.lingeringClose(deadline)
	var err error
	for drained := false; !drained && err == nil; {
		select {
		case b := <-c.queue:
			err = c.write(websocket.TextMessage, b, deadline)
		default:
			drained = true
		}
	}
	if err == nil && c.last.msg != nil {
		err = c.write(websocket.TextMessage, c.last.msg, deadline)
	}
	if err == nil {
		_ = c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.last.code, ""), deadline)
	}
	// Let the client's close frame arrive before the socket closes: a
	// close with unread input resets the connection, and the client
	// could lose our last words.
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.readDone:
	case <-t.C:
	}
}

// lingeringMax bounds what a lingering close reads and discards.
const lingeringMax = 1 << 20

// lingeringClose closes the connection without resetting it. Once the
// reader has stopped (after a close frame, or an oversized message whose
// rest is still arriving), it half-closes the socket and discards what the
// client still sends, up to lingeringMax bytes until deadline: closing a
// socket with unread input makes the kernel send a reset, which can
// destroy the close frame before the client reads it.
func (c *wsClient) lingeringClose(deadline time.Time) {
	defer c.conn.Close()
	select {
	case <-c.readDone:
	default:
		return // the reader still owns the read side
	}
	tc, ok := c.conn.UnderlyingConn().(halfCloser)
	if !ok || tc.CloseWrite() != nil {
		return
	}
	_ = tc.SetReadDeadline(deadline)
	_, _ = io.Copy(io.Discard, io.LimitReader(tc, lingeringMax))
}
