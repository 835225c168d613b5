package congestiontest

import (
	"testing"

	"github.com/media-service/media-service/internal/servicetest"
)

func TestMain(m *testing.M) { servicetest.Main(m) }
