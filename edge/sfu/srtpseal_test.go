package sfu

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// TestRTPSealerMatchesPion: for both AEAD profiles, with Cryptex and
// without, every packet the sealer takes, sealed under its
// rolloverCount's count, is byte for byte what Pion's context makes of
// the same packet (Pion's subscribers decrypt it so), and a receiving
// context opens it to the packet sent: headers with CSRCs, a one-byte and
// a two-byte extension, padding, empty payloads; two SSRCs; sequence
// numbers across a rollover, with a packet late from before it and a
// retransmission. With Cryptex it leaves to Pion's context exactly the
// packets with CSRCs.
func TestRTPSealerMatchesPion(t *testing.T) {
	for _, tc := range []struct {
		profile srtp.ProtectionProfile
		keyLen  int
		cryptex srtp.CryptexMode
	}{
		{srtp.ProtectionProfileAeadAes128Gcm, 16, srtp.CryptexModeDisabled},
		{srtp.ProtectionProfileAeadAes256Gcm, 32, srtp.CryptexModeDisabled},
		{srtp.ProtectionProfileAeadAes128Gcm, 16, srtp.CryptexModeEnabled},
		{srtp.ProtectionProfileAeadAes256Gcm, 32, srtp.CryptexModeEnabled},
	} {
		cryptex := tc.cryptex != srtp.CryptexModeDisabled
		t.Run(fmt.Sprintf("%s/cryptex=%t", tc.profile, cryptex), func(t *testing.T) {
			key, salt := make([]byte, tc.keyLen), make([]byte, gcmIVLen)
			_, _ = rand.Read(key)
			_, _ = rand.Read(salt)
			seal, err := newRTPSealer(tc.profile, key, salt)
			if err != nil {
				t.Fatalf("newRTPSealer() = %v", err)
			}
			pion, err := srtp.CreateContext(key, salt, tc.profile, srtp.Cryptex(tc.cryptex))
			if err != nil {
				t.Fatal(err)
			}
			recv, err := srtp.CreateContext(key, salt, tc.profile, srtp.Cryptex(tc.cryptex))
			if err != nil {
				t.Fatal(err)
			}
			rocs := map[uint32]*rolloverCount{1: {}, 2: {}}
			buf, out := make([]byte, 1500), make([]byte, 1500)
			sealed := 0
			for i, p := range sealerPackets(t) {
				n, err := marshalRTP(buf, &p.h, p.payload)
				if err != nil {
					t.Fatal(err)
				}
				plain := bytes.Clone(buf[:n])
				want, err := pion.EncryptRTP(out[:0], plain, nil)
				if err != nil {
					t.Fatalf("packet %d: Pion's EncryptRTP() = %v", i, err)
				}
				roc := rocs[p.h.SSRC].next(p.h.SequenceNumber)
				if ok := sealable(&p.h, cryptex); ok != (!cryptex || len(p.h.CSRC) == 0) {
					t.Fatalf("packet %d (CSRCs %v, extension %t): sealable() = %t", i, p.h.CSRC, p.h.Extension, ok)
				} else if !ok {
					continue
				}
				sealed++
				got := buf[:seal.sealPacket(buf, &p.h, p.h.MarshalSize(), n, roc, cryptex)]
				if !bytes.Equal(got, want) {
					t.Fatalf("packet %d (SSRC %d, sequence number %d, count %d): sealed\n%x\nPion's context made\n%x", i, p.h.SSRC, p.h.SequenceNumber, roc, got, want)
				}
				opened, err := recv.DecryptRTP(nil, got, nil)
				if err != nil || !bytes.Equal(opened, plain) {
					t.Fatalf("packet %d: DecryptRTP() = %x, %v; want %x", i, opened, err, plain)
				}
			}
			if sealed < 20 {
				t.Errorf("%d packets sealed; want all but the 2 with CSRCs at least", sealed)
			}
		})
	}
}

// sealerPackets are TestRTPSealerMatchesPion's packets, in sending order.
func sealerPackets(t *testing.T) []struct {
	h       rtp.Header
	payload []byte
} {
	t.Helper()
	type packet = struct {
		h       rtp.Header
		payload []byte
	}
	var ps []packet
	add := func(ssrc uint32, seq uint16, f func(h *rtp.Header), payload int) {
		h := rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq, Timestamp: uint32(seq) * 90, PayloadType: 96}
		if f != nil {
			f(&h)
		}
		ps = append(ps, packet{h, bytes.Repeat([]byte{byte(seq)}, payload)})
	}
	oneByte := func(h *rtp.Header) {
		if err := h.SetExtension(3, []byte{1, 2}); err != nil {
			t.Fatal(err)
		}
	}
	twoByte := func(h *rtp.Header) {
		h.ExtensionProfile = rtp.ExtensionProfileTwoByte
		if err := h.SetExtension(1, bytes.Repeat([]byte{5}, 20)); err != nil {
			t.Fatal(err)
		}
	}
	csrc := func(h *rtp.Header) { h.CSRC = []uint32{11, 12} }
	padded := func(h *rtp.Header) { h.Padding, h.PaddingSize = true, 33 }
	for seq := uint16(65530); seq != 6; seq++ {
		add(1, seq, nil, 1100)
		add(2, seq-30000, oneByte, 160)
	}
	add(1, 65533, nil, 1100) // a retransmission from before the rollover
	add(1, 6, csrc, 500)
	add(1, 7, twoByte, 0)
	add(1, 8, padded, 0) // probe padding
	add(1, 9, func(h *rtp.Header) { oneByte(h); csrc(h); padded(h) }, 700)
	add(2, 60000, nil, 100)
	add(2, 100, nil, 100)   // a rollover
	add(2, 65000, nil, 100) // late, from before it
	return ps
}

// TestRolloverCount: counts across rollovers, late packets from before
// one, and a start past the middle of the number space.
func TestRolloverCount(t *testing.T) {
	var r rolloverCount
	for _, step := range []struct {
		seq uint16
		roc uint32
	}{
		{65000, 0}, {65535, 0}, {0, 1}, {65534, 0}, {5, 1}, {40000, 0},
		{20000, 1}, {40000, 1}, {60000, 1}, {10, 2}, {39000, 1}, {65535, 1}, {32000, 2}, {100, 2},
	} {
		if got := r.next(step.seq); got != step.roc {
			t.Errorf("next(%d) = %d; want %d (index %#x)", step.seq, got, step.roc, r.index)
		}
	}
	var fresh rolloverCount
	if got := fresh.next(60000); got != 0 {
		t.Errorf("first next(60000) = %d; want 0", got)
	}
	if got := fresh.next(1); got != 1 {
		t.Errorf("next(1) after 60000 = %d; want 1", got)
	}
}

// TestRTPSealerOnlyAEAD: the profile that is not AEAD has no sealer (the
// writer seals with its Pion context), nor does a salt of the wrong size.
func TestRTPSealerOnlyAEAD(t *testing.T) {
	if _, err := newRTPSealer(srtp.ProtectionProfileAes128CmHmacSha1_80, testKey, make([]byte, 14)); err == nil {
		t.Error("newRTPSealer(AES-CM) = nil error; want one")
	}
	if _, err := newRTPSealer(srtp.ProtectionProfileAeadAes128Gcm, testKey, make([]byte, 14)); err == nil {
		t.Error("newRTPSealer(AES-128-GCM, a 14-byte salt) = nil error; want one")
	}
}
