//go:build linux

package sfu

import "testing"

// relayBatch counts the fan-outs the relay's batch is told of.
type relayBatch struct{ holds, releases int }

func (b *relayBatch) Hold()    { b.holds++ }
func (b *relayBatch) Release() { b.releases++ }

// TestBatchConnHoldsTheRelaysBatch checks that a fan-out's hold and
// release reach the relay's batch too, so that copies to relayed
// subscribers leave together at its end, as direct ones do.
func TestBatchConnHoldsTheRelaysBatch(t *testing.T) {
	b, _ := newTestBatchConn(t, "127.0.0.1:0")
	rb := &relayBatch{}
	b.routes.SetBatch(rb)
	b.hold()
	if rb.holds != 1 || rb.releases != 0 {
		t.Fatalf("after hold: relay batch held %d, released %d; want 1, 0", rb.holds, rb.releases)
	}
	b.release()
	if rb.releases != 1 {
		t.Errorf("after release: relay batch released %d; want 1", rb.releases)
	}
}
