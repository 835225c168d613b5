package signal

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Data channels of the publisher connection. Both are negotiated in the
// publisher offer with fixed stream ids (negotiated: true on both sides),
// so neither side waits for an open handshake and the server owns them
// from the first message. Each carries frames both ways: the client sends
// on them and the server delivers the room's messages on them.
const (
	// DataReliableLabel and DataReliableID: ordered, retransmitted.
	DataReliableLabel = "_reliable"
	DataReliableID    = 0
	// DataLossyLabel and DataLossyID: unordered, maxRetransmits 0.
	DataLossyLabel = "_lossy"
	DataLossyID    = 1
)

// DataFrameVersion is the first byte of every data frame.
const DataFrameVersion = 1

// Error codes of the data channels, sent in `error` messages on the
// signaling WebSocket; the session goes on.
const (
	// CodeDataTooLarge: a data message above the instance's
	// MEDIA_DATA_MAX_MESSAGE; it was dropped.
	CodeDataTooLarge = "data_too_large"
	// CodeDataRateLimited: data messages beyond the participant's rate
	// were dropped (sent at most once a second).
	CodeDataRateLimited = "data_rate_limited"
	// CodeDataInvalid: a data message that is not a valid frame.
	CodeDataInvalid = "data_invalid"
	// CodeDataDropped: messages for this participant were dropped because
	// it did not take them fast enough (sent at most once a second).
	CodeDataDropped = "data_dropped"
)

// DataFrame is one message on a data channel, in both directions and with
// one layout (edge/PROTOCOL.md, "Data"):
//
//	byte 0         version (1)
//	byte 1         topic length T (0-255), then T bytes of topic (UTF-8)
//	next byte      identity count N (0-255), then N times:
//	               one length byte L (1-255) and L bytes of identity (UTF-8)
//	the rest       payload, opaque to the server
//
// From a client, Identities are the destinations (none: everyone else in
// the room). From the server, Identities holds exactly the sender's.
type DataFrame struct {
	Topic      string
	Identities []string
	Payload    []byte
}

var errShortFrame = errors.New("signal: data frame: truncated")

// ParseDataFrame parses b. Payload aliases b; Topic and Identities are
// copies.
func ParseDataFrame(b []byte) (DataFrame, error) {
	var f DataFrame
	if len(b) < 3 {
		return f, errShortFrame
	}
	if b[0] != DataFrameVersion {
		return f, fmt.Errorf("signal: data frame: version %d, want %d", b[0], DataFrameVersion)
	}
	topic, rest, err := cutString(b[1:])
	if err != nil {
		return f, fmt.Errorf("signal: data frame: topic: %w", err)
	}
	if len(rest) < 1 {
		return f, errShortFrame
	}
	n := int(rest[0])
	rest = rest[1:]
	if n > 0 {
		f.Identities = make([]string, 0, n)
	}
	for range n {
		var id string
		if id, rest, err = cutString(rest); err != nil {
			return f, fmt.Errorf("signal: data frame: identity: %w", err)
		}
		if id == "" {
			return f, errors.New("signal: data frame: empty identity")
		}
		f.Identities = append(f.Identities, id)
	}
	f.Topic, f.Payload = topic, rest
	return f, nil
}

// cutString reads one length-prefixed UTF-8 string.
func cutString(b []byte) (string, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, errShortFrame
	}
	s := b[1 : 1+int(b[0])]
	if !utf8.Valid(s) {
		return "", nil, errors.New("not UTF-8")
	}
	return string(s), b[1+len(s):], nil
}

// AppendDataFrame appends f's encoding to dst. It fails when the topic,
// an identity or the number of identities does not fit its length byte.
func AppendDataFrame(dst []byte, f DataFrame) ([]byte, error) {
	if len(f.Topic) > 255 || len(f.Identities) > 255 {
		return dst, errors.New("signal: data frame: topic or identity list above 255")
	}
	dst = append(dst, DataFrameVersion, byte(len(f.Topic)))
	dst = append(dst, f.Topic...)
	dst = append(dst, byte(len(f.Identities)))
	for _, id := range f.Identities {
		if id == "" || len(id) > 255 {
			return dst, fmt.Errorf("signal: data frame: identity of %d bytes", len(id))
		}
		dst = append(dst, byte(len(id)))
		dst = append(dst, id...)
	}
	return append(dst, f.Payload...), nil
}
