package main

import (
	"context"
	"errors"
)

func runForwarding(ctx context.Context, cfg config, rep *Report, pr *progress) error {
	return errors.New("not yet")
}

func runChurn(ctx context.Context, cfg config, rep *Report, pr *progress) error {
	return errors.New("not yet")
}
