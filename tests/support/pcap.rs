//! RTP captures for sipp's `play_pcap_audio`, made by the tests from known audio and keys
//! (deterministic: fixed SSRC, sequence and timestamps).

use std::path::Path;
use std::time::Duration;

use dtmf::Digit;
use media::{Codec, FRAME_SAMPLES};

/// What the phone sends, in order.
pub enum Part {
    /// Audio (8 kHz), sent as PCMU in 20 ms packets.
    Audio(Vec<i16>),
    /// A key held this many milliseconds, sent as RFC 4733 events (payload type 101) in
    /// place of audio, with the end packet three times.
    Key(Digit, u32),
}

/// The SSRC of every capture made here.
pub const SSRC: u32 = 0x5eed_0001;

/// The RTP packets of `parts`, with their send times.
pub fn rtp(parts: &[Part]) -> Vec<(Duration, Vec<u8>)> {
    let mut out = Vec::new();
    let (mut seq, mut ts, mut frame) = (1000u16, 160_000u32, 0u32);
    let push = |out: &mut Vec<(Duration, Vec<u8>)>,
                pt: u8,
                mark: bool,
                ts: u32,
                payload: &[u8],
                frame: u32,
                seq: &mut u16| {
        let p = rtp_rs::RtpPacketBuilder::new()
            .payload_type(pt)
            .marked(mark)
            .sequence(rtp_rs::Seq::from(*seq))
            .timestamp(ts)
            .ssrc(SSRC)
            .payload(payload)
            .build()
            .expect("an RTP packet");
        *seq = seq.wrapping_add(1);
        out.push((Duration::from_millis(u64::from(frame) * 20), p));
    };
    for part in parts {
        match part {
            Part::Audio(pcm) => {
                for chunk in pcm.chunks(FRAME_SAMPLES) {
                    let mut payload = [Codec::Pcmu.silence(); FRAME_SAMPLES];
                    Codec::Pcmu.encode_into(chunk, &mut payload[..chunk.len()]);
                    push(&mut out, 0, frame == 0, ts, &payload, frame, &mut seq);
                    ts = ts.wrapping_add(FRAME_SAMPLES as u32);
                    frame += 1;
                }
            }
            Part::Key(digit, ms) => {
                let frames = (ms / 20).max(1);
                for i in 0..frames + 2 {
                    let end = i + 1 >= frames;
                    let duration = ((i.min(frames - 1) + 1) * 160) as u16;
                    let payload = [
                        digit.event_code(),
                        if end { 0x80 | 10 } else { 10 },
                        (duration >> 8) as u8,
                        duration as u8,
                    ];
                    push(
                        &mut out,
                        101,
                        i == 0,
                        ts,
                        &payload,
                        frame + i.min(frames - 1),
                        &mut seq,
                    );
                }
                ts = ts.wrapping_add(frames * FRAME_SAMPLES as u32);
                frame += frames;
            }
        }
    }
    out
}

/// Writes `packets` as a classic pcap of UDP datagrams over IPv4 and Ethernet (sipp
/// replaces the addresses and ports when it plays them).
pub fn write(path: &Path, packets: &[(Duration, Vec<u8>)]) {
    let mut f = Vec::new();
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&0i32.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&65_535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    for (at, payload) in packets {
        let udp_len = 8 + payload.len();
        let ip_len = 20 + udp_len;
        let mut frame = Vec::with_capacity(14 + ip_len);
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 1]);
        let sum: u32 = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        let sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!((sum & 0xffff) + (sum >> 16)) as u16).to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&40_000u16.to_be_bytes());
        frame.extend_from_slice(&10_000u16.to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(payload);
        f.extend_from_slice(&(at.as_secs() as u32).to_le_bytes());
        f.extend_from_slice(&at.subsec_micros().to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&frame);
    }
    std::fs::write(path, f).expect("write the capture");
}
