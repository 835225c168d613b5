package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
)

// lazyFactory makes a connection's receiving interceptors when it binds
// its first remote stream, not when the connection is made. Pion's NACK
// generator, receiver reports and TWCC feedback each start a goroutine
// with a ticker when bound to a connection (every 100 ms for two of
// them), and most publisher connections never receive a stream: every
// participant has one, and a webinar's viewers publish nothing. Made
// lazily, such a connection has 3 goroutines and 21 wakeups a second
// fewer.
//
// It relies on what those three do with the connection's RTCP: they
// write with the writer they are given and pass it on unchanged, and
// read each stream's through the reader they return for it. What a
// reader bound before the chain reads before it is made (none is
// expected) passes by them.
type lazyFactory struct {
	factories []interceptor.Factory
}

func (f lazyFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	return &lazyInterceptor{factories: f.factories, id: id}, nil
}

// lazyInterceptor is one connection's lazyFactory chain.
type lazyInterceptor struct {
	interceptor.NoOp
	factories []interceptor.Factory
	id        string

	mu      sync.Mutex // guards the fields below
	inner   interceptor.Interceptor
	writer  interceptor.RTCPWriter // what BindRTCPWriter was given
	pending []*lazyReader          // bound before the chain was made
	closed  bool
}

// lazyReader is an RTCP reader bound before the chain was made: it reads
// through the chain once it is.
type lazyReader struct {
	lower interceptor.RTCPReader
	bound atomic.Pointer[interceptor.RTCPReader]
}

func (r *lazyReader) Read(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
	if c := r.bound.Load(); c != nil {
		return (*c).Read(b, a)
	}
	return r.lower.Read(b, a)
}

// BindRTCPReader binds reader to the chain, now or when it is made. Pion
// binds one per stream (a remote stream's after BindRemoteStream, so
// after the chain is made).
func (l *lazyInterceptor) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != nil {
		return l.inner.BindRTCPReader(reader)
	}
	r := &lazyReader{lower: reader}
	if !l.closed {
		l.pending = append(l.pending, r)
	}
	return r
}

// BindRTCPWriter keeps writer for the chain.
func (l *lazyInterceptor) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.mu.Lock()
	l.writer = writer
	l.mu.Unlock()
	return writer
}

// BindRemoteStream makes the chain with the first stream, then binds it.
func (l *lazyInterceptor) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	inner := l.make()
	if inner == nil {
		return reader
	}
	return inner.BindRemoteStream(info, reader)
}

// UnbindRemoteStream unbinds from the chain, if it was made.
func (l *lazyInterceptor) UnbindRemoteStream(info *interceptor.StreamInfo) {
	l.mu.Lock()
	inner := l.inner
	l.mu.Unlock()
	if inner != nil {
		inner.UnbindRemoteStream(info)
	}
}

// make returns the chain, made and bound to the connection's RTCP on the
// first call; nil after Close or if it cannot be made.
func (l *lazyInterceptor) make() interceptor.Interceptor {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != nil || l.closed {
		return l.inner
	}
	made := make([]interceptor.Interceptor, 0, len(l.factories))
	for _, f := range l.factories {
		i, err := f.NewInterceptor(l.id)
		if err != nil { // Pion's three never fail
			return nil
		}
		made = append(made, i)
	}
	inner := interceptor.NewChain(made)
	if l.writer != nil {
		inner.BindRTCPWriter(l.writer)
	}
	for _, r := range l.pending {
		c := inner.BindRTCPReader(r.lower)
		r.bound.Store(&c)
	}
	l.inner, l.pending = inner, nil
	return inner
}

// Close closes the chain, if it was made.
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
