// Package web serves the browser side of media-service: the demo page at
// "/" and the JavaScript client module it loads from "/assets/".
//
// The files are embedded in the binary, so the service ships as one file
// and a page always speaks the protocol version of the instance that served
// it. There is no build step: the client is a plain ES module
// (assets/client.js) that applications can import as it is.
package web

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var files embed.FS

// AssetPrefix is the URL path under which the page's scripts and styles
// are served.
const AssetPrefix = "/assets/"

// contentSecurityPolicy lets the page load only its own scripts and styles
// and talk only to its own origin, plus WebSockets to any instance a token
// names (a reconnect may land on another instance). Inline scripts are
// refused, so an identity shown on the page can never run as code.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the demo page at "/" and its assets under AssetPrefix;
// every other path is a JSON 404 in the shape of the API's errors. Register
// it for every GET path the API does not claim.
func Handler() http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic("web: embedded static directory missing: " + err.Error()) // a build defect, not a runtime condition
	}
	assets := http.FileServerFS(static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setHeaders(w.Header())
		switch p := r.URL.Path; {
		case p == "/" || p == "/index.html":
			http.ServeFileFS(w, r, static, "index.html")
		case strings.HasPrefix(p, AssetPrefix) && !strings.HasSuffix(p, "/"):
			// Applications on other origins may import the client module.
			w.Header().Set("Access-Control-Allow-Origin", "*")
			assets.ServeHTTP(w, r)
		default:
			notFound(w)
		}
	})
}

// setHeaders marks every answer as revalidate-on-use (the embedded files
// change with each release and carry no modification time) and locks the
// page down with a content security policy.
func setHeaders(h http.Header) {
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": "not_found", "message": "no such page"})
}
