//! RTP for one call (RFC 3550), sans-IO, on rtp-rs: the sender numbers and stamps 20 ms
//! frames and writes RTCP sender reports; the receiver accepts packets only from the
//! negotiated peer and its SSRC (so injected packets go nowhere) and keeps the reception
//! statistics of RFC 3550 appendix A (loss, interarrival jitter, counts).
//!
//! Pacing (when to send) is the caller's: it calls [`RtpSender::packet`] every 20 ms.

use std::net::SocketAddr;

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

/// RTP header plus the largest payload sent (20 ms of G.711).
pub const MAX_PACKET: usize = 12 + 160;

/// Builds the outgoing stream.
#[derive(Clone, Debug)]
pub struct RtpSender {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    marker: bool,
    packets: u32,
    octets: u32,
}

/// Where a stream starts: its SSRC, first sequence number and first timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamStart {
    /// The SSRC.
    pub ssrc: u32,
    /// The first sequence number.
    pub sequence: u16,
    /// The first timestamp.
    pub timestamp: u32,
}

impl StreamStart {
    /// Each value drawn from the operating system's generator on its own (RFC 3550 §5.1:
    /// random, so that a packet from someone who did not see the stream stands out, and
    /// none says anything about another stream or another value).
    pub fn random() -> StreamStart {
        let mut b = [0u8; 10];
        getrandom::fill(&mut b).expect("the operating system's random generator works");
        StreamStart {
            ssrc: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            sequence: u16::from_le_bytes([b[4], b[5]]),
            timestamp: u32::from_le_bytes([b[6], b[7], b[8], b[9]]),
        }
    }
}

impl RtpSender {
    /// A stream that starts at `start` (give it [`StreamStart::random`]).
    pub fn starting(start: StreamStart) -> RtpSender {
        RtpSender::new(start.ssrc, start.sequence, start.timestamp)
    }

    /// A stream with this SSRC and initial sequence number and timestamp (RFC 3550 §5.1:
    /// give it random values).
    pub fn new(ssrc: u32, first_seq: u16, first_timestamp: u32) -> RtpSender {
        RtpSender {
            ssrc,
            seq: first_seq,
            timestamp: first_timestamp,
            marker: true,
            packets: 0,
            octets: 0,
        }
    }

    /// The SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The next packet carrying `payload` (of `samples` samples) with payload type `pt`,
    /// written into `out`; returns its length. The first packet, and the first after
    /// [`RtpSender::skip`], has the marker bit.
    pub fn packet(&mut self, pt: u8, payload: &[u8], samples: u32, out: &mut [u8]) -> usize {
        let n = RtpPacketBuilder::new()
            .payload_type(pt & 0x7f)
            .marked(self.marker)
            .sequence(Seq::from(self.seq))
            .timestamp(self.timestamp)
            .ssrc(self.ssrc)
            .payload(payload)
            .build_into(out)
            .unwrap_or(0);
        if n > 0 {
            self.marker = false;
            self.seq = self.seq.wrapping_add(1);
            self.timestamp = self.timestamp.wrapping_add(samples);
            self.packets = self.packets.wrapping_add(1);
            self.octets = self.octets.wrapping_add(payload.len() as u32);
        }
        n
    }

    /// Time passes without packets (silence not sent): the timestamp moves on and the next
    /// packet starts a talkspurt.
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.marker = true;
    }

    /// The RTP timestamp the next packet gets.
    pub fn next_timestamp(&self) -> u32 {
        self.timestamp
    }

    /// An RTCP sender report (RFC 3550 §6.4.1) with one reception report block when
    /// `report` is given. `ntp` is the wall clock in NTP format; the RTP time is the next
    /// packet's timestamp.
    pub fn sender_report(&self, ntp: u64, report: Option<&ReceptionReport>) -> Vec<u8> {
        let blocks = u8::from(report.is_some());
        let words = 6 + 6 * u16::from(blocks);
        let mut p = Vec::with_capacity(4 * (usize::from(words) + 1));
        p.push(0x80 | blocks);
        p.push(200);
        p.extend_from_slice(&words.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(&ntp.to_be_bytes());
        p.extend_from_slice(&self.timestamp.to_be_bytes());
        p.extend_from_slice(&self.packets.to_be_bytes());
        p.extend_from_slice(&self.octets.to_be_bytes());
        if let Some(r) = report {
            p.extend_from_slice(&r.ssrc.to_be_bytes());
            let lost = r.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
            p.extend_from_slice(&((u32::from(r.fraction_lost) << 24) | lost).to_be_bytes());
            p.extend_from_slice(&r.extended_highest_seq.to_be_bytes());
            p.extend_from_slice(&r.jitter.to_be_bytes());
            p.extend_from_slice(&r.last_sr.to_be_bytes());
            p.extend_from_slice(&r.delay_since_last_sr.to_be_bytes());
        }
        p
    }
}

/// A reception report block's fields (RFC 3550 §6.4.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceptionReport {
    /// The source reported on.
    pub ssrc: u32,
    /// Loss since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the start (negative with duplicates).
    pub cumulative_lost: i32,
    /// Cycles << 16 | highest sequence number.
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP time (0: none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// Why a packet was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not from the negotiated peer's address (or not from the latched source).
    #[error("RTP from an address other than the negotiated peer")]
    Source,
    /// From the peer but another SSRC than the one latched.
    #[error("RTP with an SSRC other than the peer's")]
    Ssrc,
    /// Not an RTP version 2 packet, or truncated.
    #[error("not an RTP packet")]
    Malformed,
}

/// Counts and statistics of the received stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtpStats {
    /// Packets accepted (duplicates included).
    pub received: u64,
    /// Packets expected from the sequence numbers seen.
    pub expected: u64,
    /// `expected - received` (negative with duplicates).
    pub lost: i64,
    /// Interarrival jitter in timestamp units (RFC 3550 A.8).
    pub jitter: u32,
    /// Packets dropped for their source address.
    pub dropped_source: u64,
    /// Packets dropped for their SSRC.
    pub dropped_ssrc: u64,
    /// Packets dropped as malformed.
    pub dropped_malformed: u64,
}

/// Which source addresses may start a call's stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Latching {
    /// Only the address and port of the SDP answer (the default: on a shared host another
    /// process could otherwise be first to send).
    #[default]
    Strict,
    /// Symmetric RTP: the first packet from the answer's IP address latches its port (a
    /// NAT in front of the peer may have changed it).
    SameHost,
}

/// The receiving side of one call's RTP.
#[derive(Clone, Debug)]
pub struct RtpReceiver {
    peer: SocketAddr,
    latching: Latching,
    timing_pt: Option<u8>,
    latched: Option<(SocketAddr, u32)>,
    base_seq: u32,
    max_seq: u16,
    /// Sequence number wraps seen, times 2^16 (wide enough that no stream can wrap it).
    cycles: u64,
    transit: Option<i64>,
    jitter_q4: i64,
    stats: RtpStats,
    /// Packets expected from the streams before the current one (the peer moved).
    expected_before: u64,
    expected_prior: u64,
    received_prior: u64,
}

impl RtpReceiver {
    /// A receiver for media from `peer` (the address in the SDP answer).
    pub fn new(peer: SocketAddr, latching: Latching) -> RtpReceiver {
        RtpReceiver {
            peer,
            latching,
            timing_pt: None,
            latched: None,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            transit: None,
            jitter_q4: 0,
            stats: RtpStats::default(),
            expected_before: 0,
            expected_prior: 0,
            received_prior: 0,
        }
    }

    /// Only packets of this payload type feed the jitter estimate. RFC 4733 event packets
    /// all carry their event's start timestamp, so counting them would read as jitter.
    pub fn with_timing_payload_type(mut self, pt: u8) -> RtpReceiver {
        self.timing_pt = Some(pt);
        self
    }

    /// The peer moved (re-INVITE): the next packet from the new address latches again.
    pub fn set_peer(&mut self, peer: SocketAddr) {
        if peer != self.peer {
            // What the old stream was expected to bring stays counted: the new one starts
            // its own numbering.
            self.expected_before = self.stats().expected;
            self.peer = peer;
            self.latched = None;
        }
    }

    /// Checks a packet from `from`, arriving at `arrival` (in timestamp units, e.g.
    /// samples since the call started), and returns it parsed when accepted.
    ///
    /// The first packet from the negotiated address (or, with [`Latching::SameHost`], from
    /// its IP address with any port) latches its source and SSRC; after that only that
    /// source and SSRC are accepted.
    pub fn accept<'a>(
        &mut self,
        from: SocketAddr,
        packet: &'a [u8],
        arrival: u32,
    ) -> Result<RtpReader<'a>, Rejected> {
        let Ok(reader) = RtpReader::new(packet) else {
            self.stats.dropped_malformed += 1;
            return Err(Rejected::Malformed);
        };
        match self.latched {
            None if from == self.peer
                || (self.latching == Latching::SameHost && from.ip() == self.peer.ip()) =>
            {
                self.latched = Some((from, reader.ssrc()));
                self.start(u16::from(reader.sequence_number()));
            }
            None => {
                self.stats.dropped_source += 1;
                return Err(Rejected::Source);
            }
            Some((source, _)) if source != from => {
                self.stats.dropped_source += 1;
                return Err(Rejected::Source);
            }
            Some((_, ssrc)) if ssrc != reader.ssrc() => {
                self.stats.dropped_ssrc += 1;
                return Err(Rejected::Ssrc);
            }
            Some(_) => self.update_seq(u16::from(reader.sequence_number())),
        }
        self.stats.received += 1;
        if self.timing_pt.is_some_and(|pt| pt != reader.payload_type()) {
            return Ok(reader);
        }
        // RFC 3550 A.8: J += (|D| - J) / 16, kept in 1/16 units.
        let transit = i64::from(arrival) - i64::from(reader.timestamp());
        if let Some(prev) = self.transit {
            let d = (transit - prev).abs();
            self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
        Ok(reader)
    }

    fn start(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.cycles = 0;
        self.transit = None;
    }

    fn update_seq(&mut self, seq: u16) {
        // RFC 3550 A.1, without probation: the source is already vetted by address and SSRC.
        let delta = seq.wrapping_sub(self.max_seq);
        if delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        }
    }

    /// The source latched, if any.
    pub fn source(&self) -> Option<(SocketAddr, u32)> {
        self.latched
    }

    /// The statistics so far.
    pub fn stats(&self) -> RtpStats {
        let mut s = self.stats;
        s.expected = self.expected_before;
        if self.latched.is_some() {
            let ext_max = self.cycles + u64::from(self.max_seq);
            s.expected += (ext_max + 1).saturating_sub(u64::from(self.base_seq));
        }
        if s.expected > 0 || self.latched.is_some() {
            s.lost = s.expected as i64 - s.received as i64;
        }
        s.jitter = (self.jitter_q4 >> 4) as u32;
        s
    }

    /// A reception report block for an RTCP report, and the interval counters reset.
    pub fn report(&mut self) -> Option<ReceptionReport> {
        let (_, ssrc) = self.latched?;
        let s = self.stats();
        let expected_interval = s.expected.saturating_sub(self.expected_prior);
        let received_interval = s.received.saturating_sub(self.received_prior);
        self.expected_prior = s.expected;
        self.received_prior = s.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        Some(ReceptionReport {
            ssrc,
            fraction_lost,
            cumulative_lost: s.lost.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            // RFC 3550 §6.4.1: the extended highest sequence number is 32 bits, and wraps.
            extended_highest_seq: (self.cycles as u32).wrapping_add(u32::from(self.max_seq)),
            jitter: s.jitter,
            last_sr: 0,
            delay_since_last_sr: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn streams_start_at_values_drawn_each_on_its_own() {
        let starts: Vec<super::StreamStart> =
            (0..64).map(|_| super::StreamStart::random()).collect();
        let distinct = |f: &dyn Fn(&super::StreamStart) -> u32| {
            starts
                .iter()
                .map(f)
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        // 64 draws of 32 random bits collide with a chance of 5e-7, of 16 bits 3 %.
        assert_eq!(distinct(&|s| s.ssrc), 64);
        assert_eq!(distinct(&|s| s.timestamp), 64);
        assert!(distinct(&|s| u32::from(s.sequence)) >= 60);
        // Not one value spread over the three fields.
        assert!(starts.iter().any(|s| s.ssrc as u16 != s.sequence));
    }

    use super::*;

    const PEER: &str = "127.0.0.1:6000";

    fn stream(ssrc: u32, seqs: &[u16]) -> Vec<Vec<u8>> {
        seqs.iter()
            .map(|&s| {
                RtpPacketBuilder::new()
                    .payload_type(0)
                    .sequence(Seq::from(s))
                    .timestamp(u32::from(s).wrapping_mul(160))
                    .ssrc(ssrc)
                    .payload(&[0xff; 160])
                    .build()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_sender_numbers_stamps_and_marks() {
        let mut tx = RtpSender::new(0x1234_5678, 65534, 4_294_967_000);
        let mut buf = [0u8; MAX_PACKET];
        let mut seen = Vec::new();
        for i in 0..4 {
            if i == 2 {
                tx.skip(160);
            }
            let n = tx.packet(8, &[0xd5; 160], 160, &mut buf);
            assert_eq!(n, MAX_PACKET);
            let r = RtpReader::new(&buf[..n]).unwrap();
            seen.push((
                u16::from(r.sequence_number()),
                r.timestamp(),
                r.mark(),
                r.payload_type(),
            ));
            assert_eq!(r.ssrc(), 0x1234_5678);
        }
        assert_eq!(
            seen,
            vec![
                (65534, 4_294_967_000, true, 8),
                (65535, 4_294_967_160, false, 8),
                (0, 184, true, 8),
                (1, 344, false, 8),
            ]
        );
        let sr = tx.sender_report(0x0102_0304_0506_0708, None);
        assert_eq!(sr.len(), 28);
        assert_eq!(&sr[..4], &[0x80, 200, 0, 6]);
        assert_eq!(
            &sr[20..28],
            &[0, 0, 0, 4, 0, 0, 2, 128],
            "4 packets, 640 octets"
        );
    }

    #[test]
    fn only_the_peer_and_its_ssrc_get_through() {
        let mut rx = RtpReceiver::new(PEER.parse().unwrap(), Latching::Strict);
        let good = stream(7, &[100, 101, 102]);
        let injected = stream(666, &[103]);
        assert!(rx.accept(PEER.parse().unwrap(), &good[0], 0).is_ok());
        // Another port on the same host, another host, another SSRC: all dropped.
        assert_eq!(
            rx.accept("127.0.0.1:6002".parse().unwrap(), &good[1], 160)
                .unwrap_err(),
            Rejected::Source
        );
        assert_eq!(
            rx.accept("10.0.0.1:6000".parse().unwrap(), &good[1], 160)
                .unwrap_err(),
            Rejected::Source
        );
        assert_eq!(
            rx.accept(PEER.parse().unwrap(), &injected[0], 160)
                .unwrap_err(),
            Rejected::Ssrc
        );
        assert_eq!(
            rx.accept(PEER.parse().unwrap(), b"\x00garbage", 160)
                .unwrap_err(),
            Rejected::Malformed
        );
        assert!(rx.accept(PEER.parse().unwrap(), &good[1], 160).is_ok());
        let s = rx.stats();
        assert_eq!(
            (
                s.received,
                s.dropped_source,
                s.dropped_ssrc,
                s.dropped_malformed
            ),
            (2, 2, 1, 1)
        );
    }

    #[test]
    fn a_nat_changed_port_is_latched_once_but_nobody_else() {
        let mut strict = RtpReceiver::new(PEER.parse().unwrap(), Latching::Strict);
        let p = stream(7, &[1, 2]);
        let natted = "127.0.0.1:41000".parse().unwrap();
        assert_eq!(
            strict.accept(natted, &p[0], 0).unwrap_err(),
            Rejected::Source
        );
        assert_eq!(strict.source(), None);

        let mut rx = RtpReceiver::new(PEER.parse().unwrap(), Latching::SameHost);
        let p = stream(7, &[1, 2]);
        let natted = "127.0.0.1:41000".parse().unwrap();
        assert!(rx.accept(natted, &p[0], 0).is_ok());
        assert_eq!(rx.source(), Some((natted, 7)));
        assert_eq!(
            rx.accept(PEER.parse().unwrap(), &p[1], 160).unwrap_err(),
            Rejected::Source
        );
    }

    #[test]
    fn event_packets_do_not_count_as_jitter() {
        let mut rx =
            RtpReceiver::new(PEER.parse().unwrap(), Latching::Strict).with_timing_payload_type(0);
        // Ten event packets 20 ms apart, all with the event's start timestamp.
        for i in 0..10u16 {
            let p = RtpPacketBuilder::new()
                .payload_type(101)
                .sequence(Seq::from(i))
                .timestamp(8000)
                .ssrc(7)
                .payload(&[11, 10, 0, 160])
                .build()
                .unwrap();
            rx.accept(PEER.parse().unwrap(), &p, u32::from(i) * 160)
                .unwrap();
        }
        assert_eq!(rx.stats().jitter, 0);
        assert_eq!(rx.stats().received, 10);
    }

    #[test]
    fn loss_wraparound_and_jitter_follow_rfc_3550() {
        let mut rx = RtpReceiver::new(PEER.parse().unwrap(), Latching::Strict);
        // 65530..=65535, 0..=9 with 3 and 4 lost: 16 expected, 14 received.
        let seqs: Vec<u16> = (65530..=65535)
            .chain(0..10)
            .filter(|s| *s != 3 && *s != 4)
            .collect();
        for (i, p) in stream(7, &seqs).iter().enumerate() {
            // Arrival on time except every other packet 40 samples late.
            let seq = seqs[i];
            let arrival = u32::from(seq)
                .wrapping_mul(160)
                .wrapping_add(if i % 2 == 1 { 40 } else { 0 });
            rx.accept(PEER.parse().unwrap(), p, arrival).unwrap();
        }
        let s = rx.stats();
        assert_eq!((s.expected, s.received, s.lost), (16, 14, 2));
        assert!(s.jitter > 10 && s.jitter < 40, "jitter {}", s.jitter);
        let r = rx.report().unwrap();
        assert_eq!(r.extended_highest_seq, (1 << 16) + 9);
        assert_eq!(r.fraction_lost, (2 * 256 / 16) as u8);
        assert_eq!(r.cumulative_lost, 2);
        assert_eq!(rx.report().unwrap().fraction_lost, 0, "nothing new since");
    }

    /// The peer moves (a re-INVITE) after a report, and its new stream starts its own
    /// numbering: the counts go on from where they were (the next report's interval used to
    /// go below zero, a panic in debug builds).
    #[test]
    fn a_moved_peer_starts_a_new_stream_and_the_counts_go_on() {
        let mut rx = RtpReceiver::new(PEER.parse().unwrap(), Latching::Strict);
        let seqs: Vec<u16> = (1000..1250).collect();
        for p in stream(7, &seqs) {
            rx.accept(PEER.parse().unwrap(), &p, 0).unwrap();
        }
        assert!(rx.report().is_some());
        let moved: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        rx.set_peer(moved);
        for p in stream(8, &[5, 6, 7]) {
            rx.accept(moved, &p, 0).unwrap();
        }
        let r = rx.report().unwrap();
        assert_eq!((r.ssrc, r.fraction_lost, r.cumulative_lost), (8, 0, 0));
        assert_eq!(rx.stats().expected, 253);
        assert_eq!(rx.stats().received, 253);
    }

    /// Sequence numbers that step by half the space count as a wrap every second packet:
    /// the cycle count must not overflow however long the stream goes.
    #[test]
    fn wraps_are_counted_without_overflow() {
        let mut rx = RtpReceiver::new(PEER.parse().unwrap(), Latching::Strict);
        let mut seq = 0u16;
        let p = stream(7, &[0]).remove(0);
        rx.accept(PEER.parse().unwrap(), &p, 0).unwrap();
        for _ in 0..140_000 {
            seq = seq.wrapping_add(0x7fff);
            rx.update_seq(seq);
        }
        let r = rx.report().unwrap();
        assert!(rx.stats().expected > u64::from(u32::MAX));
        assert_eq!(r.extended_highest_seq & 0xffff, u32::from(seq));
    }
}
