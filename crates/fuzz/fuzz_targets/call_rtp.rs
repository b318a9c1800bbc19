//! An answered verification call fed arbitrary datagrams (from the peer's address or from
//! another one) and clock ticks: records of a length byte, a flags byte (bit 0: from
//! elsewhere; bits 1-7: milliseconds to advance) and that many bytes. Nothing may panic, and
//! the call may approve only after a '#' it accepted from the peer.
#![no_main]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::call::{Output, Prompts, ScriptConfig, VerificationCall};
use engine::Outcome;
use libfuzzer_sys::fuzz_target;
use media::{Codec, Prompt};
use sip::sdp::{Answer, Direction};
use sip::CallEvent;

fuzz_target!(|data: &[u8]| {
    let p = Arc::new(Prompt::from_samples(vec![0; 800]).unwrap());
    let prompts = Prompts::uniform(p);
    let peer: SocketAddr = "127.0.0.1:30000".parse().unwrap();
    let other: SocketAddr = "127.0.0.1:30002".parse().unwrap();
    let mut now = Instant::now();
    let mut vc = VerificationCall::new(
        now,
        std::time::SystemTime::now(),
        ScriptConfig::default(),
        prompts,
        media::rtp::StreamStart::random(),
        None,
    );
    vc.handle_sip(
        now,
        CallEvent::Answered {
            answer: Answer {
                remote: peer,
                codec: Codec::Pcmu,
                codec_pt: 0,
                telephone_event_pt: Some(101),
                ptime: Some(20),
                direction: Direction::SendRecv,
                sdes: None,
            },
        },
    );
    let mut buf = [0u8; media::rtp::MAX_PACKET];
    let mut rest = data;
    let mut from_peer = false;
    while rest.len() >= 2 {
        let len = (rest[0] as usize).min(rest.len() - 2);
        let flags = rest[1];
        let bytes = &rest[2..2 + len];
        rest = &rest[2 + len..];
        now += Duration::from_millis(u64::from(flags >> 1));
        let from = if flags & 1 == 0 { peer } else { other };
        from_peer |= from == peer;
        vc.handle_rtp(now, from, bytes);
        vc.handle_timeout(now);
        while let Some(out) = vc.poll_output(&mut buf) {
            if let Output::Finished(_) = out {
                return;
            }
            if let Output::Hangup = out {
                vc.handle_sip(now, CallEvent::Ended(sip::EndReason::Hangup));
            }
        }
        // A verdict from keys needs packets from the peer: nobody else reaches the detectors.
        if matches!(
            vc.outcome(),
            Some(Outcome::Approved | Outcome::Denied | Outcome::FraudReported)
        ) {
            assert!(from_peer, "a key verdict from packets of another source");
        }
    }
});
