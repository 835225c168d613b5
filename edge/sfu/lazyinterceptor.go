package sfu

import (
	"sync"

	"github.com/pion/interceptor"
)

// lazyFactory makes its interceptor when the connection binds its first
// remote stream, not when the connection is made. It is for Pion's NACK
// generator, whose goroutine ticks every 100 ms from the moment it is
// bound to a connection's RTCP writer, streams or not; most publisher
// connections never receive a stream (every participant has one, and a
// webinar's viewers publish nothing), and 50 viewers' idle tickers cost
// an instance forwarding to them about a tenth of its CPU.
//
// The interceptor it wraps may only write RTCP and read remote streams'
// RTP (the NACK generator's whole interface): it is given the writer
// when it is made, and RTCP readers and local streams pass it by.
// Pion's receiver reports and transport-wide feedback are not wrapped:
// the feedback's goroutine waits for the first packet before it ticks,
// and the reports tick once a second.
type lazyFactory struct {
	factory interceptor.Factory
}

func (f lazyFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	return &lazyInterceptor{factory: f.factory, id: id}, nil
}

// lazyInterceptor is one connection's lazyFactory interceptor.
type lazyInterceptor struct {
	interceptor.NoOp
	factory interceptor.Factory
	id      string

	mu     sync.Mutex // guards the fields below
	inner  interceptor.Interceptor
	writer interceptor.RTCPWriter // what BindRTCPWriter was given
	closed bool
}

// BindRTCPWriter keeps writer for the interceptor.
func (l *lazyInterceptor) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	l.writer = writer
	l.mu.Unlock()
	return writer
}

// BindRemoteStream makes the interceptor with the first stream, then
// binds the stream to it.
func (l *lazyInterceptor) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	inner := l.make()
	if inner == nil {
		return reader
	}
	return inner.BindRemoteStream(info, reader)
}

// UnbindRemoteStream unbinds from the interceptor, if it was made.
func (l *lazyInterceptor) UnbindRemoteStream(info *interceptor.StreamInfo) {
	l.mu.Lock()
	inner := l.inner
	l.mu.Unlock()
	if inner != nil {
		inner.UnbindRemoteStream(info)
	}
}

// make returns the interceptor, made and bound to the connection's RTCP
// writer on the first call; nil after Close or if it cannot be made.
func (l *lazyInterceptor) make() interceptor.Interceptor {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != nil || l.closed {
		return l.inner
	}
	inner, err := l.factory.NewInterceptor(l.id)
	if err != nil { // Pion's NACK generator never fails
		return nil
	}
	if l.writer != nil {
		inner.BindRTCPWriter(l.writer)
	}
	l.inner = inner
	return inner
}

// Close closes the interceptor, if it was made.
func (l *lazyInterceptor) Close() error {
	l.mu.Lock()
	l.closed = true
	inner := l.inner
	l.mu.Unlock()
	if inner == nil {
		return nil
	}
	return inner.Close()
}
