// Package edge is one edge instance of media-service: the Echo application
// with its signaling WebSocket, the sessions and rooms, the SFU forwarding,
// and the instance lifecycle with its drain.
//
// Files hold one concept each: the Server and its listeners (server.go),
// the /v1/rtc join (join.go), the drain (drain.go), rooms (room.go), the
// session manager (sessions.go), and a session: its state and lifetime
// (session.go), its signaling read loop and dispatch (signaling.go),
// negotiation (negotiation.go), ICE candidates (candidates.go), ICE
// restarts (icerestart.go), the tracks it publishes (publications.go) and
// receives (subscriptions.go), its data channels and their relay
// (datachannel.go), its WebSocket writer (wsclient.go), and how it
// outlives a lost WebSocket and is resumed (resume.go; the resume request
// itself is resumeadmit.go); the rooms' active speakers are ranked in
// speakers.go. The media itself is package edge/sfu.
//
// A session sees its instance only through a sessionDeps: the config
// values it reads, the metrics, the media engine, the relay's ICE
// servers, the rooms and the session manager, a logger, and the callback
// that gives its admission back; never the Server. Sessions stay in this
// package rather than one of their own for now: rooms, the manager and
// the join hand sessions to each other, and the tests of every bound
// reach into all three; moving them is the next step if a session starts
// reaching for more than its sessionDeps.
package edge
