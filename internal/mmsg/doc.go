// Package mmsg sends a batch of UDP datagrams with one sendmmsg made as a
// raw system call, for the two places that batch: the SFU's media socket
// (edge/sfu) and the TURN relay's listener (turn). The media socket's
// reads (Receiver) and its writes that are not batched (Single: RTCP,
// STUN) are raw calls too.
//
// x/net's WriteBatch makes the same call through syscall.Syscall, which
// enters the scheduler's "syscall" state: when the process was idle the
// runtime's monitor thread (sysmon) is asleep and the call wakes it, and
// a call that outlasts one of sysmon's 20 µs polls (a fan-out's batch of
// 50 copies does) has its P taken away and handed to another thread, so
// sysmon keeps polling at its fastest rate. The socket is non-blocking
// and the call never waits: a full send buffer returns EAGAIN, and the
// caller then waits in Go's netpoller as any write does.
package mmsg
