package fleet_test

import (
	"log/slog"
	"testing"

	"github.com/media-service/media-service/edge/fleet"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial of the outage test to stderr.
	redis.SetLogger(fleet.RedisLog{Log: slog.New(slog.DiscardHandler)})
	goleak.VerifyTestMain(m)
}
