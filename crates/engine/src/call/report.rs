//! What a call tells: its outcome, the report kept for the call log (keys, timings, media
//! figures) and the reports given as it goes.

use media::rtp::RtpStats;
use media::{Codec, PromptKind};
use sip::EndReason;

use super::keys::KeyPress;

/// How a verification call ended (the challenge's terminal states that a call decides).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// '#' alone.
    Approved,
    /// Other keys, then '#'.
    Denied,
    /// Number matching: digits other than the code, then '#' (the challenge is denied with
    /// reason `wrong_code`).
    WrongCode,
    /// A spoken code was read and the call ended without a fraud report: not a verdict,
    /// the challenge waits for the code to be checked on the page.
    CodeSpoken,
    /// '0' then '#'.
    FraudReported,
    /// Answered, but no '#' before the timeouts.
    NoInput,
    /// An answering machine answered.
    Voicemail,
    /// Rang until the ring timeout (or the call timeout) and was cancelled.
    NoAnswer,
    /// 486 Busy Here or 600 Busy Everywhere.
    Busy,
    /// 603 Decline.
    Declined,
    /// The callee hung up before a verdict.
    HungUp,
    /// Cancelled by the caller of the engine (the challenge was cancelled).
    Canceled,
    /// The trunk, the network or SIP failed.
    Failed {
        /// The SIP status that describes the failure, if there is one.
        status: Option<u16>,
        /// What happened.
        reason: String,
    },
}

impl Outcome {
    /// Every outcome's [`Outcome::name`] (the `outcome` label of `callverify_calls_total`).
    pub const NAMES: [&'static str; 13] = [
        "approved",
        "denied",
        "wrong_code",
        "code_spoken",
        "fraud_reported",
        "no_input",
        "voicemail",
        "no_answer",
        "busy",
        "declined",
        "hung_up",
        "canceled",
        "failed",
    ];

    /// The outcomes of answered calls, by name: the others (no answer, busy, declined,
    /// canceled, failed) never reached a person or a machine.
    pub const ANSWERED: [&'static str; 8] = [
        "approved",
        "denied",
        "wrong_code",
        "code_spoken",
        "fraud_reported",
        "no_input",
        "voicemail",
        "hung_up",
    ];

    /// The challenge state this outcome decides: the one mapping from outcomes to states.
    pub fn state(&self) -> store::ChallengeState {
        use store::ChallengeState;
        match self {
            Outcome::Approved => ChallengeState::Approved,
            Outcome::Denied | Outcome::WrongCode => ChallengeState::Denied,
            Outcome::CodeSpoken => ChallengeState::CodeSpoken,
            Outcome::FraudReported => ChallengeState::FraudReported,
            Outcome::NoInput => ChallengeState::NoInput,
            Outcome::Voicemail => ChallengeState::Voicemail,
            Outcome::NoAnswer => ChallengeState::NoAnswer,
            Outcome::Busy => ChallengeState::Busy,
            Outcome::Declined => ChallengeState::Declined,
            Outcome::HungUp => ChallengeState::HungUp,
            Outcome::Canceled => ChallengeState::Canceled,
            Outcome::Failed { .. } => ChallengeState::Failed,
        }
    }

    /// The snake_case name, as in the call log's outcome column and the logs: the name of
    /// its state, except `wrong_code` (whose state is `denied`).
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::WrongCode => "wrong_code",
            other => other.state().as_str(),
        }
    }

    /// The challenge's reason for this outcome: what went wrong for a failure,
    /// `"wrong_code"` for a wrong number-matching code.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Failed { reason, .. } => Some(reason),
            Outcome::WrongCode => Some("wrong_code"),
            _ => None,
        }
    }

    /// The SIP status that describes a failure, if there is one.
    pub fn sip_status(&self) -> Option<u16> {
        match self {
            Outcome::Failed { status, .. } => *status,
            _ => None,
        }
    }

    pub(super) fn closing_prompt(&self) -> Option<PromptKind> {
        match self {
            Outcome::Approved => Some(PromptKind::Verified),
            Outcome::Denied => Some(PromptKind::Denied),
            Outcome::WrongCode => Some(PromptKind::WrongCode),
            Outcome::CodeSpoken => Some(PromptKind::Goodbye),
            Outcome::FraudReported => Some(PromptKind::FraudReported),
            Outcome::NoInput => Some(PromptKind::NoInputGoodbye),
            _ => None,
        }
    }

    pub(super) fn from_end(reason: &EndReason, answered: bool, timed_out: bool) -> Outcome {
        match reason {
            EndReason::RemoteHangup | EndReason::Hangup if answered => Outcome::HungUp,
            EndReason::NoAnswer => Outcome::NoAnswer,
            EndReason::Canceled if timed_out => Outcome::NoAnswer,
            EndReason::Canceled => Outcome::Canceled,
            EndReason::Rejected { status, .. } if *status == 486 || *status == 600 => Outcome::Busy,
            EndReason::Rejected { status: 603, .. } => Outcome::Declined,
            other => Outcome::Failed {
                status: other.sip_status(),
                reason: end_reason_text(other),
            },
        }
    }
}

fn end_reason_text(r: &EndReason) -> String {
    match r {
        EndReason::Rejected { status, reason } => format!("{status} {reason}"),
        EndReason::AuthFailed { status } => format!("{status}: the trunk refused the credentials"),
        EndReason::Timeout => "no response from any trunk".into(),
        EndReason::TransportError => "no trunk could be reached".into(),
        EndReason::BadAnswer(why) => why.clone(),
        EndReason::Hangup | EndReason::RemoteHangup => "the call ended before an answer".into(),
        EndReason::NoAnswer | EndReason::Canceled => "cancelled".into(),
    }
}

/// The durations the call log keeps, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Timings {
    /// INVITE to the first ringing (180/183) response.
    pub post_dial_delay_ms: Option<u64>,
    /// INVITE to the answer.
    pub time_to_answer_ms: Option<u64>,
    /// Answer to the first key.
    pub time_to_key_ms: Option<u64>,
    /// INVITE to the verdict.
    pub time_to_verdict_ms: Option<u64>,
    /// INVITE to the end of the call.
    pub duration_ms: u64,
}

/// RTP figures of the call, as kept for the call log.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct MediaReport {
    /// Codec used ("PCMU" or "PCMA").
    pub codec: Option<&'static str>,
    /// RTP packets sent.
    pub packets_sent: u64,
    /// Packets accepted from the peer.
    pub packets_received: u64,
    /// Packets lost (from the peer's sequence numbers).
    pub packets_lost: i64,
    /// Interarrival jitter in milliseconds.
    pub jitter_ms: f64,
    /// Packets dropped because they came from another address or SSRC, or (with SRTP) did
    /// not authenticate.
    pub packets_rejected: u64,
    /// Packets dropped as not RTP.
    pub packets_malformed: u64,
    /// Whether media went as SRTP (the answer took the SDES offer).
    pub srtp: bool,
}

impl MediaReport {
    pub(super) fn from_stats(codec: Option<Codec>, sent: u64, s: &RtpStats) -> MediaReport {
        MediaReport {
            codec: codec.map(Codec::name),
            packets_sent: sent,
            packets_received: s.received,
            packets_lost: s.lost,
            jitter_ms: f64::from(s.jitter) / 8.0,
            packets_rejected: s.dropped_source + s.dropped_ssrc,
            packets_malformed: s.dropped_malformed,
            srtp: false,
        }
    }
}

/// Everything known about a finished call.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CallReport {
    /// The verdict or the failure.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Why, in words (e.g. how long the greeting was for `voicemail`).
    pub detail: Option<String>,
    /// The trunk the call went out on.
    pub trunk: Option<String>,
    /// How the person was asked to confirm: `"pound"`, `"keypad_code"` or `"spoken_code"`
    /// (the mode only, never its code).
    pub confirmation: &'static str,
    /// Number matching: whether the digits entered before '#' were the code (`None`
    /// without such an entry, and always for the other modes: a spoken code is checked by
    /// the page, not the call).
    pub code_matched: Option<bool>,
    /// The keys pressed, in order.
    pub keys: Vec<KeyPress>,
    /// Durations.
    pub timings: Timings,
    /// RTP figures.
    pub media: MediaReport,
}

/// What happened, reported as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// The INVITE went out through this trunk.
    Calling {
        /// The trunk.
        trunk: String,
    },
    /// The phone rings (180/183).
    Ringing {
        /// The status.
        status: u16,
    },
    /// The callee answered.
    Answered {
        /// The codec settled.
        codec: Codec,
    },
    /// A prompt started playing.
    Prompt(PromptKind),
    /// A key was pressed.
    Key(KeyPress),
    /// A key came before the instructions started and was dropped.
    KeyIgnored(KeyPress),
    /// A spoken code's first full reading has finished playing (its last digit is out): the
    /// challenge may now wait for the code on the page. Given once; it carries no digit.
    CodeSpoken,
    /// The verdict, before the closing prompt.
    Verdict(Outcome),
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    /// `NAMES` holds every outcome's name once (the metrics' series are made from it).
    #[test]
    fn names_cover_every_outcome() {
        let all = [
            Outcome::Approved,
            Outcome::Denied,
            Outcome::WrongCode,
            Outcome::CodeSpoken,
            Outcome::FraudReported,
            Outcome::NoInput,
            Outcome::Voicemail,
            Outcome::NoAnswer,
            Outcome::Busy,
            Outcome::Declined,
            Outcome::HungUp,
            Outcome::Canceled,
            Outcome::Failed {
                status: None,
                reason: String::new(),
            },
        ];
        let names: Vec<&str> = all.iter().map(Outcome::name).collect();
        assert_eq!(names, Outcome::NAMES);
        for a in Outcome::ANSWERED {
            assert!(Outcome::NAMES.contains(&a), "{a}");
        }
    }
}
