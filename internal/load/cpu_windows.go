package load

import (
	"fmt"
	"syscall"
	"time"
)

// selfCPU is this process's user plus kernel CPU time.
func selfCPU() (time.Duration, error) {
	self, err := syscall.GetCurrentProcess()
	if err != nil {
		return 0, fmt.Errorf("GetCurrentProcess: %w", err)
	}
	var created, exited, kernel, user syscall.Filetime
	if err := syscall.GetProcessTimes(self, &created, &exited, &kernel, &user); err != nil {
		return 0, fmt.Errorf("GetProcessTimes: %w", err)
	}
	return filetimeSpan(kernel) + filetimeSpan(user), nil
}

// filetimeSpan reads a FILETIME that holds a span, not a date: a count of
// 100 ns intervals (Filetime.Nanoseconds would subtract the 1601 epoch).
func filetimeSpan(f syscall.Filetime) time.Duration {
	return time.Duration(int64(f.HighDateTime)<<32|int64(f.LowDateTime)) * 100
}
