package edge

import (
	"net/http"
	"net/http/pprof"
)

// opsHandler serves the private ops endpoints: /metrics and /debug/pprof/.
// The pprof handlers are mounted explicitly rather than through the
// net/http/pprof default mux, so nothing else leaks onto this port.
func opsHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
