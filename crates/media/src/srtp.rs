//! SRTP and SRTCP (RFC 3711) with the AES_CM_128_HMAC_SHA1_80 and _32 suites that SDES
//! (RFC 4568) negotiates: session keys derived from the master key and salt, AES counter
//! mode, HMAC-SHA1 tags, the rollover counter and a 64-packet replay window.
//!
//! One [`Srtp`] protects one direction: the gateway's own stream, or what it receives from
//! the peer (per SSRC, state kept only for packets that authenticate).

use std::collections::HashMap;

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Length of an SDES master key plus salt (16 + 14 bytes).
pub const MASTER_LEN: usize = 30;

/// The crypto suites of RFC 4568 §6.2 that are supported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit tag (SRTCP keeps 80 bits).
    AesCm128HmacSha1_32,
}

impl Suite {
    /// The name in an a=crypto line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite an a=crypto line names, if supported.
    pub fn from_name(name: &str) -> Option<Suite> {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => Some(Suite::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(Suite::AesCm128HmacSha1_32),
            _ => None,
        }
    }

    fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }
}

/// Why a packet was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// Too short, or a header that runs past the end.
    #[error("malformed SRTP/SRTCP packet")]
    Malformed,
    /// The authentication tag does not match: forged, damaged, or under another key.
    #[error("SRTP/SRTCP authentication failed")]
    Auth,
    /// Seen before, or older than the replay window.
    #[error("SRTP/SRTCP replay")]
    Replay,
}

type HmacSha1 = Hmac<Sha1>;

/// The session keys of one of SRTP or SRTCP.
#[derive(Clone)]
struct Keys {
    cipher: Aes128,
    salt: [u8; 14],
    auth: HmacSha1,
}

/// RFC 3711 §4.3.1 with a key derivation rate of 0: AES-CM under the master key with
/// IV = (label · 2^48 XOR master salt) · 2^16. `out` must be zeros.
fn derive(master: &Aes128, master_salt: &[u8; 14], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(master_salt);
    iv[7] ^= label;
    xor_keystream(master, &iv, out);
}

/// AES counter mode: XORs `data` with the keystream from counter block `iv` on, in place.
fn xor_keystream(cipher: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    let base = u128::from_be_bytes(*iv);
    for (j, chunk) in data.chunks_mut(16).enumerate() {
        let mut block = GenericArray::from((base.wrapping_add(j as u128)).to_be_bytes());
        cipher.encrypt_block(&mut block);
        for (d, k) in chunk.iter_mut().zip(block) {
            *d ^= k;
        }
    }
}

impl Keys {
    fn new(master_key: &[u8], master_salt: &[u8; 14], labels: [u8; 3]) -> Keys {
        let master = Aes128::new(GenericArray::from_slice(master_key));
        let (mut k, mut a, mut s) = ([0u8; 16], [0u8; 20], [0u8; 14]);
        derive(&master, master_salt, labels[0], &mut k);
        derive(&master, master_salt, labels[1], &mut a);
        derive(&master, master_salt, labels[2], &mut s);
        Keys {
            cipher: Aes128::new(GenericArray::from_slice(&k)),
            salt: s,
            auth: <HmacSha1 as Mac>::new_from_slice(&a).expect("HMAC takes any key length"),
        }
    }

    /// XORs `data` with the keystream for `ssrc` and packet index `index` (RFC 3711 §4.1.1).
    fn crypt(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        for (i, b) in ssrc.to_be_bytes().iter().enumerate() {
            iv[4 + i] ^= b;
        }
        for (i, b) in index.to_be_bytes()[2..].iter().enumerate() {
            iv[8 + i] ^= b;
        }
        xor_keystream(&self.cipher, &iv, data);
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut mac = self.auth.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

/// A 64-packet replay window over 48-bit (SRTP) or 31-bit (SRTCP) indexes.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    top: Option<u64>,
    seen: u64,
}

impl Window {
    fn check(&self, index: u64) -> Result<(), SrtpError> {
        match self.top {
            None => Ok(()),
            Some(top) if index > top => Ok(()),
            Some(top) if top - index >= 64 => Err(SrtpError::Replay),
            Some(top) if self.seen & (1 << (top - index)) != 0 => Err(SrtpError::Replay),
            Some(_) => Ok(()),
        }
    }

    fn accept(&mut self, index: u64) {
        match self.top {
            Some(top) if index <= top => {
                // Older than the window (only a sender going back; `check` refuses such a
                // packet on receipt), there is nothing to remember.
                if top - index < 64 {
                    self.seen |= 1 << (top - index);
                }
            }
            Some(top) => {
                let shift = index - top;
                self.seen = if shift >= 64 { 0 } else { self.seen << shift };
                self.seen |= 1;
                self.top = Some(index);
            }
            None => {
                self.seen = 1;
                self.top = Some(index);
            }
        }
    }
}

/// What is known of one sender's stream.
#[derive(Clone, Copy, Debug, Default)]
struct Stream {
    /// Highest SRTP index (ROC · 2^16 + SEQ) accepted or sent.
    rtp: Window,
    /// SRTCP indexes accepted.
    rtcp: Window,
    /// The next SRTCP index to send.
    rtcp_next: u32,
}

/// The most bytes protection adds to an RTP packet (the 80-bit authentication tag).
pub const MAX_OVERHEAD: usize = 10;

/// A receiver keeps state for at most this many SSRCs (a call has one sender).
const MAX_STREAMS: usize = 8;

/// SRTP and SRTCP for one direction of a call under one master key.
#[derive(Clone)]
pub struct Srtp {
    suite: Suite,
    rtp: Keys,
    rtcp: Keys,
    streams: HashMap<u32, Stream>,
}

impl std::fmt::Debug for Srtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys.
        write!(f, "Srtp({})", self.suite.name())
    }
}

/// The length of an RTP header (fixed part, CSRCs, extension), if it fits in `p`.
fn rtp_header_len(p: &[u8]) -> Option<usize> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let words = p.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= p.len()).then_some(len)
}

/// The index a received sequence number most likely has (RFC 3711 Appendix A), from the
/// highest index accepted so far.
fn guess_index(top: Option<u64>, seq: u16) -> u64 {
    let Some(top) = top else {
        return u64::from(seq);
    };
    let (roc, s_l) = (top >> 16, (top & 0xffff) as u16);
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.wrapping_sub(1)
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    ((v & 0xffff_ffff) << 16) | u64::from(seq)
}

impl Srtp {
    /// A context for `suite` under `master` (key then salt, as SDES carries them).
    pub fn new(suite: Suite, master: &[u8; MASTER_LEN]) -> Srtp {
        let (key, salt) = master.split_at(16);
        let salt: &[u8; 14] = salt.try_into().expect("14 bytes");
        Srtp {
            suite,
            rtp: Keys::new(key, salt, [0, 1, 2]),
            rtcp: Keys::new(key, salt, [3, 4, 5]),
            streams: HashMap::new(),
        }
    }

    /// The suite.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Encrypts and authenticates an RTP packet this side sends.
    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = packet.to_vec();
        out.resize(packet.len() + MAX_OVERHEAD, 0);
        let len = self.protect_rtp_in_place(&mut out, packet.len())?;
        out.truncate(len);
        Ok(out)
    }

    /// As [`Srtp::protect_rtp`], in place: the packet is `buf[..len]`, and `buf` has room
    /// for [`MAX_OVERHEAD`] more bytes; returns the protected packet's length.
    pub fn protect_rtp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tl = self.suite.rtp_tag_len();
        let packet = buf.get(..len).ok_or(SrtpError::Malformed)?;
        let hl = rtp_header_len(packet).ok_or(SrtpError::Malformed)?;
        if buf.len() < len + tl {
            return Err(SrtpError::Malformed);
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let stream = self.streams.entry(ssrc).or_default();
        let index = guess_index(stream.rtp.top, seq);
        stream.rtp.accept(index);
        let roc = (index >> 16) as u32;
        self.rtp.crypt(ssrc, index, &mut buf[hl..len]);
        let tag = self.rtp.tag(&[&buf[..len], &roc.to_be_bytes()]);
        buf[len..len + tl].copy_from_slice(&tag[..tl]);
        Ok(len + tl)
    }

    /// Checks and decrypts an RTP packet received; nothing is remembered of a packet that
    /// does not authenticate.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let tl = self.suite.rtp_tag_len();
        if packet.len() < 12 + tl {
            return Err(SrtpError::Malformed);
        }
        let (body, tag) = packet.split_at(packet.len() - tl);
        let hl = rtp_header_len(body).ok_or(SrtpError::Malformed)?;
        let seq = u16::from_be_bytes([body[2], body[3]]);
        let ssrc = u32::from_be_bytes([body[8], body[9], body[10], body[11]]);
        let known = self.streams.get(&ssrc).copied();
        if known.is_none() && self.streams.len() >= MAX_STREAMS {
            return Err(SrtpError::Replay);
        }
        let mut stream = known.unwrap_or_default();
        let index = guess_index(stream.rtp.top, seq);
        stream.rtp.check(index)?;
        let roc = (index >> 16) as u32;
        let want = self.rtp.tag(&[body, &roc.to_be_bytes()]);
        if !constant_time_eq(&want[..tl], tag) {
            return Err(SrtpError::Auth);
        }
        stream.rtp.accept(index);
        self.streams.insert(ssrc, stream);
        let mut out = body.to_vec();
        self.rtp.crypt(ssrc, index, &mut out[hl..]);
        Ok(out)
    }

    /// Encrypts and authenticates an RTCP compound packet this side sends.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if packet.len() < 8 {
            return Err(SrtpError::Malformed);
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let stream = self.streams.entry(ssrc).or_default();
        let index = stream.rtcp_next;
        stream.rtcp_next = (index + 1) & 0x7fff_ffff;
        let mut out = packet.to_vec();
        self.rtcp.crypt(ssrc, u64::from(index), &mut out[8..]);
        out.extend_from_slice(&(index | 0x8000_0000).to_be_bytes());
        let tag = self.rtcp.tag(&[&out]);
        out.extend_from_slice(&tag[..10]);
        Ok(out)
    }

    /// Checks and decrypts an SRTCP packet received.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        if packet.len() < 8 + 4 + 10 {
            return Err(SrtpError::Malformed);
        }
        let (body, tag) = packet.split_at(packet.len() - 10);
        let ssrc = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let known = self.streams.get(&ssrc).copied();
        if known.is_none() && self.streams.len() >= MAX_STREAMS {
            return Err(SrtpError::Replay);
        }
        let want = self.rtcp.tag(&[body]);
        if !constant_time_eq(&want[..10], tag) {
            return Err(SrtpError::Auth);
        }
        let (data, e_index) = body.split_at(body.len() - 4);
        let e_index = u32::from_be_bytes([e_index[0], e_index[1], e_index[2], e_index[3]]);
        let index = u64::from(e_index & 0x7fff_ffff);
        let mut stream = known.unwrap_or_default();
        stream.rtcp.check(index)?;
        stream.rtcp.accept(index);
        self.streams.insert(ssrc, stream);
        let mut out = data.to_vec();
        if e_index & 0x8000_0000 != 0 {
            self.rtcp.crypt(ssrc, index, &mut out[8..]);
        }
        Ok(out)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn key_derivation_matches_rfc_3711_b_3() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt: [u8; 14] = hex("0EC675AD498AFEEBB6960B3AABE6").try_into().unwrap();
        let master = Aes128::new(GenericArray::from_slice(&key));
        let (mut k, mut s, mut a) = ([0u8; 16], [0u8; 14], [0u8; 20]);
        derive(&master, &salt, 0, &mut k);
        derive(&master, &salt, 2, &mut s);
        derive(&master, &salt, 1, &mut a);
        assert_eq!(k.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(s.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(a.to_vec(), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    #[test]
    fn the_keystream_matches_rfc_3711_b_2() {
        let cipher = Aes128::new(GenericArray::from_slice(&hex(
            "2B7E151628AED2A6ABF7158809CF4F3C",
        )));
        let iv: [u8; 16] = hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000").try_into().unwrap();
        let mut ks = [0u8; 48];
        xor_keystream(&cipher, &iv, &mut ks);
        assert_eq!(
            ks.to_vec(),
            hex(
                "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0"
            )
        );
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    fn pair(suite: Suite) -> (Srtp, Srtp) {
        let master: [u8; MASTER_LEN] = std::array::from_fn(|i| i as u8 * 7 + 3);
        (Srtp::new(suite, &master), Srtp::new(suite, &master))
    }

    #[test]
    fn packets_round_trip_across_the_sequence_wrap_and_replays_and_forgeries_fail() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let (mut tx, mut rx) = pair(suite);
            let payload = [0x55u8; 160];
            // From below the wrap to above it: the rollover counter follows.
            for n in 0..40u32 {
                let seq = 65_520u16.wrapping_add(n as u16);
                let plain = rtp(seq, &payload);
                let sent = tx.protect_rtp(&plain).unwrap();
                assert_eq!(sent.len(), plain.len() + suite.rtp_tag_len());
                assert_ne!(&sent[12..172], &payload[..], "the payload is encrypted");
                assert_eq!(rx.unprotect_rtp(&sent).unwrap(), plain, "seq {seq}");
                assert_eq!(rx.unprotect_rtp(&sent), Err(SrtpError::Replay));
            }
            let mut forged = tx.protect_rtp(&rtp(30, &payload)).unwrap();
            forged[20] ^= 1;
            assert_eq!(rx.unprotect_rtp(&forged), Err(SrtpError::Auth));
            // A plain RTP packet is not SRTP.
            assert_eq!(rx.unprotect_rtp(&rtp(31, &payload)), Err(SrtpError::Auth));
            // Another key.
            let mut other = Srtp::new(suite, &[9u8; MASTER_LEN]);
            let foreign = other.protect_rtp(&rtp(32, &payload)).unwrap();
            assert_eq!(rx.unprotect_rtp(&foreign), Err(SrtpError::Auth));
            // Late but inside the window is fine once.
            let late = tx.protect_rtp(&rtp(33, &payload)).unwrap();
            let later = tx.protect_rtp(&rtp(34, &payload)).unwrap();
            assert!(rx.unprotect_rtp(&later).is_ok());
            assert!(rx.unprotect_rtp(&late).is_ok());
            assert_eq!(rx.unprotect_rtp(&late), Err(SrtpError::Replay));
        }
    }

    #[test]
    fn a_sender_going_back_past_the_window_is_protected_without_panicking() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        let payload = [0x55u8; 160];
        for seq in [1000, 10, 1001] {
            let sent = tx.protect_rtp(&rtp(seq, &payload)).unwrap();
            let got = rx.unprotect_rtp(&sent);
            if seq == 10 {
                assert_eq!(got, Err(SrtpError::Replay));
            } else {
                assert_eq!(got.unwrap(), rtp(seq, &payload));
            }
        }
    }

    #[test]
    fn rtcp_round_trips_with_its_own_index_and_rejects_forgeries() {
        let (mut tx, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        // A sender report header and sender SSRC, then 20 bytes of sender info.
        let mut sr = vec![0x80, 200, 0, 6, 0xde, 0xad, 0xbe, 0xef];
        sr.extend_from_slice(&[0x11; 20]);
        for _ in 0..3 {
            let sent = tx.protect_rtcp(&sr).unwrap();
            assert_eq!(sent.len(), sr.len() + 14);
            assert_ne!(&sent[8..28], &sr[8..]);
            assert_eq!(rx.unprotect_rtcp(&sent).unwrap(), sr);
            assert_eq!(rx.unprotect_rtcp(&sent), Err(SrtpError::Replay));
        }
        let mut forged = tx.protect_rtcp(&sr).unwrap();
        forged[9] ^= 0x80;
        assert_eq!(rx.unprotect_rtcp(&forged), Err(SrtpError::Auth));
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let (_, mut rx) = pair(Suite::AesCm128HmacSha1_80);
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x80) as u8).collect();
            assert!(rx.unprotect_rtp(&junk).is_err());
            assert!(rx.unprotect_rtcp(&junk).is_err());
        }
        // A header claiming an extension longer than the packet.
        let mut p = rtp(1, &[0xbe, 0xde, 0xff, 0xff]);
        p[0] |= 0x10;
        p.extend_from_slice(&[0; 30]);
        assert_eq!(rx.unprotect_rtp(&p), Err(SrtpError::Malformed));
    }
}
