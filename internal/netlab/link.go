package netlab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Defaults of Cap.
const (
	// defaultBurst is tbf's bucket when Cap's burst is 0: a few full-size
	// packets, so a capped link still passes a 1200-byte RTP packet whole.
	defaultBurst = 8 << 10
	// defaultLatency is how long a packet may wait in tbf's queue when
	// Cap's latency is 0; beyond it tbf drops, as a shallow router would.
	defaultLatency = 50 * time.Millisecond
)

// Down cuts the path: the root-side veth goes down, so nothing passes in
// either direction; the namespace keeps its address and sockets.
func (h *Host) Down() error { return ip(context.Background(), "link", "set", h.HostDev, "down") }

// Up restores the path Down cut.
func (h *Host) Up() error { return ip(context.Background(), "link", "set", h.HostDev, "up") }

// Cap limits what flows into the namespace (the egress of the root-side
// veth: a subscriber's downlink) to rateKbit kbit/s with a tbf qdisc.
// burst is the bucket in bytes (0: 8 KiB); latency the longest a packet
// waits in the queue before tbf drops it (0: 50 ms). A second Cap replaces
// the first.
func (h *Host) Cap(rateKbit, burst int, latency time.Duration) error {
	return h.tbf(h.HostDev, nil, rateKbit, burst, latency)
}

// CapUplink is Cap for what flows out of the namespace (the egress of the
// namespace's veth end: a publisher's uplink).
func (h *Host) CapUplink(rateKbit, burst int, latency time.Duration) error {
	return h.tbf(h.NSDev, []string{"-n", h.Name}, rateKbit, burst, latency)
}

// Uncap removes both caps; a direction that has none is no error.
func (h *Host) Uncap() error {
	if err := h.untbf(h.HostDev, nil); err != nil {
		return err
	}
	return h.untbf(h.NSDev, []string{"-n", h.Name})
}

func (h *Host) tbf(dev string, ns []string, rateKbit, burst int, latency time.Duration) error {
	if rateKbit <= 0 {
		return fmt.Errorf("netlab: cap %s: rate %d kbit/s: must be positive", dev, rateKbit)
	}
	if burst <= 0 {
		burst = defaultBurst
	}
	if latency <= 0 {
		latency = defaultLatency
	}
	args := append(ns, "qdisc", "replace", "dev", dev, "root", "tbf",
		"rate", strconv.Itoa(rateKbit)+"kbit",
		"burst", strconv.Itoa(burst),
		"latency", strconv.FormatInt(latency.Microseconds(), 10)+"us")
	return run(context.Background(), "tc", args...)
}

func (h *Host) untbf(dev string, ns []string) error {
	err := run(context.Background(), "tc", append(ns, "qdisc", "del", "dev", dev, "root")...)
	// Deleting the root qdisc of a link that has only its default one is
	// refused with one of these, depending on the kernel.
	if err != nil && (strings.Contains(err.Error(), "No such file or directory") ||
		strings.Contains(err.Error(), "Cannot delete qdisc with handle of zero")) {
		return nil
	}
	return err
}
