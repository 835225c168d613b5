// Package congestiontest holds the tests that run the media-service
// binary against subscribers behind really constrained links (network
// namespaces and tc tbf from internal/netlab): the server must fit what
// it sends each subscriber to that subscriber's downlink, keep its
// audio, leave the others alone, and climb back when the link recovers.
// It has no code of its own; the congestion control is edge/sfu's.
package congestiontest
