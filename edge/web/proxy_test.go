package web_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// frontDoor is a reverse proxy standing in for a platform's load balancer:
// each new request (WebSocket upgrades included) goes to the current
// target, and a WebSocket already open stays on the instance it reached, as
// when a platform sends new clients to a new machine while the old drains.
type frontDoor struct {
	srv    *httptest.Server
	target atomic.Pointer[url.URL]
}

// newFrontDoor serves on loopback, forwarding to target, until the test
// ends. The Host header is kept, so an instance's dev token names the front
// door in its signaling URL, as it would name the platform's address.
func newFrontDoor(t *testing.T, target string) *frontDoor {
	t.Helper()
	f := &frontDoor{}
	f.route(t, target)
	transport := &http.Transport{DisableKeepAlives: true} // no idle upstream connections to leak
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(f.target.Load())
			r.Out.Host = r.In.Host
		},
		Transport: transport,
	}
	f.srv = httptest.NewServer(proxy)
	t.Cleanup(func() {
		f.srv.Close()
		transport.CloseIdleConnections()
	})
	return f
}

// URL is the address clients use.
func (f *frontDoor) URL() string { return f.srv.URL }

// route sends new requests to target (a base URL).
func (f *frontDoor) route(t *testing.T, target string) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("front door: parse %q: %v", target, err)
	}
	f.target.Store(u)
}
