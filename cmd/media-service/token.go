package main

import (
	"errors"
	"io"
)

// token mints an access token; it comes with the media core.
func token(args []string, stdout, stderr io.Writer) error {
	return errors.New("token: not implemented yet")
}
