package edge

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
)

// health is the exact /health body the platform's checks expect.
var health = map[string]string{"service": "media-service", "status": "ok"}

// handleHealth answers 200 while the process serves at all: liveness.
func (s *Server) handleHealth(c echo.Context) error {
	return c.JSON(http.StatusOK, health)
}

// handleReady answers 503 once draining begins, so a platform stops
// routing new clients here: readiness.
func (s *Server) handleReady(c echo.Context) error {
	if s.Draining() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "draining"})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}

// apiError is the JSON body of every refusal the HTTP API gives.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// URL, on a resume refused by a draining instance, is the signaling
	// URL of the instance its room moved to.
	URL string `json:"url,omitempty"`
}

// httpError renders every error Echo sees as a JSON body.
func (s *Server) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, body := http.StatusInternalServerError, apiError{Code: "internal", Message: "internal error"}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		code = he.Code
		body = apiError{Code: http.StatusText(code), Message: http.StatusText(code)}
		if msg, ok := he.Message.(string); ok {
			body.Message = msg
		}
	} else {
		s.log.Error("http_handler_failed", "path", c.Path(), "err", err)
	}
	if err := c.JSON(code, body); err != nil {
		s.log.Debug("http_error_write_failed", "err", err)
	}
}
