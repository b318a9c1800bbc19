//! RFC 4733 decoding of the telephone-event packets in sipp's capture files
//! (/usr/share/sip-tester/dtmf_2833_*.pcap, from `apt-get install sip-tester`), as sent and
//! with loss, duplication and reordering applied.

use dtmf::{EventDecoder, TelephoneEvent};

const PCAP_DIR: &str = "/usr/share/sip-tester";

/// An RTP packet's timestamp and payload.
type Packet = (u32, Vec<u8>);

/// The RTP packets in a classic pcap of Ethernet/IPv4/UDP.
fn rtp_packets(path: &str) -> Vec<Packet> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e} (apt-get install sip-tester)"));
    assert_eq!(
        &bytes[0..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "{path}: not a little-endian pcap"
    );
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let caplen = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &bytes[at + 16..at + 16 + caplen];
        at += 16 + caplen;
        // Ethernet (14) + IPv4 (IHL·4) + UDP (8).
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[23] != 17 {
            continue;
        }
        let ihl = (frame[14] & 0x0f) as usize * 4;
        let udp = &frame[14 + ihl..];
        let rtp = rtp_rs::RtpReader::new(&udp[8..]).expect("RTP header");
        out.push((rtp.timestamp(), rtp.payload().to_vec()));
    }
    out
}

fn decode(packets: &[Packet]) -> String {
    let mut dec = EventDecoder::new();
    let mut digits = String::new();
    let mut presses = 0;
    for (ts, payload) in packets {
        for e in dec.push(*ts, payload).unwrap() {
            match e {
                TelephoneEvent::Pressed { .. } => presses += 1,
                TelephoneEvent::Released { digit, .. } => digits.push(digit.as_char()),
            }
        }
    }
    if let Some(TelephoneEvent::Released { digit, .. }) = dec.finish() {
        digits.push(digit.as_char());
    }
    assert_eq!(presses, digits.len(), "every press is released once");
    digits
}

fn all_files() -> Vec<(char, Vec<Packet>)> {
    let mut v: Vec<_> = (0..10)
        .map(|d| {
            (
                char::from(b'0' + d),
                format!("{PCAP_DIR}/dtmf_2833_{d}.pcap"),
            )
        })
        .collect();
    v.push(('#', format!("{PCAP_DIR}/dtmf_2833_pound.pcap")));
    v.push(('*', format!("{PCAP_DIR}/dtmf_2833_star.pcap")));
    v.into_iter().map(|(c, p)| (c, rtp_packets(&p))).collect()
}

#[test]
fn each_capture_gives_its_digit_once() {
    for (digit, packets) in all_files() {
        // Every capture repeats its end packet: the digit must still be reported once.
        let ends = packets.iter().filter(|p| p.1[1] & 0x80 != 0).count();
        assert!(ends >= 3, "{digit}: {ends} end packets");
        assert_eq!(decode(&packets), digit.to_string(), "capture for {digit}");
    }
}

#[test]
fn damaged_captures_still_give_the_digit_once() {
    for (digit, packets) in all_files() {
        let want = digit.to_string();
        let n = packets.len();
        // Start packets lost (the marker packet and the next two).
        assert_eq!(decode(&packets[3..]), want, "{digit}: lost start");
        // Every packet duplicated.
        let dup: Vec<_> = packets
            .iter()
            .flat_map(|p| [p.clone(), p.clone()])
            .collect();
        assert_eq!(decode(&dup), want, "{digit}: duplicated");
        // Neighbours swapped throughout, so that updates arrive after the end packets.
        let mut swapped = packets.clone();
        for i in (0..n - 1).step_by(2) {
            swapped.swap(i, i + 1);
        }
        assert_eq!(decode(&swapped), want, "{digit}: reordered");
        // Reversed entirely: the end packets come first.
        let reversed: Vec<_> = packets.iter().rev().cloned().collect();
        assert_eq!(decode(&reversed), want, "{digit}: reversed");
        // Only the last end packet survives.
        assert_eq!(
            decode(&packets[n - 1..]),
            want,
            "{digit}: only an end packet"
        );
        // No end packet at all: released when the stream ends.
        let no_end: Vec<_> = packets
            .iter()
            .filter(|p| p.1[1] & 0x80 == 0)
            .cloned()
            .collect();
        assert_eq!(decode(&no_end), want, "{digit}: no end packet");
    }
}

#[test]
fn the_captures_in_sequence_give_every_digit() {
    // Played one after another, each with its timestamp moved on by a second.
    let mut packets = Vec::new();
    let mut expect = String::new();
    for (i, (digit, mut p)) in all_files().into_iter().enumerate() {
        for pkt in &mut p {
            pkt.0 = pkt.0.wrapping_add(i as u32 * 8000);
        }
        packets.extend(p);
        expect.push(digit);
    }
    assert_eq!(decode(&packets), expect);
}
