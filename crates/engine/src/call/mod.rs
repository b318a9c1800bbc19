//! The verification call as a sans-IO state machine: it takes the SIP call's events, the
//! RTP packets that arrive and the current time, and says which RTP and RTCP packets to
//! send, when to hang up, and what happened (state changes, keys, the verdict, the final
//! report). [`crate::call_driver`] moves the bytes; tests drive it with a simulated clock.
//!
//! The script: on answer the greeting plays, then the instructions ("press # to finish, or 0
//! then # to report fraud"), repeated up to [`ScriptConfig::repeats`] times. '#' alone
//! approves, '0#' reports fraud, any other digits followed by '#' deny. A key stops the
//! prompt (barge-in). After the verdict the matching closing prompt plays and the call is
//! hung up. Keys come from the in-band detector on the decoded audio and from RFC 4733
//! events, both always on; the same key seen by both counts once.
//!
//! Answering machines: the far end's audio goes through a voice detector. A continuous run
//! of speech that starts soon after the answer and lasts longer than a person's "hello"
//! ends the call as `voicemail`. A '#' heard while a long run of speech is still going on is
//! held until the speech stops, so a recorded greeting that contains the key cannot approve.
//!
//! Keys that come before the instructions start playing (while the greeting plays) are
//! dropped and reported ([`Report::KeyIgnored`]): nobody has been asked for a key yet, so a
//! key then is a recording (a voicemail greeting set to end in '#') or a reflex, not the
//! holder's answer. The time for the first key counts from the instructions.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtmf::{Detector, Digit, DigitEvent, EventDecoder, TelephoneEvent};
use media::rtp::{Latching, ReceptionReport, RtpReceiver, RtpSender, RtpStats, StreamStart};
use media::{Codec, FRAME_SAMPLES, Prompt, PromptKind, Vad};
use sip::sdp::Answer;
use sip::{CallEvent, EndReason};

/// One RTP frame's duration.
pub const FRAME: Duration = Duration::from_millis(20);

/// Frames sent at once when the task woke late; beyond this the stream skips ahead.
const MAX_CATCH_UP: u32 = 3;

/// Speech already this long when a '#' arrives holds the verdict until it stops.
const HOLD_AFTER_SPEECH: Duration = Duration::from_millis(800);

/// The same key from the other source (in-band vs RFC 4733) this close in time is one press.
const SAME_PRESS: Duration = Duration::from_millis(300);

/// Silence after the closing prompt before hanging up (200 ms).
const CLOSING_TAIL_FRAMES: u32 = 10;

/// At most this many keys before '#' are kept.
const MAX_KEYS: usize = 16;

/// At most this many keys are reported and kept for the call log (and as many dropped keys
/// reported): a caller pressing without end (events are cheap to send) cannot grow the call's
/// memory or its log. The verdict still follows every key.
const MAX_KEYS_LOGGED: usize = 64;

/// Answering-machine detection settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmdConfig {
    /// Whether to detect answering machines at all.
    pub enabled: bool,
    /// Continuous speech longer than this is a recorded greeting.
    pub max_greeting: Duration,
    /// Silence shorter than this does not end a run of speech.
    pub gap: Duration,
    /// Only runs that start within this time after the answer are judged.
    pub window: Duration,
}

impl Default for AmdConfig {
    fn default() -> Self {
        AmdConfig {
            enabled: true,
            max_greeting: Duration::from_millis(4000),
            gap: Duration::from_millis(600),
            window: Duration::from_millis(5000),
        }
    }
}

/// How the script runs and how long it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptConfig {
    /// How many times the instructions play (at least 1).
    pub repeats: u32,
    /// Silence between two plays of the instructions.
    pub pause: Duration,
    /// From the answer: no key by then ends the call as `no_input`.
    pub first_key_timeout: Duration,
    /// After a key other than '#': no further key by then ends the call as `no_input`.
    pub digit_timeout: Duration,
    /// The whole call, from the INVITE: ringing, script and closing prompt.
    pub call_timeout: Duration,
    /// Answering-machine detection.
    pub amd: AmdConfig,
    /// Which sources may start the far end's RTP stream.
    pub latching: Latching,
    /// Interval of RTCP sender reports.
    pub rtcp_interval: Duration,
}

impl Default for ScriptConfig {
    fn default() -> Self {
        ScriptConfig {
            repeats: 3,
            pause: Duration::from_millis(1000),
            first_key_timeout: Duration::from_secs(40),
            digit_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(120),
            amd: AmdConfig::default(),
            latching: Latching::Strict,
            rtcp_interval: Duration::from_secs(5),
        }
    }
}

/// The recorded prompts of one language.
#[derive(Clone, Debug)]
pub struct Prompts {
    /// "This is your sign-in verification call."
    pub greeting: Arc<Prompt>,
    /// "Press # to finish, or 0 then # to report fraud."
    pub instructions: Arc<Prompt>,
    /// After approval.
    pub verified: Arc<Prompt>,
    /// After denial.
    pub denied: Arc<Prompt>,
    /// After a fraud report.
    pub fraud_reported: Arc<Prompt>,
    /// After no input.
    pub no_input: Arc<Prompt>,
}

impl Prompts {
    /// The prompts of `lang` from a loaded library; `None` when one is missing.
    pub fn from_library(lib: &media::PromptLibrary, lang: media::Language) -> Option<Prompts> {
        let get = |k| lib.get(lang, k);
        Some(Prompts {
            greeting: get(PromptKind::Greeting)?,
            instructions: get(PromptKind::Instructions)?,
            verified: get(PromptKind::Verified)?,
            denied: get(PromptKind::Denied)?,
            fraud_reported: get(PromptKind::FraudReported)?,
            no_input: get(PromptKind::NoInputGoodbye)?,
        })
    }

    fn get(&self, kind: PromptKind) -> &Arc<Prompt> {
        match kind {
            PromptKind::Greeting => &self.greeting,
            PromptKind::Instructions => &self.instructions,
            PromptKind::Verified => &self.verified,
            PromptKind::Denied => &self.denied,
            PromptKind::FraudReported => &self.fraud_reported,
            PromptKind::NoInputGoodbye => &self.no_input,
        }
    }
}

/// How a verification call ended (the challenge's terminal states that a call decides).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// '#' alone.
    Approved,
    /// Other keys, then '#'.
    Denied,
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
    /// The snake_case name, as stored and printed.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Denied => "denied",
            Outcome::FraudReported => "fraud_reported",
            Outcome::NoInput => "no_input",
            Outcome::Voicemail => "voicemail",
            Outcome::NoAnswer => "no_answer",
            Outcome::Busy => "busy",
            Outcome::Declined => "declined",
            Outcome::HungUp => "hung_up",
            Outcome::Canceled => "canceled",
            Outcome::Failed { .. } => "failed",
        }
    }

    fn closing_prompt(&self) -> Option<PromptKind> {
        match self {
            Outcome::Approved => Some(PromptKind::Verified),
            Outcome::Denied => Some(PromptKind::Denied),
            Outcome::FraudReported => Some(PromptKind::FraudReported),
            Outcome::NoInput => Some(PromptKind::NoInputGoodbye),
            _ => None,
        }
    }

    fn from_end(reason: &EndReason, answered: bool, timed_out: bool) -> Outcome {
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

/// Where a key was heard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The in-band detector, on the decoded audio.
    InBand,
    /// RFC 4733 telephone-event packets.
    Rfc4733,
}

impl KeySource {
    /// The name in reports and the call log (as serialized).
    pub fn name(self) -> &'static str {
        match self {
            KeySource::InBand => "in_band",
            KeySource::Rfc4733 => "rfc4733",
        }
    }
}

/// One key press, as kept for the call log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyPress {
    /// The key ('0'–'9', '*', '#', 'A'–'D').
    pub digit: char,
    /// Where it was heard.
    pub source: KeySource,
    /// When, in milliseconds since the INVITE.
    pub at_ms: u64,
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
    fn from_stats(codec: Option<Codec>, sent: u64, s: &RtpStats) -> MediaReport {
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
    /// The verdict, before the closing prompt.
    Verdict(Outcome),
    /// The call is over: the last report.
    Finished(Box<CallReport>),
}

/// What [`VerificationCall::poll_output`] asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send the RTP packet written into the buffer (`len` bytes) to `to`.
    Rtp {
        /// The peer's RTP address.
        to: SocketAddr,
        /// Bytes written.
        len: usize,
    },
    /// Send this RTCP packet to `to`.
    Rtcp {
        /// The peer's RTCP address (RTP port + 1).
        to: SocketAddr,
        /// The packet.
        bytes: Vec<u8>,
    },
    /// Hang the SIP call up (CANCEL or BYE).
    Hangup,
    /// Something happened.
    Report(Report),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// INVITE sent, no answer yet.
    Dialing,
    /// Answered, waiting for keys.
    Script,
    /// Verdict given, closing prompt playing.
    Closing,
    /// Hangup asked for, waiting for the SIP call to end.
    HangingUp,
    /// The SIP call ended; the final report is out.
    Done,
}

#[derive(Clone, Debug)]
enum Segment {
    Prompt(PromptKind),
    Silence(u32),
}

/// The audio to send, frame by frame.
#[derive(Debug, Default)]
struct Playout {
    queue: VecDeque<Segment>,
    /// Frames already sent of the segment in front.
    pos: usize,
    /// A prompt whose first frame was just taken.
    started: Option<PromptKind>,
}

#[derive(Debug)]
struct Media {
    answer: Answer,
    tx: RtpSender,
    rx: RtpReceiver,
    /// When the answer came: RTP arrival times count 8 kHz samples from here.
    epoch: Instant,
    next_frame: Instant,
    next_rtcp: Instant,
    /// Frames whose time has come, to be written by `poll_output`.
    due: u32,
    sent: u64,
    /// The sequence number of the last audio packet heard, and its samples (they stand in
    /// for the next one or two when those are lost).
    last_seq: Option<u16>,
    last_frame: Vec<i16>,
}

/// Lost audio packets filled in with the last one heard (a tone goes on through them).
const CONCEALED_MAX: u16 = 2;

/// Tracks runs of far-end speech (20 ms frames of received audio).
#[derive(Debug)]
struct Amd {
    vad: Vad,
    frame: Vec<i16>,
    /// Received audio frames so far.
    frames: u64,
    /// Frame where the current run of speech started, and its last voiced frame.
    run: Option<(u64, u64)>,
}

const FRAME_MS: u64 = 20;

impl Amd {
    fn run_ms(&self) -> u64 {
        self.run.map_or(0, |(s, l)| (l + 1 - s) * FRAME_MS)
    }
}

/// One verification call.
#[derive(Debug)]
pub struct VerificationCall {
    cfg: ScriptConfig,
    prompts: Prompts,
    phase: Phase,
    start: Instant,
    media: Option<Media>,
    playout: Playout,
    /// Instructions plays left after the one queued.
    repeats_left: u32,
    inband: Detector,
    events: EventDecoder,
    amd: Amd,
    keys: Vec<KeyPress>,
    /// Keys since the last '#'.
    entry: String,
    /// A verdict waiting for a long run of speech to stop.
    held: Option<Outcome>,
    /// Until when a key may come before `no_input`.
    input_deadline: Option<Instant>,
    /// When the instructions start playing (the greeting's end): keys before are dropped.
    instructions_at: Option<Instant>,
    /// The last key accepted: digit, source, time.
    last_press: Option<(Digit, KeySource, Instant)>,
    outcome: Option<Outcome>,
    detail: Option<String>,
    timed_out: bool,
    trunk: Option<String>,
    timings: Timings,
    out: VecDeque<Output>,
    /// Where the stream callverify sends starts.
    stream_start: StreamStart,
    /// SRTP packets that did not authenticate (dropped by the driver).
    unauthenticated: u64,
    /// Keys dropped for coming before the instructions.
    ignored: usize,
}

impl VerificationCall {
    /// A call whose INVITE is being sent at `now`; the audio it sends starts at `start` (give
    /// it [`StreamStart::random`]).
    pub fn new(now: Instant, cfg: ScriptConfig, prompts: Prompts, start: StreamStart) -> Self {
        VerificationCall {
            repeats_left: cfg.repeats.max(1) - 1,
            cfg,
            prompts,
            phase: Phase::Dialing,
            start: now,
            media: None,
            playout: Playout::default(),
            inband: Detector::new(),
            events: EventDecoder::new(),
            amd: Amd {
                vad: Vad::new(),
                frame: Vec::with_capacity(FRAME_SAMPLES),
                frames: 0,
                run: None,
            },
            keys: Vec::new(),
            entry: String::new(),
            held: None,
            input_deadline: None,
            instructions_at: None,
            last_press: None,
            outcome: None,
            detail: None,
            timed_out: false,
            trunk: None,
            timings: Timings::default(),
            out: VecDeque::new(),
            stream_start: start,
            unauthenticated: 0,
            ignored: 0,
        }
    }

    /// The verdict or failure, once known.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Whether media is being sent every 20 ms (the driver can then read what arrived at
    /// each send instead of waking once more per received packet).
    pub fn is_pacing(&self) -> bool {
        self.media.is_some() && matches!(self.phase, Phase::Script | Phase::Closing)
    }

    /// Whether the final report has been given.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    fn ms_since_start(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.start).as_millis() as u64
    }

    /// The SIP call's progress.
    pub fn handle_sip(&mut self, now: Instant, ev: CallEvent) {
        match ev {
            CallEvent::Sent { trunk } => {
                self.trunk = Some(trunk.clone());
                self.out
                    .push_back(Output::Report(Report::Calling { trunk }));
            }
            CallEvent::Provisional { status, .. } => {
                if self.timings.post_dial_delay_ms.is_none() && (status == 180 || status == 183) {
                    self.timings.post_dial_delay_ms = Some(self.ms_since_start(now));
                    self.out
                        .push_back(Output::Report(Report::Ringing { status }));
                }
            }
            CallEvent::Answered { answer } => self.answered(now, answer),
            CallEvent::MediaChanged { answer } => {
                if let Some(m) = &mut self.media {
                    m.rx.set_peer(answer.remote);
                    m.answer = answer;
                }
            }
            CallEvent::Ended(reason) => self.ended(now, reason),
        }
    }

    fn answered(&mut self, now: Instant, answer: Answer) {
        if self.phase != Phase::Dialing {
            return;
        }
        self.timings.time_to_answer_ms = Some(self.ms_since_start(now));
        self.out.push_back(Output::Report(Report::Answered {
            codec: answer.codec,
        }));
        let rx = RtpReceiver::new(answer.remote, self.cfg.latching)
            .with_timing_payload_type(answer.codec_pt);
        self.media = Some(Media {
            tx: RtpSender::starting(self.stream_start),
            rx,
            answer,
            epoch: now,
            next_frame: now,
            next_rtcp: now + self.cfg.rtcp_interval,
            due: 0,
            sent: 0,
            last_seq: None,
            last_frame: Vec::with_capacity(480),
        });
        self.phase = Phase::Script;
        // The greeting plays from the answer without a break (no key stops it: keys before
        // the instructions are dropped), so the instructions start when it ends.
        let greeting = Duration::from_millis(self.prompts.greeting.duration_ms());
        self.instructions_at = Some(now + greeting);
        self.input_deadline = Some(now + greeting + self.cfg.first_key_timeout);
        self.play(PromptKind::Greeting);
        self.play(PromptKind::Instructions);
        self.pace(now);
    }

    fn play(&mut self, kind: PromptKind) {
        self.playout.queue.push_back(Segment::Prompt(kind));
    }

    fn ended(&mut self, now: Instant, reason: EndReason) {
        if self.phase == Phase::Done {
            return;
        }
        if self.outcome.is_none() {
            let answered = self.media.is_some();
            let outcome = Outcome::from_end(&reason, answered, self.timed_out);
            self.set_outcome(now, outcome);
        }
        self.phase = Phase::Done;
        self.playout.queue.clear();
        self.timings.duration_ms = self.ms_since_start(now);
        let media = match &self.media {
            Some(m) => {
                let r = MediaReport::from_stats(Some(m.answer.codec), m.sent, &m.rx.stats());
                MediaReport {
                    srtp: m.answer.sdes.is_some(),
                    // SRTP packets that did not authenticate (none before the answer).
                    packets_rejected: r.packets_rejected + self.unauthenticated,
                    ..r
                }
            }
            None => MediaReport::default(),
        };
        let report = CallReport {
            outcome: self.outcome.clone().unwrap_or(Outcome::Failed {
                status: None,
                reason: "no outcome".into(),
            }),
            detail: self.detail.clone(),
            trunk: self.trunk.clone(),
            keys: self.keys.clone(),
            timings: self.timings.clone(),
            media,
        };
        self.out
            .push_back(Output::Report(Report::Finished(Box::new(report))));
    }

    fn set_outcome(&mut self, now: Instant, outcome: Outcome) {
        if self.outcome.is_some() {
            return;
        }
        self.timings.time_to_verdict_ms = Some(self.ms_since_start(now));
        self.out
            .push_back(Output::Report(Report::Verdict(outcome.clone())));
        self.outcome = Some(outcome);
    }

    /// Gives the verdict: plays the closing prompt (if any) and then hangs up.
    fn decide(&mut self, now: Instant, outcome: Outcome) {
        if self.outcome.is_some() || self.phase == Phase::Done {
            return;
        }
        let closing = outcome.closing_prompt();
        self.set_outcome(now, outcome);
        self.held = None;
        self.playout.queue.clear();
        self.playout.pos = 0;
        match (self.phase, closing) {
            (Phase::Script, Some(kind)) => {
                self.phase = Phase::Closing;
                self.play(kind);
                // A moment of silence so that the prompt's end is played out by the phone's
                // jitter buffer before the BYE.
                self.playout
                    .queue
                    .push_back(Segment::Silence(CLOSING_TAIL_FRAMES));
            }
            _ => self.hang_up(),
        }
    }

    fn hang_up(&mut self) {
        if matches!(self.phase, Phase::HangingUp | Phase::Done) {
            return;
        }
        self.phase = Phase::HangingUp;
        self.playout.queue.clear();
        self.out.push_back(Output::Hangup);
    }

    /// Ends the call on request (the challenge was cancelled): no closing prompt.
    pub fn cancel(&mut self, now: Instant) {
        if self.outcome.is_none() {
            self.set_outcome(now, Outcome::Canceled);
        }
        self.hang_up();
    }

    /// An SRTP packet that did not authenticate (forged, replayed or under another key)
    /// was dropped: it is counted with the rejected packets.
    pub fn handle_unauthenticated(&mut self) {
        self.unauthenticated += 1;
    }

    /// A datagram arrived on the call's RTP socket.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
        let listening = matches!(self.phase, Phase::Script);
        let Some(m) = &mut self.media else {
            return;
        };
        let arrival = (now.saturating_duration_since(m.epoch).as_micros() as u64 * 8 / 1000) as u32;
        let Ok(reader) = m.rx.accept(from, packet, arrival) else {
            return;
        };
        if !listening {
            return;
        }
        let pt = reader.payload_type();
        let payload = reader.payload();
        if pt == m.answer.codec_pt {
            let codec = m.answer.codec;
            let seq = u16::from(reader.sequence_number());
            // Audio is heard in sequence: a packet later than one already heard comes too
            // late (its place was filled in); one or two lost before this one are filled in
            // with the last heard, so that a key's tone is not cut short.
            let mut fill = 0;
            if let Some(last) = m.last_seq {
                let ahead = seq.wrapping_sub(last);
                if ahead == 0 || ahead >= 0x8000 {
                    return;
                }
                if (2..=CONCEALED_MAX + 1).contains(&ahead) {
                    fill = ahead - 1;
                }
            }
            m.last_seq = Some(seq);
            // The buffer is taken out while `audio` borrows the call, then put back.
            let mut frame = std::mem::take(&mut m.last_frame);
            for _ in 0..fill {
                self.audio(now, &frame);
            }
            frame.resize(payload.len(), 0);
            codec.decode_into(payload, &mut frame);
            for chunk in frame.chunks(480) {
                self.audio(now, chunk);
            }
            if let Some(m) = &mut self.media {
                m.last_frame = frame;
            }
        } else if Some(pt) == m.answer.telephone_event_pt {
            let ts = reader.timestamp();
            if let Ok(evs) = self.events.push(ts, payload) {
                for ev in evs {
                    if let TelephoneEvent::Pressed { digit, .. } = ev {
                        self.press(now, digit, KeySource::Rfc4733);
                    }
                }
            }
        }
    }

    fn audio(&mut self, now: Instant, pcm: &[i16]) {
        let mut pressed = [None; 4];
        let mut n = 0;
        for ev in self.inband.push(pcm) {
            if let DigitEvent::Pressed { digit, .. } = ev
                && n < pressed.len()
            {
                pressed[n] = Some(digit);
                n += 1;
            }
        }
        for digit in pressed.into_iter().flatten() {
            self.press(now, digit, KeySource::InBand);
        }
        if !self.cfg.amd.enabled {
            return;
        }
        for &s in pcm {
            self.amd.frame.push(s);
            if self.amd.frame.len() == FRAME_SAMPLES {
                let tone = self.inband.active().is_some() || self.events.active().is_some();
                let voice = !tone && self.amd.vad.is_voice(&self.amd.frame);
                self.amd.frame.clear();
                self.speech_frame(now, voice);
                if self.phase != Phase::Script {
                    return;
                }
            }
        }
    }

    fn speech_frame(&mut self, now: Instant, voice: bool) {
        let amd = &mut self.amd;
        let idx = amd.frames;
        amd.frames += 1;
        let gap = self.cfg.amd.gap.as_millis() as u64 / FRAME_MS;
        let window = self.cfg.amd.window.as_millis() as u64 / FRAME_MS;
        if voice {
            match &mut amd.run {
                Some((_, last)) => *last = idx,
                None => amd.run = Some((idx, idx)),
            }
        } else if let Some((_, last)) = amd.run
            && idx - last > gap
        {
            amd.run = None;
            if let Some(held) = self.held.take() {
                self.decide(now, held);
            }
            return;
        }
        let Some((run_start, _)) = self.amd.run else {
            return;
        };
        let run_ms = self.amd.run_ms();
        if run_start <= window && run_ms > self.cfg.amd.max_greeting.as_millis() as u64 {
            let held = self.held.take().map(|o| o.name());
            let mut why = format!(
                "{:.1} s of continuous speech starting {:.1} s after the answer",
                run_ms as f64 / 1000.0,
                (run_start * FRAME_MS) as f64 / 1000.0
            );
            if let Some(h) = held {
                why.push_str(&format!("; a held '{h}' verdict was discarded"));
            }
            self.detail = Some(why);
            self.decide(now, Outcome::Voicemail);
        }
    }

    fn press(&mut self, now: Instant, digit: Digit, source: KeySource) {
        if self.phase != Phase::Script || self.held.is_some() {
            return;
        }
        if let Some((d, s, at)) = self.last_press
            && d == digit
            && s != source
            && now.saturating_duration_since(at) < SAME_PRESS
        {
            return;
        }
        let at_ms = self.ms_since_start(now);
        let key = KeyPress {
            digit: digit.as_char(),
            source,
            at_ms,
        };
        if self.instructions_at.is_some_and(|t| now < t) {
            self.ignored += 1;
            if self.ignored <= MAX_KEYS_LOGGED {
                self.out.push_back(Output::Report(Report::KeyIgnored(key)));
            }
            return;
        }
        self.last_press = Some((digit, source, now));
        if self.timings.time_to_key_ms.is_none() {
            self.timings.time_to_key_ms = self
                .timings
                .time_to_answer_ms
                .map(|a| at_ms.saturating_sub(a));
        }
        if self.keys.len() < MAX_KEYS_LOGGED {
            self.keys.push(key.clone());
            self.out.push_back(Output::Report(Report::Key(key)));
        }
        // Barge-in: the prompt stops at the first key and is not repeated.
        self.playout.queue.clear();
        self.playout.pos = 0;
        self.repeats_left = 0;
        if digit != Digit::Pound {
            if self.entry.len() < MAX_KEYS {
                self.entry.push(digit.as_char());
            }
            self.input_deadline = Some(now + self.cfg.digit_timeout);
            return;
        }
        let verdict = match self.entry.as_str() {
            "" => Outcome::Approved,
            "0" => Outcome::FraudReported,
            _ => Outcome::Denied,
        };
        self.entry.clear();
        let speaking =
            self.amd.run.is_some() && self.amd.run_ms() >= HOLD_AFTER_SPEECH.as_millis() as u64;
        if self.cfg.amd.enabled && speaking {
            self.held = Some(verdict);
        } else {
            self.decide(now, verdict);
        }
    }

    /// Time passed: sends the frames due, RTCP, and applies the timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Done {
            return;
        }
        if now >= self.start + self.cfg.call_timeout && self.outcome.is_none() {
            self.timed_out = true;
            if self.phase == Phase::Dialing {
                // The CANCEL ends the call; its 487 then reads as no answer.
                self.hang_up();
            } else {
                self.detail = Some("the whole-call timeout passed".into());
                self.set_outcome(now, Outcome::NoInput);
                self.hang_up();
            }
        }
        if now >= self.give_up_at() {
            // The SIP call should have ended long ago (its transactions are bounded); end
            // anyway so that no task outlives its call.
            self.ended(now, EndReason::Timeout);
            return;
        }
        if self.phase == Phase::Script
            && self.held.is_none()
            && let Some(d) = self.input_deadline
            && now >= d
        {
            self.decide(now, Outcome::NoInput);
        }
        self.pace(now);
    }

    fn pace(&mut self, now: Instant) {
        let Some(m) = &mut self.media else {
            return;
        };
        if !matches!(self.phase, Phase::Script | Phase::Closing) {
            return;
        }
        while m.next_frame <= now && m.due < MAX_CATCH_UP {
            m.next_frame += FRAME;
            m.due += 1;
        }
        if m.next_frame <= now {
            // Woken far too late: skip the frames whose time has passed.
            let behind = (now - m.next_frame).as_micros() / FRAME.as_micros() + 1;
            m.next_frame += FRAME * behind as u32;
            m.tx.skip(behind as u32 * FRAME_SAMPLES as u32);
            for _ in 0..behind {
                self.playout.advance(&self.prompts);
            }
        }
        if now >= m.next_rtcp {
            m.next_rtcp = now + self.cfg.rtcp_interval;
            let report: Option<ReceptionReport> = m.rx.report();
            let bytes = m.tx.sender_report(ntp_time(), report.as_ref());
            // RFC 3550 §11: RTCP goes to the next port above RTP.
            let remote = m.answer.remote;
            let to = SocketAddr::new(remote.ip(), remote.port().wrapping_add(1));
            self.out.push_back(Output::Rtcp { to, bytes });
        }
    }

    /// When [`VerificationCall::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Done {
            return None;
        }
        let mut t = if self.outcome.is_some() || self.timed_out {
            self.give_up_at()
        } else {
            self.start + self.cfg.call_timeout
        };
        if let (Phase::Script, Some(d), None) = (self.phase, self.input_deadline, &self.held) {
            t = t.min(d);
        }
        if let (Phase::Script | Phase::Closing, Some(m)) = (self.phase, &self.media) {
            t = t.min(m.next_frame).min(m.next_rtcp);
        }
        Some(t)
    }

    /// When to end the call even if the SIP call never reports its end (its transactions
    /// are bounded, so this is a last resort that keeps a task from outliving its call).
    fn give_up_at(&self) -> Instant {
        self.start + self.cfg.call_timeout + Duration::from_secs(40)
    }

    /// The next thing to do. RTP packets are written into `buf` (at least
    /// [`media::rtp::MAX_PACKET`] bytes).
    pub fn poll_output(&mut self, buf: &mut [u8]) -> Option<Output> {
        if let Some(out) = self.out.pop_front() {
            return Some(out);
        }
        let m = self.media.as_mut()?;
        if m.due == 0 || !matches!(self.phase, Phase::Script | Phase::Closing) {
            m.due = 0;
            return None;
        }
        m.due -= 1;
        let codec = m.answer.codec;
        let frame = self.playout.next_frame(&self.prompts, codec);
        let (to, pt) = (m.answer.remote, m.answer.codec_pt);
        let len = match frame {
            Some(payload) => m.tx.packet(pt, payload, FRAME_SAMPLES as u32, buf),
            None => m.tx.packet(
                pt,
                &[codec.silence(); FRAME_SAMPLES],
                FRAME_SAMPLES as u32,
                buf,
            ),
        };
        m.sent += 1;
        if let Some(kind) = self.playout.started.take() {
            self.out.push_back(Output::Report(Report::Prompt(kind)));
        }
        if self.phase == Phase::Script && self.playout.queue.is_empty() && self.repeats_left > 0 {
            self.repeats_left -= 1;
            let pause = (self.cfg.pause.as_millis() / FRAME.as_millis()) as u32;
            self.playout.queue.push_back(Segment::Silence(pause));
            self.play(PromptKind::Instructions);
        }
        if self.phase == Phase::Closing && self.playout.queue.is_empty() {
            self.hang_up();
        }
        Some(Output::Rtp { to, len })
    }
}

impl Playout {
    /// The next frame's payload (`None`: silence), moving on.
    fn next_frame<'a>(&mut self, prompts: &'a Prompts, codec: Codec) -> Option<&'a [u8]> {
        loop {
            let seg = self.queue.front()?.clone();
            let len = match &seg {
                Segment::Prompt(k) => prompts.get(*k).frames(codec).len(),
                Segment::Silence(n) => *n as usize,
            };
            if self.pos >= len {
                self.queue.pop_front();
                self.pos = 0;
                continue;
            }
            if self.pos == 0
                && let Segment::Prompt(k) = seg
            {
                self.started = Some(k);
            }
            let i = self.pos;
            self.pos += 1;
            if self.pos >= len {
                self.queue.pop_front();
                self.pos = 0;
            }
            return match seg {
                Segment::Prompt(k) => Some(&prompts.get(k).frames(codec)[i][..]),
                Segment::Silence(_) => None,
            };
        }
    }

    fn advance(&mut self, prompts: &Prompts) {
        let _ = self.next_frame(prompts, Codec::Pcmu);
    }
}

/// The wall clock in NTP format (seconds since 1900 in the high 32 bits).
fn ntp_time() -> u64 {
    let since_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_unix.as_secs() + 2_208_988_800;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}
