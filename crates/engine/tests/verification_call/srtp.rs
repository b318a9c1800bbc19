//! SRTP inside the call: what arrives is checked and decrypted, what is sent (RTP and the
//! RTCP report) is protected, a re-INVITE's new key is used for what arrives after it; and
//! the NTP time of sender reports follows the wall clock the call was given.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dtmf::Digit;
use engine::Outcome;
use engine::call::KeySource;
use media::srtp::Srtp;
use sip::CallEvent;

use crate::common::*;

/// RFC 4733 '#' packets (start, 3 updates, end) in plain RTP, sequence numbers from `seq`.
fn pound(seq: u16) -> Vec<Vec<u8>> {
    (0..5u16)
        .map(|i| {
            let dur = (i + 1) * 160;
            let payload = [
                Digit::Pound.event_code(),
                if i == 4 { 0x8a } else { 0x0a },
                (dur >> 8) as u8,
                dur as u8,
            ];
            rtp_rs::RtpPacketBuilder::new()
                .payload_type(101)
                .sequence(rtp_rs::Seq::from(seq + i))
                .timestamp(555_000)
                .ssrc(0xabcd)
                .payload(&payload)
                .build()
                .unwrap()
        })
        .collect()
}

/// The same, protected under the callee's key `fill` (see [`their_key`]).
fn protected_pound(fill: u8, seq: u16) -> Vec<Vec<u8>> {
    let key = their_key(fill);
    let mut srtp = Srtp::new(key.suite, &key.master);
    pound(seq)
        .iter()
        .map(|p| srtp.protect_rtp(p).unwrap())
        .collect()
}

#[test]
fn a_protected_pound_approves_and_what_is_sent_is_protected() {
    let mut sim = Sim::srtp(cfg(), their_key(0x22));
    sim.answer();
    sim.run_for(
        Duration::from_secs(30),
        &mut Far::Events(vec![(Digit::Pound, 250, 6)]),
    );
    let f = sim.seen.finished().unwrap().clone();
    assert_eq!(f.outcome, Outcome::Approved);
    assert_eq!(
        (f.keys[0].digit, f.keys[0].source),
        ('#', KeySource::Rfc4733)
    );
    assert_eq!(f.timings.time_to_key_ms, Some(5000));
    assert!(f.media.srtp);
    assert!(f.media.packets_received > 100);
    assert_eq!(f.media.packets_rejected, 0);
    // Every packet sent was checked and decrypted under our key (`Sim::drain`).
    assert!(sim.seen.rtp.len() > 100);
}

#[test]
fn packets_that_do_not_authenticate_are_rejected_and_counted() {
    let mut sim = Sim::srtp(cfg(), their_key(0x22));
    sim.answer();
    sim.run_for(Duration::from_secs(5), &mut Far::Audio(Vec::new()));
    // A '#' under the callee's key with its tag spoilt, one under another key, and one in
    // plain RTP: none is heard.
    let mut tampered = protected_pound(0x22, 9000);
    for p in &mut tampered {
        let last = p.len() - 1;
        p[last] ^= 1;
    }
    let other_key = protected_pound(0x44, 9100);
    for p in tampered.iter().chain(&other_key).chain(&pound(9200)) {
        sim.vc.handle_rtp(sim.now, PEER.parse().unwrap(), p);
    }
    sim.run_for(Duration::from_secs(40), &mut Far::Audio(Vec::new()));
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::NoInput);
    assert!(f.keys.is_empty(), "{:?}", f.keys);
    assert_eq!(f.media.packets_rejected, 15);
    assert!(f.media.srtp);

    // The same '#' with its tag intact is heard.
    let mut sim = Sim::srtp(cfg(), their_key(0x22));
    sim.answer();
    sim.run_for(Duration::from_secs(5), &mut Far::Audio(Vec::new()));
    for p in protected_pound(0x22, 9000) {
        sim.vc.handle_rtp(sim.now, PEER.parse().unwrap(), &p);
    }
    sim.run_for(Duration::from_secs(30), &mut Far::Audio(Vec::new()));
    assert_eq!(sim.outcome(), Outcome::Approved);
}

#[test]
fn the_rtcp_report_is_protected() {
    let mut sim = Sim::srtp(cfg(), their_key(0x22));
    sim.answer();
    sim.run_for(Duration::from_secs(6), &mut Far::Audio(Vec::new()));
    assert_eq!(sim.seen.rtcp.len(), 1);
    let (to, sent) = &sim.seen.rtcp[0];
    assert_eq!(*to, "127.0.0.1:30001".parse().unwrap());
    let sr = sim
        .near_srtp
        .as_mut()
        .unwrap()
        .unprotect_rtcp(sent)
        .expect("SRTCP under our key");
    // The SRTCP index (E flag set) and the 80-bit tag follow the report.
    assert_eq!(sent.len(), sr.len() + 4 + 10);
    assert_eq!(&sr[..2], &[0x81, 200]);
    assert_eq!(u32::from_be_bytes(sr[28..32].try_into().unwrap()), 0xabcd);
    assert_ne!(&sent[8..sr.len()], &sr[8..], "the report is encrypted");
}

#[test]
fn a_reinvite_with_a_new_key_rekeys_what_is_received() {
    let mut sim = Sim::srtp(cfg(), their_key(0x22));
    sim.answer();
    sim.run_for(Duration::from_secs(5), &mut Far::Audio(Vec::new()));
    let mut answer = sim.answer.clone();
    answer.sdes = Some(their_key(0x33));
    sim.vc
        .handle_sip(sim.now, CallEvent::MediaChanged { answer });
    sim.far_srtp = Some(Srtp::new(their_key(0x33).suite, &their_key(0x33).master));
    // A '#' under the old key is no longer heard...
    for p in protected_pound(0x22, 9000) {
        sim.vc.handle_rtp(sim.now, PEER.parse().unwrap(), &p);
    }
    sim.run_for(Duration::from_secs(2), &mut Far::Audio(Vec::new()));
    assert!(sim.seen.finished().is_none());
    // ...and one under the new key is.
    let mut far = Far::Events(vec![(Digit::Pound, 400, 6)]);
    sim.run_for(Duration::from_secs(30), &mut far);
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.outcome, Outcome::Approved);
    assert_eq!(f.keys.len(), 1);
    assert_eq!(f.media.packets_rejected, 5);
}

#[test]
fn the_sender_report_carries_the_wall_clock_it_was_given() {
    let mut sim = Sim::new(cfg());
    sim.answer();
    sim.run_for(Duration::from_secs(6), &mut Far::Audio(Vec::new()));
    // The report is due 5 s after the answer, 6.5 s after the call started at `wall`.
    let (_, sr) = &sim.seen.rtcp[0];
    let ntp = u64::from_be_bytes(sr[8..16].try_into().unwrap());
    let at = sim.wall + Duration::from_millis(6500);
    let unix = at.duration_since(UNIX_EPOCH).unwrap();
    assert_eq!(ntp >> 32, unix.as_secs() + 2_208_988_800);
    assert_eq!(ntp & 0xffff_ffff, 0x8000_0000, "half a second");
    assert!(sim.wall + Duration::from_secs(3600) < SystemTime::now());
}
