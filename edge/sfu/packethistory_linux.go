package sfu

import "syscall"

// ringAlloc returns n zeroed bytes for a NACK history, mapped outside the
// Go heap: the history is most of a video publication's memory, and on the
// heap every byte of it costs two of resident memory (the collector lets
// the heap grow to twice what is live before it runs). Mapped, it costs
// what it holds, and ringFree gives it back to the kernel at once when
// the publication ends, where freed heap lingers until the scavenger
// returns it. When the mapping fails the bytes come from the heap.
func ringAlloc(n int) (b []byte, mapped bool) {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return make([]byte, n), false
	}
	return b, true
}

// ringFree releases b from ringAlloc. Nothing may touch b afterwards: a
// read of unmapped memory is a fault, not a panic.
func ringFree(b []byte, mapped bool) {
	if mapped {
		_ = syscall.Munmap(b)
	}
}
