package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/media-service/media-service/edge/web"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	tests := []struct {
		path     string
		status   int
		ctype    string
		contains string
	}{
		{"/", http.StatusOK, "text/html", `<script type="module" src="/assets/app.js">`},
		{"/assets/client.js", http.StatusOK, "text/javascript", "export class MediaClient"},
		{"/assets/app.js", http.StatusOK, "text/javascript", `from "./client.js"`},
		{"/assets/style.css", http.StatusOK, "text/css", ".tile"},
		{"/assets/", http.StatusNotFound, "application/json", `"not_found"`},
		{"/assets/missing.js", http.StatusNotFound, "", ""},
		{"/nope", http.StatusNotFound, "application/json", `"not_found"`},
		{"/static/index.html", http.StatusNotFound, "application/json", `"not_found"`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, header, body := get(t, srv.URL+tt.path)
			if status != tt.status {
				t.Fatalf("GET %s status = %d; want %d", tt.path, status, tt.status)
			}
			if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("GET %s Content-Type = %q; want prefix %q", tt.path, ct, tt.ctype)
			}
			if !strings.Contains(body, tt.contains) {
				t.Errorf("GET %s body does not contain %q", tt.path, tt.contains)
			}
			if csp := header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("GET %s Content-Security-Policy = %q; want script-src 'self'", tt.path, csp)
			}
			wantCORS := ""
			if strings.HasPrefix(tt.path, web.AssetPrefix) && !strings.HasSuffix(tt.path, "/") {
				wantCORS = "*" // the client module may be imported from other origins
			}
			if got := header.Get("Access-Control-Allow-Origin"); got != wantCORS {
				t.Errorf("GET %s Access-Control-Allow-Origin = %q; want %q", tt.path, got, wantCORS)
			}
		})
	}
}

func TestHandlerNotFoundIsAPIError(t *testing.T) {
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	_, _, body := get(t, srv.URL+"/v2/whatever")
	var e struct{ Code, Message string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Code != "not_found" || e.Message == "" {
		t.Errorf("404 body = %q (%v); want {code: not_found, message}", body, err)
	}
}

func get(t *testing.T, url string) (int, http.Header, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return res.StatusCode, res.Header, string(b)
}
