package sfu

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// rtpSealer is the direct writer's own SRTP encryption for the AEAD
// profiles (RFC 7714: AEAD_AES_128_GCM, AEAD_AES_256_GCM), the ones
// browsers and Pion negotiate first. Pion's context does the same sealing
// but, for each copy of a fan-out, parses again the header the writer has
// just marshalled, looks the SSRC's state up in a map and guesses its
// rollover count there; here the writer passes the header and its length
// and the rollover count it keeps per SSRC (rolloverCount), and the
// packet is sealed in place. With Cryptex (RFC 9335) it seals the header
// extensions too, for a packet without CSRCs (Cryptex moves those, and
// adds an extension header to a packet that has CSRCs and none: Pion's
// context does it); the other profiles stay with Pion's context.
type rtpSealer struct {
	aead cipher.AEAD
	salt [gcmIVLen]byte // the session salt
	iv   [gcmIVLen]byte // the packet's, here rather than on the stack: passed to an interface, it would escape
}

const (
	gcmIVLen  = 12
	gcmTagLen = 16

	// RFC 3711 section 4.3.1's labels of the SRTP session keys.
	labelSRTPEncryption = 0x00
	labelSRTPSalt       = 0x02
)

var errNotAEAD = errors.New("sfu: srtp: not an AEAD profile")

// newRTPSealer derives the SRTP session key and salt of profile from the
// master key and salt, or fails for a profile that is not AEAD.
func newRTPSealer(profile srtp.ProtectionProfile, masterKey, masterSalt []byte) (*rtpSealer, error) {
	switch profile {
	case srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAeadAes256Gcm:
	default:
		return nil, errNotAEAD
	}
	if len(masterSalt) != gcmIVLen {
		return nil, errNotAEAD
	}
	key, err := srtpKDF(labelSRTPEncryption, masterKey, masterSalt, len(masterKey))
	if err != nil {
		return nil, err
	}
	salt, err := srtpKDF(labelSRTPSalt, masterKey, masterSalt, gcmIVLen)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := &rtpSealer{aead: aead}
	copy(s.salt[:], salt)
	return s, nil
}

// srtpKDF derives the n-byte session key labelled label (RFC 3711 section
// 4.3 with a key derivation rate of 0, as DTLS-SRTP uses): the master
// salt with the label at its eighth byte, run as AES counter mode under
// the master key.
func srtpKDF(label byte, masterKey, masterSalt []byte, n int) ([]byte, error) {
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, err
	}
	var in [aes.BlockSize]byte
	copy(in[:], masterSalt)
	in[7] ^= label
	out := make([]byte, (n+aes.BlockSize-1)/aes.BlockSize*aes.BlockSize)
	for i := 0; i*aes.BlockSize < n; i++ {
		binary.BigEndian.PutUint16(in[aes.BlockSize-2:], uint16(i))
		block.Encrypt(out[i*aes.BlockSize:], in[:])
	}
	return out[:n], nil
}

// sealable reports whether sealPacket takes h: always without Cryptex;
// with it, a header without CSRCs whose extensions, if any, are RFC
// 8285's.
func sealable(h *rtp.Header, cryptex bool) bool {
	if !cryptex || !h.Extension && len(h.CSRC) == 0 {
		return true
	}
	return len(h.CSRC) == 0 && (h.ExtensionProfile == rtp.ExtensionProfileOneByte || h.ExtensionProfile == rtp.ExtensionProfileTwoByte)
}

// sealPacket seals the packet of header h (hl bytes, marshalled in buf
// before its payload, n bytes in all) under roc, as seal does; with
// Cryptex its header extensions as well, under their Cryptex profile.
// h must be sealable.
func (s *rtpSealer) sealPacket(buf []byte, h *rtp.Header, hl, n int, roc uint32, cryptex bool) int {
	if cryptex && h.Extension {
		// RFC 9335 section 5: the extension header's profile says
		// Cryptex, and only the fixed header and the extension header
		// are authenticated in the clear (no CSRCs lie between them).
		profile := uint16(rtp.CryptexProfileOneByte)
		if h.ExtensionProfile == rtp.ExtensionProfileTwoByte {
			profile = rtp.CryptexProfileTwoByte
		}
		binary.BigEndian.PutUint16(buf[rtpFixedHeader:], profile)
		hl = rtpFixedHeader + 4
	}
	return s.seal(buf, hl, n, h.SSRC, roc, h.SequenceNumber)
}

// rtpFixedHeader is the length of an RTP header without CSRCs and
// extensions.
const rtpFixedHeader = 12

// seal encrypts the packet in buf[:n], whose header is buf[:hl], in
// place under the rollover count roc, appends the tag and returns the
// packet's new length; buf must have gcmTagLen bytes to spare. The
// header is authenticated, not encrypted. Its one caller at a time holds
// the direct writer's lock.
func (s *rtpSealer) seal(buf []byte, hl, n int, ssrc, roc uint32, seq uint16) int {
	// RFC 7714 section 8.1: 0x0000, SSRC, ROC, SEQ, XORed with the salt.
	iv := &s.iv
	iv[0], iv[1] = 0, 0
	binary.BigEndian.PutUint32(iv[2:], ssrc)
	binary.BigEndian.PutUint32(iv[6:], roc)
	binary.BigEndian.PutUint16(iv[10:], seq)
	for i := range iv {
		iv[i] ^= s.salt[i]
	}
	return hl + len(s.aead.Seal(buf[hl:hl], iv[:], buf[hl:n], buf[:hl]))
}

// rolloverCount is one SSRC's sending index as the direct writer keeps
// it (RFC 3711 section 3.3.1: the rollover count, ROC, above the highest
// sequence number sent), for the packets of both paths: each packet's
// ROC comes from here, whichever context encrypts it.
type rolloverCount struct {
	index   uint64 // ROC<<16 | the highest sequence number
	started bool
}

// next returns the ROC of the packet numbered seq: of the three counts
// around the index's, the one that puts seq nearest the highest number
// (RFC 3711 appendix A; at count 0 a number far above is taken as from
// before the first, as Pion's context takes it), and raises the index
// when seq is the newest. The first packet starts the count at 0.
func (r *rolloverCount) next(seq uint16) uint32 {
	if !r.started {
		r.index, r.started = uint64(seq), true
		return 0
	}
	roc, last := uint32(r.index>>16), uint16(r.index)
	switch d := int32(seq) - int32(last); {
	case d > 1<<15 && roc > 0: // far above: before the last wrap
		roc--
	case d < -(1 << 15): // far below: after a wrap
		roc++
	}
	if idx := uint64(roc)<<16 | uint64(seq); idx > r.index {
		r.index = idx
	}
	return roc
}
