//! The simulated far end and clock the tests drive a call with: a phone that answers, sends
//! audio or RFC 4733 events frame by frame (with SRTP when keyed), an optional lossy network,
//! and what the call sent, kept for the assertions.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use dtmf::Digit;
use engine::call::{Output, Prompts, Report, ScriptConfig, VerificationCall};
use engine::{CallReport, Outcome};
use media::rtp::{MAX_PACKET, RtpSender, StreamStart};
use media::srtp::{MAX_OVERHEAD, Srtp};
use media::{Codec, FRAME_SAMPLES, Language, PromptKind, PromptLibrary};
use rtp_rs::RtpReader;
use sip::sdp::{Answer, Direction, SdesKey};
use sip::{CallEvent, EndReason};
use testaudio::Signal;

pub const PEER: &str = "127.0.0.1:30000";
pub const FRAME: Duration = Duration::from_millis(20);

pub fn prompts() -> Prompts {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../prompts");
    let lib = PromptLibrary::load(&dir, &[Language::En]).unwrap();
    Prompts::from_library(&lib, Language::En).unwrap()
}

pub fn answer() -> Answer {
    Answer {
        remote: PEER.parse().unwrap(),
        codec: Codec::Pcmu,
        codec_pt: 0,
        telephone_event_pt: Some(101),
        ptime: Some(20),
        direction: Direction::SendRecv,
        sdes: None,
    }
}

pub fn cfg() -> ScriptConfig {
    ScriptConfig {
        first_key_timeout: Duration::from_secs(20),
        call_timeout: Duration::from_secs(60),
        ..ScriptConfig::default()
    }
}

/// What the far end sends, frame by frame from the answer on.
pub enum Far {
    Audio(Vec<i16>),
    /// RFC 4733 events: (key, start frame, frames held).
    Events(Vec<(Digit, usize, usize)>),
    /// Audio, and events beside it (a phone whose tones leak into its audio).
    Both(Vec<i16>, Vec<(Digit, usize, usize)>),
}

#[derive(Default)]
pub struct Seen {
    /// (seq, timestamp, marker, sent at) of every RTP packet.
    pub rtp: Vec<(u16, u32, bool, Instant)>,
    /// The payload of every RTP packet, in the order sent.
    pub payloads: Vec<Vec<u8>>,
    pub rtcp: Vec<(SocketAddr, Vec<u8>)>,
    pub hangups: Vec<Instant>,
    pub reports: Vec<(Instant, Report)>,
    /// The final report, once the call gave it.
    pub finished: Option<CallReport>,
}

impl Seen {
    pub fn prompts(&self) -> Vec<PromptKind> {
        self.reports
            .iter()
            .filter_map(|(_, r)| match r {
                Report::Prompt(k) => Some(*k),
                _ => None,
            })
            .collect()
    }

    pub fn finished(&self) -> Option<&CallReport> {
        self.finished.as_ref()
    }
}

pub struct Sim {
    pub now: Instant,
    pub vc: VerificationCall,
    pub seen: Seen,
    pub peer: RtpSender,
    pub answered_at: Option<Instant>,
    /// The far end hangs up (on our BYE) at once.
    pub ack_hangup: bool,
    /// The network between the far end and us, if not perfect.
    pub net: Option<Net>,
    /// The wall-clock time the call was given at its start.
    pub wall: SystemTime,
    /// What the far end answers.
    pub answer: Answer,
    /// With SRTP: the far end's context for what it sends (under its key)...
    pub far_srtp: Option<Srtp>,
    /// ...and for checking what the call sends (under ours).
    pub near_srtp: Option<Srtp>,
    /// With SRTP, the far end numbers its audio and events in one sequence (as a phone
    /// does: SRTP's replay window follows it), from here.
    pub far_seq: u16,
}

/// Our SDES key in the SRTP tests.
pub fn our_key() -> SdesKey {
    SdesKey {
        tag: 1,
        suite: media::srtp::Suite::AesCm128HmacSha1_80,
        master: [0x11; media::srtp::MASTER_LEN],
    }
}

/// The callee's SDES key in the SRTP tests (`fill` tells two keys apart).
pub fn their_key(fill: u8) -> SdesKey {
    SdesKey {
        master: [fill; media::srtp::MASTER_LEN],
        ..our_key()
    }
}

/// A lossy network with jitter: each packet is lost with probability `loss`, or delayed by
/// up to `jitter` (so packets overtake one another).
pub struct Net {
    pub loss: f64,
    pub jitter: Duration,
    pub rng: testaudio::Rng,
    pub in_flight: Vec<(Instant, Vec<u8>)>,
    pub lost: usize,
    pub sent: usize,
}

impl Net {
    pub fn new(loss: f64, jitter: Duration, seed: u64) -> Net {
        Net {
            loss,
            jitter,
            rng: testaudio::Rng::new(seed),
            in_flight: Vec::new(),
            lost: 0,
            sent: 0,
        }
    }

    /// Uniform in [0, 1), from the seeded generator.
    pub fn uniform(&mut self) -> f64 {
        self.rng.uniform()
    }
}

impl Sim {
    pub fn new(cfg: ScriptConfig) -> Sim {
        Sim::with_key(cfg, None)
    }

    /// A call that offers our key, answered with the callee's key `theirs`: SRTP both ways.
    pub fn srtp(cfg: ScriptConfig, theirs: SdesKey) -> Sim {
        let mut sim = Sim::with_key(cfg, Some(our_key()));
        sim.far_srtp = Some(Srtp::new(theirs.suite, &theirs.master));
        sim.near_srtp = Some(Srtp::new(our_key().suite, &our_key().master));
        sim.answer.sdes = Some(theirs);
        sim
    }

    fn with_key(cfg: ScriptConfig, key: Option<SdesKey>) -> Sim {
        let now = Instant::now();
        // A wall clock unlike the machine's, so that a test sees that it is the one used.
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut vc = VerificationCall::new(now, wall, cfg, prompts(), StreamStart::random(), key);
        vc.handle_sip(
            now,
            CallEvent::Sent {
                trunk: "pbx".into(),
            },
        );
        let mut sim = Sim {
            now,
            vc,
            seen: Seen::default(),
            peer: RtpSender::new(0xabcd, 100, 1000),
            answered_at: None,
            ack_hangup: true,
            net: None,
            wall,
            answer: answer(),
            far_srtp: None,
            near_srtp: None,
            far_seq: 100,
        };
        sim.drain();
        sim
    }

    pub fn drain(&mut self) {
        let mut buf = [0u8; MAX_PACKET + MAX_OVERHEAD];
        while let Some(o) = self.vc.poll_output(&mut buf) {
            match o {
                Output::Rtp { to, len } => {
                    assert_eq!(to, PEER.parse().unwrap());
                    let plain = match &mut self.near_srtp {
                        Some(srtp) => srtp.unprotect_rtp(&buf[..len]).expect("SRTP under our key"),
                        None => buf[..len].to_vec(),
                    };
                    let r = RtpReader::new(&plain).unwrap();
                    assert_eq!(r.payload().len(), 160);
                    self.seen.payloads.push(r.payload().to_vec());
                    self.seen.rtp.push((
                        u16::from(r.sequence_number()),
                        r.timestamp(),
                        r.mark(),
                        self.now,
                    ));
                }
                Output::Rtcp { to, bytes } => self.seen.rtcp.push((to, bytes)),
                Output::Hangup => {
                    self.seen.hangups.push(self.now);
                    if self.ack_hangup {
                        let reason = if self.answered_at.is_some() {
                            EndReason::Hangup
                        } else {
                            EndReason::Canceled
                        };
                        self.vc.handle_sip(self.now, CallEvent::Ended(reason));
                    }
                }
                Output::Report(r) => self.seen.reports.push((self.now, r)),
                Output::Finished(f) => {
                    assert!(self.seen.finished.is_none(), "a second final report");
                    self.seen.finished = Some(*f);
                }
            }
        }
    }

    pub fn sip(&mut self, after: Duration, ev: CallEvent) {
        self.run_for(after, &mut Far::Audio(Vec::new()));
        if matches!(ev, CallEvent::Answered { .. }) {
            self.answered_at = Some(self.now);
        }
        self.vc.handle_sip(self.now, ev);
        self.drain();
    }

    pub fn answer(&mut self) {
        self.sip(
            Duration::from_millis(300),
            CallEvent::Provisional {
                status: 180,
                early_media: None,
            },
        );
        self.sip(
            Duration::from_millis(1200),
            CallEvent::Answered {
                answer: self.answer.clone(),
            },
        );
    }

    /// Runs the clock for `dur` in 1 ms steps (the state machine's timers fire when due);
    /// the far end sends a packet every 20 ms after the answer.
    pub fn run_for(&mut self, dur: Duration, far: &mut Far) {
        let end = self.now + dur;
        while self.now < end && !self.vc.is_done() {
            self.now += Duration::from_millis(1);
            if let Some(a) = self.answered_at {
                let since = self.now - a;
                if since.as_micros().is_multiple_of(FRAME.as_micros()) {
                    let frame = (since.as_millis() / 20) as usize;
                    self.far_packet(frame, far);
                }
            }
            if let Some(net) = &mut self.net {
                let now = self.now;
                let mut due: Vec<(Instant, Vec<u8>)> = Vec::new();
                net.in_flight.retain(|(at, p)| {
                    if *at <= now {
                        due.push((*at, p.clone()));
                        false
                    } else {
                        true
                    }
                });
                due.sort_by_key(|(at, _)| *at);
                for (_, p) in due {
                    self.vc.handle_rtp(now, PEER.parse().unwrap(), &p);
                }
            }
            if self.vc.poll_timeout().is_some_and(|t| t <= self.now) {
                self.vc.handle_timeout(self.now);
            }
            self.drain();
        }
    }

    /// A packet from the far end: now, or through the imperfect network.
    pub fn far_sends(&mut self, packet: &[u8]) {
        let protected;
        let packet = match &mut self.far_srtp {
            Some(srtp) => {
                let mut p = packet.to_vec();
                p[2..4].copy_from_slice(&self.far_seq.to_be_bytes());
                self.far_seq = self.far_seq.wrapping_add(1);
                protected = srtp.protect_rtp(&p).expect("an RTP packet");
                &protected[..]
            }
            None => packet,
        };
        match &mut self.net {
            None => self.vc.handle_rtp(self.now, PEER.parse().unwrap(), packet),
            Some(net) => {
                net.sent += 1;
                if net.uniform() < net.loss {
                    net.lost += 1;
                    return;
                }
                let delay = net.jitter.mul_f64(net.uniform());
                net.in_flight.push((self.now + delay, packet.to_vec()));
            }
        }
    }

    pub fn far_packet(&mut self, frame: usize, far: &mut Far) {
        let (pcm, events): (&[i16], &[(Digit, usize, usize)]) = match far {
            Far::Audio(pcm) => (pcm, &[]),
            Far::Events(evs) => (&[], evs),
            Far::Both(pcm, evs) => (pcm, evs),
        };
        let mut buf = [0u8; MAX_PACKET];
        let event = events
            .iter()
            .find(|(_, s, n)| frame >= *s && frame < s + n + 3);
        if let Some(&(d, s, n)) = event {
            let held = frame - s;
            let end = held >= n;
            let dur = ((held.min(n) + 1) * 160) as u16;
            let payload = [
                d.event_code(),
                if end { 0x80 | 10 } else { 10 },
                (dur >> 8) as u8,
                dur as u8,
            ];
            // All packets of one event carry its start timestamp.
            let p = rtp_rs::RtpPacketBuilder::new()
                .payload_type(101)
                .sequence(rtp_rs::Seq::from(frame as u16))
                .timestamp(1000 + s as u32 * 160)
                .ssrc(0xabcd)
                .payload(&payload)
                .build()
                .unwrap();
            self.far_sends(&p);
            if pcm.is_empty() {
                self.drain();
                return;
            }
        }
        let mut payload = [0xffu8; 160];
        let start = frame * FRAME_SAMPLES;
        if start < pcm.len() {
            let chunk = &pcm[start..(start + FRAME_SAMPLES).min(pcm.len())];
            Codec::Pcmu.encode_into(chunk, &mut payload[..chunk.len()]);
        }
        let len = self.peer.packet(0, &payload, 160, &mut buf);
        self.far_sends(&buf[..len]);
        self.drain();
    }

    pub fn outcome(&self) -> Outcome {
        self.seen.finished().expect("finished").outcome.clone()
    }
}

/// When the instructions start, in milliseconds after the answer: keys before are dropped.
pub fn instructions_ms() -> u64 {
    prompts().get(PromptKind::Greeting).duration_ms()
}

pub fn audio(signal: Signal) -> Far {
    Far::Audio(signal.pcm())
}

pub fn pound_after(ms: f64) -> Far {
    audio(
        Signal::new()
            .silence(ms)
            .digit(Digit::Pound, -8.0, 120.0)
            .silence(100.0),
    )
}
