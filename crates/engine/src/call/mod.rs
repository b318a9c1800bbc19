//! The verification call as a sans-IO state machine: it takes the SIP call's events, the
//! RTP packets that arrive and the current time, and says which RTP and RTCP packets to
//! send, when to hang up, and what happened (state changes, keys, the verdict, the final
//! report). [`crate::call_driver`] moves the bytes; tests drive it with a simulated clock.
//!
//! Time is passed in: the `Instant` of each input, and the wall-clock time at the start
//! (for the NTP time of RTCP sender reports). When the answer takes callverify's SDES key,
//! the call is SRTP: [`VerificationCall::handle_rtp`] takes datagrams as they arrived and
//! drops those that do not authenticate, and what [`VerificationCall::poll_output`] gives
//! is protected.
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

mod amd;
mod confirmation;
mod keys;
mod playout;
mod report;
mod srtp;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use dtmf::{Detector, DigitEvent, EventDecoder, TelephoneEvent};
use media::rtp::{Latching, ReceptionReport, RtpReceiver, RtpSender, StreamStart};
use media::{FRAME_SAMPLES, PromptKind};
use sip::sdp::{Answer, SdesKey};
use sip::{CallEvent, EndReason};
use tracing::debug;

pub use amd::AmdConfig;
pub use confirmation::Confirmation;
pub use keys::{KeyPress, KeySource};
pub use playout::Prompts;
pub use report::{CallReport, MediaReport, Outcome, Report, Timings};

use amd::Amd;
use confirmation::Spoken;
use keys::Keys;
use playout::{Playout, Segment};
use srtp::CallSrtp;

/// One RTP frame's duration.
pub const FRAME: Duration = Duration::from_millis(20);

/// Frames sent at once when the task woke late; beyond this the stream skips ahead.
const MAX_CATCH_UP: u32 = 3;

/// Silence after the closing prompt before hanging up (200 ms).
const CLOSING_TAIL_FRAMES: u32 = 10;

/// Lost audio packets filled in with the last one heard (a tone goes on through them).
const CONCEALED_MAX: u16 = 2;

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

/// What [`VerificationCall::poll_output`] asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send the RTP packet written into the buffer (`len` bytes, protected when the call is
    /// SRTP) to `to`.
    Rtp {
        /// The peer's RTP address.
        to: SocketAddr,
        /// Bytes written.
        len: usize,
    },
    /// Send this RTCP packet (protected when the call is SRTP) to `to`.
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
    /// The call is over: its one final report, the last output.
    Finished(Box<CallReport>),
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

/// The media of an answered call.
#[derive(Debug)]
struct Media {
    answer: Answer,
    tx: RtpSender,
    rx: RtpReceiver,
    /// Both directions' SRTP, when the answer took our key.
    srtp: Option<CallSrtp>,
    /// When the answer came: RTP arrival times count 8 kHz samples from here.
    epoch: Instant,
    next_frame: Instant,
    next_rtcp: Instant,
    /// Frames whose time has come, to be written by `poll_output`.
    due: u32,
    sent: u64,
    /// SRTP packets that did not authenticate (dropped).
    unauthenticated: u64,
    /// The sequence number of the last audio packet heard, and its samples (they stand in
    /// for the next one or two when those are lost).
    last_seq: Option<u16>,
    last_frame: Vec<i16>,
}

/// One verification call.
#[derive(Debug)]
pub struct VerificationCall {
    cfg: ScriptConfig,
    prompts: Prompts,
    phase: Phase,
    start: Instant,
    /// The wall-clock time at `start`.
    wall: SystemTime,
    /// Our SDES key, when the call may be SRTP.
    ours: Option<SdesKey>,
    media: Option<Media>,
    playout: Playout,
    /// Instructions plays left after the one queued.
    repeats_left: u32,
    inband: Detector,
    events: EventDecoder,
    amd: Amd,
    keys: Keys,
    /// A verdict waiting for a long run of speech to stop.
    held: Option<Outcome>,
    /// Until when a key may come before `no_input`.
    input_deadline: Option<Instant>,
    /// When the instructions start playing (the greeting's end): keys before are dropped.
    instructions_at: Option<Instant>,
    outcome: Option<Outcome>,
    detail: Option<String>,
    timed_out: bool,
    trunk: Option<String>,
    timings: Timings,
    out: VecDeque<Output>,
    /// Where the stream callverify sends starts.
    stream_start: StreamStart,
    /// How the person confirms (its `Debug` shows the mode only).
    confirmation: Confirmation,
    /// With a spoken code: where the reading is.
    spoken: Option<Spoken>,
    /// A spoken code's first reading has played to its end.
    code_read: bool,
    /// Number matching: whether the entry was the code.
    code_matched: Option<bool>,
}

impl VerificationCall {
    /// A call whose INVITE is being sent at `now`, the wall-clock time then being `wall`
    /// (RTCP sender reports carry it, moved on by the `Instant`s given since: the call reads
    /// no clock). The audio it sends starts at `start` (give it [`StreamStart::random`]).
    /// `key` is our SDES key as offered (`None`: plain RTP only); an answer that takes it
    /// makes the call SRTP.
    pub fn new(
        now: Instant,
        wall: SystemTime,
        cfg: ScriptConfig,
        prompts: Prompts,
        start: StreamStart,
        key: Option<SdesKey>,
    ) -> Self {
        VerificationCall {
            repeats_left: cfg.repeats.max(1) - 1,
            cfg,
            prompts,
            phase: Phase::Dialing,
            start: now,
            wall,
            ours: key,
            media: None,
            playout: Playout::default(),
            inband: Detector::new(),
            events: EventDecoder::new(),
            amd: Amd::new(),
            keys: Keys::default(),
            held: None,
            input_deadline: None,
            instructions_at: None,
            outcome: None,
            detail: None,
            timed_out: false,
            trunk: None,
            timings: Timings::default(),
            out: VecDeque::new(),
            stream_start: start,
            confirmation: Confirmation::Pound,
            spoken: None,
            code_read: false,
            code_matched: None,
        }
    }

    /// Sets the confirmation mode; call before the answer (default: `Pound`). Once the
    /// call is answered the mode no longer changes.
    pub fn confirm_by(&mut self, c: Confirmation) {
        if self.phase != Phase::Dialing {
            return;
        }
        self.spoken = matches!(c, Confirmation::SpokenCode(_)).then_some(Spoken::Waiting);
        self.confirmation = c;
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
            CallEvent::MediaChanged { answer } => self.media_changed(answer),
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
        let srtp = match (&self.ours, &answer.sdes) {
            (Some(ours), Some(theirs)) => Some(CallSrtp::new(ours, theirs)),
            _ => None,
        };
        self.media = Some(Media {
            tx: RtpSender::starting(self.stream_start),
            rx,
            srtp,
            answer,
            epoch: now,
            next_frame: now,
            next_rtcp: now + self.cfg.rtcp_interval,
            due: 0,
            sent: 0,
            unauthenticated: 0,
            last_seq: None,
            last_frame: Vec::with_capacity(480),
        });
        self.phase = Phase::Script;
        // The greeting plays from the answer without a break (no key stops it: keys before
        // the instructions are dropped), so the instructions start when it ends.
        let greeting = Duration::from_millis(self.prompts.get(PromptKind::Greeting).duration_ms());
        self.instructions_at = Some(now + greeting);
        self.input_deadline = Some(now + greeting + self.cfg.first_key_timeout);
        self.play(PromptKind::Greeting);
        if let Some(kind) = self.confirmation.instructions() {
            self.play(kind);
        }
        self.pace(now);
    }

    /// A re-INVITE changed the media: where to send, and maybe the callee's SRTP key.
    fn media_changed(&mut self, answer: Answer) {
        let Some(m) = &mut self.media else {
            return;
        };
        if let (Some(srtp), Some(theirs)) = (&mut m.srtp, &answer.sdes) {
            srtp.rekey(theirs);
        }
        m.rx.set_peer(answer.remote);
        m.answer = answer;
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
            // Once a spoken code has been read the challenge waits for it on the page,
            // however the call ends.
            let outcome = if self.code_read {
                Outcome::CodeSpoken
            } else {
                Outcome::from_end(&reason, answered, self.timed_out)
            };
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
                    packets_rejected: r.packets_rejected + m.unauthenticated,
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
            confirmation: self.confirmation.name(),
            code_matched: self.code_matched,
            keys: self.keys.pressed.clone(),
            timings: self.timings.clone(),
            media,
        };
        self.out.push_back(Output::Finished(Box::new(report)));
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

    /// A datagram arrived on the call's RTP socket, as it arrived: with SRTP, one that does
    /// not authenticate (forged, replayed or under another key) is dropped and counted with
    /// the rejected packets.
    pub fn handle_rtp(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Some(m) = &mut self.media else {
            return;
        };
        let plain;
        let packet = match &mut m.srtp {
            None => datagram,
            Some(srtp) => match srtp.unprotect_rtp(datagram) {
                Ok(p) => {
                    plain = p;
                    &plain[..]
                }
                Err(e) => {
                    debug!(%from, error = %e, "SRTP packet dropped");
                    m.unauthenticated += 1;
                    return;
                }
            },
        };
        self.handle_plain_rtp(now, from, packet);
    }

    /// An RTP packet (decrypted when the call is SRTP): accepted if it is the peer's, then
    /// heard while the script runs.
    fn handle_plain_rtp(&mut self, now: Instant, from: SocketAddr, packet: &[u8]) {
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
            let seq = u16::from(reader.sequence_number());
            self.audio_packet(now, seq, payload);
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

    /// An audio packet of the peer's.
    fn audio_packet(&mut self, now: Instant, seq: u16, payload: &[u8]) {
        let Some(m) = &mut self.media else {
            return;
        };
        let codec = m.answer.codec;
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
        self.listen_for_speech(now, pcm);
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
                let outcome = if self.code_read {
                    Outcome::CodeSpoken
                } else {
                    Outcome::NoInput
                };
                self.set_outcome(now, outcome);
                self.hang_up();
            }
        }
        if now >= self.give_up_at() {
            // The SIP call should have ended long ago (its transactions are bounded); end
            // anyway so that no task outlives its call.
            self.ended(now, EndReason::Timeout);
            return;
        }
        if self.spoken == Some(Spoken::Listening) && self.input_deadline.is_none() {
            // The outro has just played with an entry under way.
            self.input_deadline = Some(now + self.cfg.digit_timeout);
        }
        if self.phase == Phase::Script
            && self.held.is_none()
            && let Some(d) = self.input_deadline
            && now >= d
        {
            if self.spoken == Some(Spoken::Listening) {
                self.say_goodbye();
            } else {
                self.decide(now, Outcome::NoInput);
            }
        }
        self.read_code_if_human(now);
        self.end_after_goodbye(now);
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
        self.rtcp(now);
    }

    /// A sender report, when one is due (protected when the call is SRTP).
    fn rtcp(&mut self, now: Instant) {
        let wall = srtp::wall_clock(self.wall, self.start, now);
        let Some(m) = &mut self.media else {
            return;
        };
        if now < m.next_rtcp {
            return;
        }
        m.next_rtcp = now + self.cfg.rtcp_interval;
        let report: Option<ReceptionReport> = m.rx.report();
        let plain = m.tx.sender_report(srtp::ntp(wall), report.as_ref());
        let bytes = match &mut m.srtp {
            None => plain,
            Some(srtp) => match srtp.protect_rtcp(&plain) {
                Ok(bytes) => bytes,
                Err(e) => {
                    debug!(error = %e, "SRTCP protection failed");
                    return;
                }
            },
        };
        // RFC 3550 §11: RTCP goes to the next port above RTP.
        let remote = m.answer.remote;
        let to = SocketAddr::new(remote.ip(), remote.port().wrapping_add(1));
        self.out.push_back(Output::Rtcp { to, bytes });
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

    /// The next thing to do. RTP packets are written into `buf`, which must hold at least
    /// [`media::rtp::MAX_PACKET`] + [`media::srtp::MAX_OVERHEAD`] bytes: with SRTP the
    /// authentication tag is written after the packet (a frame that does not fit is not
    /// sent).
    pub fn poll_output(&mut self, buf: &mut [u8]) -> Option<Output> {
        loop {
            if let Some(out) = self.out.pop_front() {
                return Some(out);
            }
            let m = self.media.as_mut()?;
            if m.due == 0 || !matches!(self.phase, Phase::Script | Phase::Closing) {
                m.due = 0;
                return None;
            }
            m.due -= 1;
            let sent = self.write_frame(buf);
            self.after_frame();
            if let Some(out) = sent {
                return Some(out);
            }
        }
    }

    /// Writes the next frame into `buf` (protected when the call is SRTP).
    fn write_frame(&mut self, buf: &mut [u8]) -> Option<Output> {
        let m = self.media.as_mut()?;
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
        let len = match &mut m.srtp {
            None => len,
            Some(srtp) => match srtp.protect_rtp(buf, len) {
                Ok(len) => len,
                Err(e) => {
                    debug!(error = %e, "SRTP protection failed: frame not sent");
                    return None;
                }
            },
        };
        Some(Output::Rtp { to, len })
    }

    /// After a frame: the prompt it started, the marks of a spoken code it passed, the
    /// next play of the instructions, or the hang-up once the closing prompt is out.
    fn after_frame(&mut self) {
        if let Some(kind) = self.playout.started.take()
            && !PromptKind::DIGITS.contains(&kind)
        {
            // A spoken code's digits are not reported: the reports go to the logs.
            self.out.push_back(Output::Report(Report::Prompt(kind)));
        }
        for mark in std::mem::take(&mut self.playout.reached) {
            self.passed(mark);
        }
        if self.phase == Phase::Script
            && self.playout.queue.is_empty()
            && self.repeats_left > 0
            && let Some(kind) = self.confirmation.instructions()
        {
            self.repeats_left -= 1;
            let pause = (self.cfg.pause.as_millis() / FRAME.as_millis()) as u32;
            self.playout.queue.push_back(Segment::Silence(pause));
            self.play(kind);
        }
        if self.phase == Phase::Closing && self.playout.queue.is_empty() {
            self.hang_up();
        }
    }
}
