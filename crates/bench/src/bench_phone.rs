//! bench-phone: thousands of phones in one process, the load generator of call-bench and
//! node-bench where sipp on the same two cores cannot keep up.
//!
//! It answers every INVITE on its SIP port at once (200 OK with PCMU and telephone-event
//! 101, retransmitted until the ACK), then sends each call's audio every 20 ms from one
//! RTP socket: μ-law silence, a '#' tone (-10 dBm0, `--tone-ms`) from `--key-at-ms` after
//! the answer, then silence until callverify's BYE. All calls share the one RTP port (the
//! SDP answer names it for each call) so that a tick's packets, to many calls, leave in
//! one `sendmmsg` and what callverify sends comes back in `recvmmsg` batches: it stands
//! for phones on other machines, whose sending costs the gateway's CPU nothing.
//!
//! On stdout: `ready <sip port> <rtp port>` once listening; `tone <dialled user> <unix µs>`
//! when a call's first tone packet is sent (the time taken just before the send);
//! `summary …` when stdin closes (the parent ended or dropped its pipe), then it exits.
//!
//!     bench-phone [--ip 127.0.0.1] [--key-at-ms 1000] [--tone-ms 160]

use std::collections::HashMap;
use std::io::{BufRead, IoSlice, IoSliceMut, Write};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};

#[cfg(test)]
mod cli_check;

/// The command line.
#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "bench-phone",
    about = "Thousands of phones in one process: answers every INVITE at once and sends each\n\
             call's audio (silence, a '#' tone, silence) every 20 ms from one RTP socket in\n\
             sendmmsg batches; prints `tone <user> <unix µs>` as each tone starts",
    long_about = None,
    after_help = "Exits when its stdin closes, printing a summary."
)]
struct Args {
    /// IPv4 address to listen on (SIP and RTP, ports chosen by the system)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    ip: std::net::Ipv4Addr,
    /// When the '#' tone starts, in ms after the answer (a multiple of 20)
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = RangedU64ValueParser::<u64>::new().range(0..=600_000))]
    key_at_ms: u64,
    /// How long the tone lasts, in ms (a multiple of 20)
    #[arg(long, value_name = "MS", default_value_t = 160,
          value_parser = RangedU64ValueParser::<u64>::new().range(20..=2000))]
    tone_ms: u64,
}

/// Samples in a 20 ms frame at 8 kHz.
const FRAME: usize = 160;
const FRAME_TIME: Duration = Duration::from_millis(20);
/// Packets a `sendmmsg` or `recvmmsg` takes at most.
const BATCH: usize = 512;

/// What the SIP thread tells the RTP thread.
enum Command {
    Start {
        id: u64,
        user: String,
        to: SocketAddrV4,
        at: Instant,
    },
    Stop {
        id: u64,
    },
}

/// One call's audio being sent.
struct Stream {
    user: String,
    to: SocketAddrV4,
    next: Instant,
    frame: u64,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

/// Counters for the summary.
#[derive(Default)]
struct Counts {
    answered: AtomicU64,
    ended: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
    late_ticks: AtomicU64,
}

fn main() {
    let a = Args::parse();
    let sip = UdpSocket::bind((a.ip, 0)).expect("bind the SIP socket");
    let rtp = UdpSocket::bind((a.ip, 0)).expect("bind the RTP socket");
    for s in [&sip, &rtp] {
        // Thousands of calls' packets may wait a tick: room for them (root may exceed
        // rmem_max; otherwise the system's limit holds).
        let fd = s;
        let _ =
            nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::RcvBufForce, &(32 << 20))
                .or_else(|_| {
                    nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::RcvBuf, &(32 << 20))
                });
        let _ =
            nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::SndBufForce, &(8 << 20));
    }
    sip.set_read_timeout(Some(Duration::from_millis(5)))
        .expect("SIP read timeout");
    rtp.set_nonblocking(true).expect("RTP non-blocking");
    let (sip_port, rtp_addr) = (
        sip.local_addr().expect("SIP address").port(),
        rtp.local_addr().expect("RTP address"),
    );
    println!("ready {sip_port} {}", rtp_addr.port());
    let _ = std::io::stdout().flush();

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let commands = Arc::new(Mutex::new(Vec::<Command>::new()));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Until the parent closes our stdin.
            let mut line = String::new();
            let mut input = std::io::stdin().lock();
            while input.read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let media = {
        let (stop, counts, commands) = (stop.clone(), counts.clone(), commands.clone());
        let audio = Audio::new(a.key_at_ms, a.tone_ms);
        std::thread::spawn(move || send_audio(&rtp, &audio, &commands, &counts, &stop))
    };
    answer_calls(&sip, rtp_addr, &commands, &counts, &stop);
    let _ = media.join();
    println!(
        "summary answered {} ended {} rtp_sent {} rtp_received {} late_ticks {}",
        counts.answered.load(Ordering::Relaxed),
        counts.ended.load(Ordering::Relaxed),
        counts.sent.load(Ordering::Relaxed),
        counts.received.load(Ordering::Relaxed),
        counts.late_ticks.load(Ordering::Relaxed),
    );
    let _ = std::io::stdout().flush();
}

/// The frames every call sends: silence, the tone from `key_at` for `tone` frames.
struct Audio {
    silence: [u8; FRAME],
    tone: Vec<[u8; FRAME]>,
    key_at: u64,
}

impl Audio {
    fn new(key_at_ms: u64, tone_ms: u64) -> Audio {
        let pcm = testaudio::Signal::new()
            .digit(dtmf::Digit::Pound, -10.0, tone_ms as f64)
            .pcm();
        let tone = pcm
            .chunks(FRAME)
            .map(|c| {
                let mut f = [0xFF; FRAME];
                for (o, &x) in f.iter_mut().zip(c) {
                    *o = media::g711::ulaw_encode(x);
                }
                f
            })
            .collect();
        Audio {
            silence: [0xFF; FRAME],
            tone,
            key_at: key_at_ms / 20,
        }
    }

    fn frame(&self, n: u64) -> &[u8; FRAME] {
        n.checked_sub(self.key_at)
            .and_then(|i| self.tone.get(usize::try_from(i).ok()?))
            .unwrap_or(&self.silence)
    }
}

/// The RTP thread: every millisecond, the frames that are due, in `sendmmsg` batches; what
/// arrived, drained with `recvmmsg`.
fn send_audio(
    sock: &UdpSocket,
    audio: &Audio,
    commands: &Mutex<Vec<Command>>,
    counts: &Counts,
    stop: &AtomicBool,
) {
    let mut streams: HashMap<u64, Stream> = HashMap::new();
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut send_hdr = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut recv_hdr = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut recv_bufs = vec![[0u8; 256]; BATCH];
    let mut packets: Vec<[u8; 12 + FRAME]> = vec![[0u8; 12 + FRAME]; BATCH];
    let mut due: Vec<u64> = Vec::new();
    let mut next_tick = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut c) = commands.lock() {
            for cmd in c.drain(..) {
                match cmd {
                    Command::Start { id, user, to, at } => {
                        let r = sip::random::u64();
                        streams.insert(
                            id,
                            Stream {
                                user,
                                to,
                                next: at,
                                frame: 0,
                                seq: r as u16,
                                ts: (r >> 16) as u32,
                                ssrc: (r >> 48) as u32 | ((id as u32) << 16),
                            },
                        );
                    }
                    Command::Stop { id } => {
                        streams.remove(&id);
                    }
                }
            }
        }
        let now = Instant::now();
        due.clear();
        due.extend(
            streams
                .iter()
                .filter(|(_, s)| s.next <= now)
                .map(|(id, _)| *id),
        );
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        for chunk in due.chunks(BATCH) {
            let mut addrs = Vec::with_capacity(chunk.len());
            for (i, id) in chunk.iter().enumerate() {
                let Some(s) = streams.get_mut(id) else {
                    continue;
                };
                let p = &mut packets[i];
                p[0] = 0x80;
                p[1] = u8::from(s.frame == audio.key_at) << 7; // marker at the tone, PT 0
                p[2..4].copy_from_slice(&s.seq.to_be_bytes());
                p[4..8].copy_from_slice(&s.ts.to_be_bytes());
                p[8..12].copy_from_slice(&s.ssrc.to_be_bytes());
                p[12..].copy_from_slice(audio.frame(s.frame));
                if s.frame == audio.key_at {
                    let _ = writeln!(out, "tone {} {wall}", s.user);
                }
                s.frame += 1;
                s.seq = s.seq.wrapping_add(1);
                s.ts = s.ts.wrapping_add(FRAME as u32);
                s.next += FRAME_TIME;
                if s.next + FRAME_TIME < now {
                    // More than a frame behind: this tick was late.
                    counts.late_ticks.fetch_add(1, Ordering::Relaxed);
                }
                addrs.push(Some(SockaddrIn::from(s.to)));
            }
            let slices: Vec<[IoSlice<'_>; 1]> = packets[..addrs.len()]
                .iter()
                .map(|p| [IoSlice::new(p)])
                .collect();
            let mut sent = 0;
            while sent < addrs.len() {
                match sendmmsg(
                    sock.as_raw_fd(),
                    &mut send_hdr,
                    &slices[sent..],
                    &addrs[sent..],
                    [],
                    MsgFlags::empty(),
                ) {
                    Ok(r) => {
                        let n = r.count();
                        if n == 0 {
                            break;
                        }
                        sent += n;
                    }
                    Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_micros(50)),
                    // A call that ended between its frame and the send (ICMP unreachable
                    // reported on the next send): skip that packet.
                    Err(_) => sent += 1,
                }
            }
            counts.sent.fetch_add(sent as u64, Ordering::Relaxed);
        }
        let _ = out.flush();
        // What callverify sent: counted, then dropped.
        loop {
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = recv_bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            match recvmmsg(
                sock.as_raw_fd(),
                &mut recv_hdr,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(r) => {
                    let n = r.count();
                    counts.received.fetch_add(n as u64, Ordering::Relaxed);
                    if n < BATCH {
                        break;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        next_tick += Duration::from_millis(1);
        let now = Instant::now();
        if next_tick > now {
            std::thread::sleep(next_tick - now);
        } else {
            next_tick = now;
        }
    }
}

/// One answered call, kept for its ACK, BYE and retransmissions.
struct Dialog {
    id: u64,
    ok: String,
    to: SocketAddr,
    acked: bool,
    resend_at: Instant,
    interval: Duration,
    answered: Instant,
    /// When the BYE came (kept a while for a retransmitted BYE).
    ended: Option<Instant>,
}

/// The SIP thread: answers INVITEs at once, ACKs end the 200's retransmissions, BYE ends
/// the call.
fn answer_calls(
    sock: &UdpSocket,
    rtp: SocketAddr,
    commands: &Mutex<Vec<Command>>,
    counts: &Counts,
    stop: &AtomicBool,
) {
    let here = sock.local_addr().expect("SIP address");
    let mut dialogs: HashMap<String, Dialog> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut next_id = 0u64;
    let mut last_sweep = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]);
            if let Some(msg) = Message::parse(&text) {
                let reply = match msg.method.as_str() {
                    "INVITE" => match dialogs.get(&msg.call_id) {
                        Some(d) => Some(d.ok.clone()),
                        None => {
                            let ok = msg.response("200 OK", Some(&answer_sdp(rtp)), here);
                            next_id += 1;
                            let now = Instant::now();
                            if let Some(to) = msg.sdp_audio() {
                                push(
                                    commands,
                                    Command::Start {
                                        id: next_id,
                                        user: msg.user(),
                                        to,
                                        at: now,
                                    },
                                );
                            }
                            counts.answered.fetch_add(1, Ordering::Relaxed);
                            dialogs.insert(
                                msg.call_id.clone(),
                                Dialog {
                                    id: next_id,
                                    ok: ok.clone(),
                                    to: from,
                                    acked: false,
                                    resend_at: now + Duration::from_millis(500),
                                    interval: Duration::from_millis(500),
                                    answered: now,
                                    ended: None,
                                },
                            );
                            Some(ok)
                        }
                    },
                    "ACK" => {
                        if let Some(d) = dialogs.get_mut(&msg.call_id) {
                            d.acked = true;
                        }
                        None
                    }
                    "BYE" | "CANCEL" => {
                        if let Some(d) = dialogs.get_mut(&msg.call_id)
                            && d.ended.is_none()
                        {
                            d.ended = Some(Instant::now());
                            d.acked = true;
                            push(commands, Command::Stop { id: d.id });
                            counts.ended.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(msg.response("200 OK", None, here))
                    }
                    "" => None, // a response: this phone sends no requests
                    _ => Some(msg.response("200 OK", None, here)),
                };
                if let Some(r) = reply {
                    let _ = sock.send_to(r.as_bytes(), from);
                }
            }
        }
        let now = Instant::now();
        for d in dialogs.values_mut() {
            if !d.acked && d.resend_at <= now {
                let _ = sock.send_to(d.ok.as_bytes(), d.to);
                d.interval = (d.interval * 2).min(Duration::from_secs(4));
                d.resend_at = now + d.interval;
            }
        }
        if now.duration_since(last_sweep) > Duration::from_secs(1) {
            last_sweep = now;
            dialogs.retain(|_, d| match d.ended {
                Some(at) => now.duration_since(at) < Duration::from_secs(32),
                // A call never ended by a BYE: dropped after ten minutes.
                None => now.duration_since(d.answered) < Duration::from_secs(600),
            });
        }
    }
}

fn push(commands: &Mutex<Vec<Command>>, c: Command) {
    if let Ok(mut q) = commands.lock() {
        q.push(c);
    }
}

fn answer_sdp(rtp: SocketAddr) -> String {
    let id = sip::random::u64() >> 1;
    format!(
        "v=0\r\no=bench {id} {id} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

/// The parts of a request this phone answers from.
struct Message {
    method: String,
    uri: String,
    vias: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: String,
    body: String,
}

impl Message {
    fn parse(text: &str) -> Option<Message> {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.split("\r\n");
        let start = lines.next()?;
        let (method, uri) = if start.starts_with("SIP/2.0") {
            (String::new(), String::new())
        } else {
            let mut p = start.split(' ');
            (p.next()?.to_string(), p.next()?.to_string())
        };
        let mut m = Message {
            method,
            uri,
            vias: Vec::new(),
            from: String::new(),
            to: String::new(),
            call_id: String::new(),
            cseq: String::new(),
            body: body.to_string(),
        };
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            match name.trim().to_ascii_lowercase().as_str() {
                "via" | "v" => m.vias.push(value),
                "from" | "f" => m.from = value,
                "to" | "t" => m.to = value,
                "call-id" | "i" => m.call_id = value,
                "cseq" => m.cseq = value,
                _ => {}
            }
        }
        (!m.call_id.is_empty()).then_some(m)
    }

    /// The dialled user: the Request-URI's user part.
    fn user(&self) -> String {
        let u = self.uri.strip_prefix("sip:").unwrap_or(&self.uri);
        u.split(['@', ';']).next().unwrap_or("").to_string()
    }

    /// Where the call's audio goes: the SDP's `c=` address and audio port.
    fn sdp_audio(&self) -> Option<SocketAddrV4> {
        let mut ip = None;
        let mut port = None;
        for l in self.body.lines() {
            if let Some(c) = l.strip_prefix("c=IN IP4 ") {
                ip = c.trim().parse::<std::net::Ipv4Addr>().ok();
            } else if let Some(m) = l.strip_prefix("m=audio ") {
                port = m.split(' ').next().and_then(|p| p.parse::<u16>().ok());
            }
        }
        Some(SocketAddrV4::new(ip?, port?))
    }

    /// A response to this request; `contact`: this phone's SIP address.
    fn response(&self, status: &str, sdp: Option<&str>, contact: SocketAddr) -> String {
        let mut r = format!("SIP/2.0 {status}\r\n");
        for v in &self.vias {
            r.push_str(&format!("Via: {v}\r\n"));
        }
        let to = if self.to.contains(";tag=") {
            self.to.clone()
        } else {
            // The tag from the Call-ID: the same for the 200 and its retransmissions.
            let tag: u32 = self
                .call_id
                .bytes()
                .fold(5381, |h, b| h.wrapping_mul(33) ^ u32::from(b));
            format!("{};tag=bp{tag:08x}", self.to)
        };
        r.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n",
            self.from, self.call_id, self.cseq
        ));
        r.push_str(&format!("Contact: <sip:phone@{contact}>\r\n"));
        match sdp {
            Some(s) => r.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{s}",
                s.len()
            )),
            None => r.push_str("Content-Length: 0\r\n\r\n"),
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_option() {
        cli_check::help_lists::<Args>(&["ip", "key-at-ms", "tone-ms"]);
    }

    #[test]
    fn unknown_arguments_and_bad_values_are_refused() {
        use clap::error::ErrorKind;
        cli_check::refuses_unknown::<Args>();
        for (argv, kind) in [
            (&["--ip", "::1"][..], ErrorKind::ValueValidation),
            (&["--key-at-ms", "-5"][..], ErrorKind::UnknownArgument),
            (&["--key-at-ms", "600001"][..], ErrorKind::ValueValidation),
            (&["--tone-ms", "10"][..], ErrorKind::ValueValidation),
        ] {
            assert_eq!(cli_check::error_kind::<Args>(argv), kind, "{argv:?}");
        }
    }

    #[test]
    fn options_are_read() {
        assert_eq!(
            cli_check::parse::<Args>(&[]),
            Args {
                ip: "127.0.0.1".parse().unwrap(),
                key_at_ms: 1000,
                tone_ms: 160
            }
        );
        assert_eq!(
            cli_check::parse::<Args>(&[
                "--ip",
                "10.0.0.2",
                "--key-at-ms",
                "4500",
                "--tone-ms",
                "80"
            ]),
            Args {
                ip: "10.0.0.2".parse().unwrap(),
                key_at_ms: 4500,
                tone_ms: 80
            }
        );
    }

    #[test]
    fn the_tone_comes_at_its_frame_and_lasts_its_frames() {
        let a = Audio::new(1000, 160);
        assert_eq!(a.tone.len(), 8);
        assert_eq!(a.frame(49), &a.silence);
        assert_ne!(a.frame(50), &a.silence);
        assert_ne!(a.frame(57), &a.silence);
        assert_eq!(a.frame(58), &a.silence);
    }

    #[test]
    fn an_invite_is_answered_with_its_headers_and_the_sdp() {
        let invite = "INVITE sip:+819012345678@127.0.0.1:5060 SIP/2.0\r\n\
                      Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
                      From: <sip:cv@127.0.0.1>;tag=a\r\nTo: <sip:+819012345678@127.0.0.1>\r\n\
                      Call-ID: abc\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n\
                      v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20000 RTP/AVP 0 8 101\r\n";
        let m = Message::parse(invite).unwrap();
        assert_eq!(m.user(), "+819012345678");
        assert_eq!(m.sdp_audio(), Some("127.0.0.1:20000".parse().unwrap()));
        let ok = m.response("200 OK", Some("v=0\r\n"), "127.0.0.1:5090".parse().unwrap());
        assert!(
            ok.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n")
        );
        assert!(ok.contains("To: <sip:+819012345678@127.0.0.1>;tag=bp"));
        assert!(ok.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"));
        assert_eq!(
            ok,
            m.response("200 OK", Some("v=0\r\n"), "127.0.0.1:5090".parse().unwrap()),
            "the same tag each time"
        );
    }
}
