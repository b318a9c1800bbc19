//! How calls end: the SIP endings, the timeouts and cancellation.

use std::time::Duration;

use engine::Outcome;
use media::PromptKind;
use sip::{CallEvent, EndReason};

use crate::common::*;

#[test]
fn no_key_repeats_the_instructions_then_ends_as_no_input() {
    let mut c = cfg();
    c.repeats = 2;
    c.first_key_timeout = Duration::from_secs(30);
    let mut sim = Sim::new(c);
    sim.answer();
    sim.run_for(Duration::from_secs(50), &mut Far::Audio(Vec::new()));
    assert_eq!(sim.outcome(), Outcome::NoInput);
    assert_eq!(
        sim.seen.prompts(),
        vec![
            PromptKind::Greeting,
            PromptKind::Instructions,
            PromptKind::Instructions,
            PromptKind::NoInputGoodbye
        ]
    );
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.timings.time_to_key_ms, None);
    assert_eq!(
        f.timings.time_to_verdict_ms,
        Some(1500 + instructions_ms() + 30_000)
    );
}

#[test]
fn sip_endings_map_to_outcomes() {
    let rejected = |status: u16, reason: &str| {
        CallEvent::Ended(EndReason::Rejected {
            status,
            reason: reason.into(),
        })
    };
    for (ev, outcome) in [
        (rejected(486, "Busy Here"), Outcome::Busy),
        (rejected(600, "Busy Everywhere"), Outcome::Busy),
        (rejected(603, "Decline"), Outcome::Declined),
        (
            rejected(404, "Not Found"),
            Outcome::Failed {
                status: Some(404),
                reason: "404 Not Found".into(),
            },
        ),
        (CallEvent::Ended(EndReason::NoAnswer), Outcome::NoAnswer),
        (
            CallEvent::Ended(EndReason::Timeout),
            Outcome::Failed {
                status: Some(408),
                reason: "no response from any trunk".into(),
            },
        ),
        (
            CallEvent::Ended(EndReason::AuthFailed { status: 407 }),
            Outcome::Failed {
                status: Some(407),
                reason: "407: the trunk refused the credentials".into(),
            },
        ),
    ] {
        let mut sim = Sim::new(cfg());
        sim.sip(Duration::from_millis(500), ev);
        assert_eq!(sim.outcome(), outcome);
        assert!(sim.seen.rtp.is_empty());
    }

    // The callee hangs up during the instructions.
    let mut sim = Sim::new(cfg());
    sim.answer();
    sim.sip(
        Duration::from_secs(5),
        CallEvent::Ended(EndReason::RemoteHangup),
    );
    assert_eq!(sim.outcome(), Outcome::HungUp);
    assert!(sim.seen.hangups.is_empty());
    let f = sim.seen.finished().unwrap();
    assert_eq!(f.timings.duration_ms, 6500);
}

#[test]
fn the_call_timeout_cancels_a_ringing_call_as_no_answer() {
    let mut c = cfg();
    c.call_timeout = Duration::from_secs(10);
    let mut sim = Sim::new(c);
    sim.sip(
        Duration::from_millis(200),
        CallEvent::Provisional {
            status: 180,
            early_media: None,
        },
    );
    sim.run_for(Duration::from_secs(20), &mut Far::Audio(Vec::new()));
    assert_eq!(sim.seen.hangups.len(), 1);
    assert_eq!(
        (sim.seen.hangups[0] - sim.seen.reports[0].0).as_millis(),
        10_000
    );
    assert_eq!(sim.outcome(), Outcome::NoAnswer);
}

#[test]
fn cancel_hangs_up_without_a_prompt() {
    let mut sim = Sim::new(cfg());
    sim.answer();
    sim.run_for(Duration::from_secs(2), &mut Far::Audio(Vec::new()));
    sim.vc.cancel(sim.now);
    sim.drain();
    assert_eq!(sim.outcome(), Outcome::Canceled);
    assert_eq!(
        sim.seen.prompts(),
        vec![PromptKind::Greeting],
        "no closing prompt"
    );
}
