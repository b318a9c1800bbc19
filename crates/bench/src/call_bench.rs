//! Many simultaneous verification calls on loopback against sipp as the phones.
//!
//! For each load (100, 500, 1000 calls by default) sipp answers every call and plays the
//! same capture: 10 s of PCMU audio with an in-band '#' at 8 s (so the in-band detector and
//! the voice detector run on every frame of every call). callverify places the calls at
//! `--rate` per second from one process whose tokio runtime has `--workers` threads, and
//! this prints, per load: CPU per call (ms of CPU per second of call), memory per call
//! (peak RSS above the idle process, divided by the calls), the interval between
//! consecutive RTP packets of a call as measured by the sender right after each send
//! (p50, p99, p99.9, max) and the verdicts (every call must be approved: anything else is
//! a lost or wrong verdict).
//!
//!     cargo run --release -p callverify-bench --bin call-bench -- [--calls 100,500,1000]
//!         [--workers 2] [--rate 200] [--sipp-nice 19] [--sipp-cpu LAST|all]
//!         [--sipp-policy idle|normal] [--sipp-audio stream|pcap]
//!
//! (`--help` lists the options.)
//!
//! sipp runs under SCHED_IDLE by default: nice is per thread, and its rtp_stream threads
//! (one per 16 calls, ~190 at 3000 calls) at nice 19 together outweighed callverify's
//! workers on the CPU they share, which made hundreds of sends late in the same second.
//! It also prints the most calls in progress at once: calls last 10 s, so at 200 a second
//! about 2000 are in progress whatever `--calls` says.
//!
//! sipp sends the audio with `rtp_stream` (a pool of threads, 16 calls each) by default;
//! `--sipp-audio pcap` uses `play_pcap_audio` (a thread per call), which starves sipp's own
//! SIP thread at 1000 calls on one CPU: it then answers INVITEs late, takes callverify's
//! INVITE retransmissions for unexpected messages and drops those calls (they end
//! `no_input`: the phone never sent its '#'). sipp's errors go to `<dir>/<calls>/*errors.log`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callverify_e2e::pcap::{self, Part};
use clap::Parser;
use clap::builder::{PossibleValuesParser, RangedU64ValueParser};
use dtmf::Digit;
use engine::call_driver::OnSend;
use engine::{MediaConfig, Outcome, ScriptConfig, SipEndpoint};
use media::{Codec, Language};
use sip::{Listener, Timers, Transport, UaConfig};
use testaudio::Signal;

#[cfg(test)]
mod cli_check;
// The tone times are node-bench's.
#[allow(dead_code)]
mod phone_peer;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Intervals between consecutive RTP packets of one call, in 0.25 ms bins up to 128 ms (the
/// last bin holds everything longer), and when the longest ones happened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SendIntervals {
    /// Counts per bin.
    bins: Vec<u32>,
    /// Sends that came more than 40 ms after the previous one: when, and the interval in
    /// microseconds (the first 64 of the call).
    late: Vec<(Instant, u32)>,
}

/// Bin width of [`SendIntervals`], in microseconds.
const INTERVAL_BIN_US: u64 = 250;
const INTERVAL_BINS: usize = 513;

impl SendIntervals {
    fn record(&mut self, at: Instant, micros: u64) {
        if self.bins.is_empty() {
            self.bins = vec![0; INTERVAL_BINS];
        }
        let i = ((micros / INTERVAL_BIN_US) as usize).min(INTERVAL_BINS - 1);
        self.bins[i] += 1;
        if micros > 40_000 && self.late.len() < 64 {
            self.late.push((at, micros.min(u64::from(u32::MAX)) as u32));
        }
    }

    /// Adds another histogram's counts.
    fn merge(&mut self, other: &SendIntervals) {
        if self.bins.is_empty() {
            self.bins = vec![0; INTERVAL_BINS];
        }
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            *a += b;
        }
        self.late.extend_from_slice(&other.late);
    }

    /// Intervals recorded.
    fn count(&self) -> u64 {
        self.bins.iter().map(|&c| u64::from(c)).sum()
    }

    /// The `q` quantile (0..=1) in milliseconds (upper edge of its bin).
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.bins.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                return Some(((i as u64 + 1) * INTERVAL_BIN_US) as f64 / 1000.0);
            }
        }
        None
    }
}

/// One call's send intervals, recorded by the call driver's hook right after each send.
#[derive(Debug, Default)]
struct Pacing {
    last: Option<Instant>,
    intervals: SendIntervals,
}

impl Pacing {
    fn sent(&mut self, at: Instant) {
        if let Some(prev) = self.last {
            self.intervals.record(at, (at - prev).as_micros() as u64);
        }
        self.last = Some(at);
    }
}

/// `base` with a hook that records the call's send intervals in the returned [`Pacing`].
fn measured(base: &MediaConfig) -> (MediaConfig, Arc<Mutex<Pacing>>) {
    let pacing = Arc::new(Mutex::new(Pacing::default()));
    let hook = {
        let pacing = pacing.clone();
        OnSend(Arc::new(move |at| {
            if let Ok(mut p) = pacing.lock() {
                p.sent(at);
            }
        }))
    };
    let media = MediaConfig {
        on_send: Some(hook),
        ..base.clone()
    };
    (media, pacing)
}

/// The command line.
#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "call-bench",
    about = "Many simultaneous verification calls on loopback against sipp as the phones: per load,\n\
             CPU and memory per call, the interval between consecutive RTP packets of a call\n\
             (p50, p99, p99.9, max) and the verdicts (every call must be approved)",
    long_about = None,
    after_help = "Before the loads it measures its reference: the kernel's CPU alone for a datagram\n\
                  sent and read on loopback (a socket a call; sendmmsg from one socket; one socket\n\
                  to one), and each load's CPU a call-second is given against it.\n\
                  Needs sipp (sip-tester), taskset and chrt. CALL_BENCH_SPLIT=1 in the environment\n\
                  prints user and system CPU time apart."
)]
struct Args {
    /// Loads to run one after another, in calls, comma-separated
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "100,500,1000",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    calls: Vec<usize>,
    /// Threads of the tokio runtime that places and runs the calls
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    workers: usize,
    /// Calls placed a second
    #[arg(long, value_name = "CALLS_PER_S", default_value_t = 200.0, value_parser = per_second)]
    rate: f64,
    /// Nice value sipp runs at (-20 to 19)
    #[arg(long, value_name = "N", default_value_t = 19, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    sipp_nice: i32,
    /// CPUs sipp is pinned to (a `taskset -c` list) or `all`; default: the last CPU
    #[arg(long, value_name = "LIST|all", default_value_t = last_cpu(), hide_default_value = true,
          value_parser = cpu_list)]
    sipp_cpu: String,
    /// sipp's scheduling policy (idle: SCHED_IDLE, so that its hundreds of rtp_stream
    /// threads, each niced alone, do not outweigh callverify's workers together)
    #[arg(long, value_name = "normal|idle", default_value = "idle", hide_possible_values = true,
          value_parser = PossibleValuesParser::new(["normal", "idle"]))]
    sipp_policy: String,
    /// How sipp sends the audio: rtp_stream (16 calls a thread) or play_pcap_audio
    #[arg(long, value_name = "stream|pcap", default_value = "stream", hide_possible_values = true,
          value_parser = PossibleValuesParser::new(["stream", "pcap"]))]
    sipp_audio: String,
    /// The phones: sipp, or bench-phone (this crate's load generator: every call's audio
    /// from one socket in sendmmsg batches, under normal scheduling: SCHED_IDLE starves it
    /// on a busy machine; the --sipp-* options then do not apply)
    #[arg(long, value_name = "sipp|bench", default_value = "sipp", hide_possible_values = true,
          value_parser = PossibleValuesParser::new(["sipp", "bench"]))]
    phone: String,
}

/// The last CPU online, as `taskset -c` names it.
fn last_cpu() -> String {
    std::thread::available_parallelism()
        .map_or(0, |n| n.get() - 1)
        .to_string()
}

/// A rate: a finite number above 0.
fn per_second(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("a rate above 0 is needed".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `all`, or a CPU list as `taskset -c` takes it (`3`, `0-3,6`, `0-7:2`).
fn cpu_list(v: &str) -> Result<String, String> {
    let list = !v.is_empty()
        && v.split(',').all(|part| {
            let (range, stride) = part.split_once(':').unwrap_or((part, "1"));
            let (lo, hi) = range.split_once('-').unwrap_or((range, range));
            [lo, hi, stride]
                .iter()
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
    if v == "all" || list {
        Ok(v.to_string())
    } else {
        Err("`all` or a CPU list such as 3, 0-3,6 or 0-7:2 is needed".into())
    }
}

/// CPU time (user + system) of this process.
fn cpu_time() -> Duration {
    let (user, system) = cpu_of_rusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    if std::env::var_os("CALL_BENCH_SPLIT").is_some() {
        eprintln!("user {user:?} system {system:?}");
    }
    user + system
}

/// User and system CPU time of this process or thread (`who`).
fn cpu_of_rusage(who: nix::sys::resource::UsageWho) -> (Duration, Duration) {
    use nix::sys::time::TimeValLike;
    let ru = nix::sys::resource::getrusage(who).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| Duration::from_micros(t.num_microseconds().max(0) as u64);
    (tv(ru.user_time()), tv(ru.system_time()))
}

/// The references: CPU time of the kernel's work alone for one RTP-sized datagram sent and
/// read on loopback by this thread, over 1,000 receiving sockets (the many sockets of many
/// calls). On loopback the send also delivers the datagram, so each is the least a
/// datagram of a call costs, whoever sends and reads it.
struct Reference {
    /// One socket a call each way: `send_to` and `recv_from`, as the gateway does.
    each: Duration,
    /// Sent from one socket in `sendmmsg` batches of 64, read on the calls' sockets (what
    /// one shared sending socket would give).
    batched_sends: Duration,
    /// One socket to one socket, `sendmmsg` and `recvmmsg` batches of 64 (what RTP on
    /// shared sockets at both ends would give at best).
    shared: Duration,
    /// The datagrams read in each of the three.
    read: [u32; 3],
}

const REFERENCE_SOCKETS: usize = 1000;
const REFERENCE_BATCH: usize = 64;

impl Reference {
    fn measure(rounds: usize) -> std::io::Result<Reference> {
        use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};
        use std::os::fd::AsRawFd;
        let v4 = |a: SocketAddr| match a {
            SocketAddr::V4(a) => Ok(SockaddrIn::from(a)),
            SocketAddr::V6(_) => Err(std::io::Error::other("an IPv6 loopback socket")),
        };
        let mut pairs = Vec::with_capacity(REFERENCE_SOCKETS);
        for _ in 0..REFERENCE_SOCKETS {
            let tx = std::net::UdpSocket::bind((LOOPBACK, 0))?;
            let rx = std::net::UdpSocket::bind((LOOPBACK, 0))?;
            rx.set_nonblocking(true)?;
            let to = rx.local_addr()?;
            pairs.push((tx, rx, to));
        }
        // A 20 ms G.711 frame after its 12-octet RTP header.
        let pkt = [0x55u8; 172];
        let mut buf = [0u8; 2048];
        let drain = |pairs: &[(std::net::UdpSocket, std::net::UdpSocket, SocketAddr)],
                     buf: &mut [u8]| {
            // One datagram a socket was sent (on loopback it is there when the send
            // returns): one read each, without the read that would find the socket empty.
            let mut n = 0u32;
            for (_, rx, _) in pairs {
                if rx.recv_from(buf).is_ok() {
                    n += 1;
                }
            }
            n
        };
        let per = |cpu: Duration, n: u32| cpu / n.max(1);

        let (cpu0, mut n) = (thread_cpu(), 0);
        for _ in 0..rounds {
            for (tx, _, to) in &pairs {
                tx.send_to(&pkt, to)?;
            }
            n += drain(&pairs, &mut buf);
        }
        let each = per(thread_cpu().saturating_sub(cpu0), n);
        let read_each = n;

        let one = std::net::UdpSocket::bind((LOOPBACK, 0))?;
        let dests = pairs
            .iter()
            .map(|p| v4(p.2).map(Some))
            .collect::<std::io::Result<Vec<_>>>()?;
        let slices: Vec<[std::io::IoSlice; 1]> = (0..REFERENCE_BATCH)
            .map(|_| [std::io::IoSlice::new(&pkt)])
            .collect();
        let mut hdr = MultiHeaders::<SockaddrIn>::preallocate(REFERENCE_BATCH, None);
        let send = |hdr: &mut MultiHeaders<SockaddrIn>, to: &[Option<SockaddrIn>]| {
            sendmmsg(
                one.as_raw_fd(),
                hdr,
                &slices[..to.len()],
                to,
                [],
                MsgFlags::empty(),
            )
            .map(Iterator::count)
            .map_err(std::io::Error::from)
        };
        let (cpu0, mut n) = (thread_cpu(), 0);
        for _ in 0..rounds {
            for chunk in dests.chunks(REFERENCE_BATCH) {
                send(&mut hdr, chunk)?;
            }
            n += drain(&pairs, &mut buf);
        }
        let batched_sends = per(thread_cpu().saturating_sub(cpu0), n);
        let read_batched = n;

        let rx = std::net::UdpSocket::bind((LOOPBACK, 0))?;
        rx.set_nonblocking(true)?;
        let to = vec![Some(v4(rx.local_addr()?)?); REFERENCE_BATCH];
        let mut bufs = vec![[0u8; 256]; REFERENCE_BATCH];
        let mut rhdr = MultiHeaders::<SockaddrIn>::preallocate(REFERENCE_BATCH, None);
        let (cpu0, mut n) = (thread_cpu(), 0u32);
        // Each batch is read, in one recvmmsg, before the next is sent: the socket's buffer
        // never drops one, and only what is read is counted. (nix's recvmmsg keeps its
        // slices borrowed for as long as its headers: they are made again each time.)
        for _ in 0..rounds * (REFERENCE_SOCKETS / REFERENCE_BATCH) {
            send(&mut hdr, &to)?;
            let mut iovs: Vec<[std::io::IoSliceMut; 1]> = bufs
                .iter_mut()
                .map(|b| [std::io::IoSliceMut::new(&mut b[..])])
                .collect();
            n += recvmmsg(
                rx.as_raw_fd(),
                &mut rhdr,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_or(0, Iterator::count) as u32;
        }
        let shared = per(thread_cpu().saturating_sub(cpu0), n);
        Ok(Reference {
            each,
            batched_sends,
            shared,
            read: [read_each, read_batched, n],
        })
    }

    /// The least CPU of a call-second's 100 datagrams (50 each way), in ms, at `per`.
    fn call_second_ms(per: Duration) -> f64 {
        per.as_secs_f64() * 100.0 * 1000.0
    }

    fn print(&self) {
        let line = |what: &str, per: Duration, read: u32| {
            let call_ms = Self::call_second_ms(per);
            println!(
                "  {what}: {:.2} µs a datagram ({read} read), {call_ms:.3} ms a call-second; 10,000 calls: {:.2} cores",
                per.as_secs_f64() * 1e6,
                call_ms * 10.0,
            );
        };
        println!(
            "reference, the kernel alone (RTP-sized datagrams sent and read on loopback by one thread, {REFERENCE_SOCKETS} receiving sockets; the cores are for the calls' datagrams alone, gateway and phones together):"
        );
        line(
            "a socket a call, send_to and recv_from",
            self.each,
            self.read[0],
        );
        line(
            "sends in sendmmsg batches from one socket",
            self.batched_sends,
            self.read[1],
        );
        line(
            "one socket to one socket, sendmmsg and recvmmsg",
            self.shared,
            self.read[2],
        );
    }
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    let (user, system) = cpu_of_rusage(nix::sys::resource::UsageWho::RUSAGE_THREAD);
    user + system
}

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4)
}

/// CPU time of another process (from /proc/PID/stat, in clock ticks of 10 ms).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the ')'.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn sipp(dir: &Path, pcap: &Path, calls: usize, a: &Args) -> (Child, SocketAddr) {
    let (nice, cpu, policy) = (a.sipp_nice, a.sipp_cpu.as_str(), a.sipp_policy.as_str());
    // No ringing pause: under this load sipp left some paused calls unanswered (24 of 1000
    // in one run, seen in its screen as calls stuck in the pause).
    let play = match a.sipp_audio.as_str() {
        // One thread per call, each replaying the capture.
        "pcap" => format!("play_pcap_audio=\"{}\"", pcap.display()),
        // A pool of threads (16 calls each) sending the same audio as raw PCMU, once.
        _ => format!(
            "rtp_stream=\"{},1,0\"",
            pcap.with_extension("ulaw").display()
        ),
    };
    let file = callverify_e2e::callee_scenario_playing(dir, &play, Duration::ZERO);
    let port = callverify_e2e::free_port(LOOPBACK);
    let media = callverify_e2e::free_media_ports(LOOPBACK);
    let log = std::fs::File::create(dir.join("sipp.log")).expect("sipp log");
    // sipp's threads, pinned to the last CPU (`--sipp-cpu`, "all" for none) and niced, stand
    // for phones on other machines instead of outweighing the gateway's two worker threads
    // in the scheduler. `--sipp-policy idle` runs them under SCHED_IDLE.
    let mut cmd = if cpu == "all" {
        Command::new("chrt")
    } else {
        let mut c = Command::new("taskset");
        c.args(["-c", cpu, "chrt"]);
        c
    };
    match policy {
        "normal" => cmd.args(["--other", "0"]),
        _ => cmd.args(["--idle", "0"]),
    };
    let child = cmd
        .arg("nice")
        .args(["-n", &nice.to_string(), "sipp"])
        .arg("-sf")
        .arg(&file)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-mp",
            &media.to_string(),
        ])
        .args(["-t", "u1", "-m", &calls.to_string(), "-nostdin"])
        .args(["-timeout", "120s", "-max_socket", "4096", "-trace_err"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("sipp runs (apt-get install sip-tester)");
    let addr = SocketAddr::new(LOOPBACK, port);
    std::thread::sleep(Duration::from_millis(500));
    (child, addr)
}

struct Figures {
    calls: usize,
    /// The most calls in progress at once.
    peak: usize,
    cpu_per_call_s_ms: f64,
    /// The phones' CPU a call-second.
    phones_per_call_s_ms: f64,
    cpu_cores: f64,
    sipp_cores: f64,
    rss_per_call_kib: f64,
    tally: Tally,
    wall: Duration,
    start: Instant,
    /// The runtime's wake-ups more than 10 ms late: when (since the start), how late.
    lags: Vec<(Duration, Duration)>,
    /// bench-phone's summary line.
    summary: Option<String>,
}

/// What the calls of one load ended with.
#[derive(Default)]
struct Tally {
    intervals: SendIntervals,
    approved: usize,
    others: Vec<(String, usize)>,
    call_seconds: f64,
    jitter_sum_ms: f64,
    jitter_max_ms: f64,
    rtp_lost: u64,
}

type CallTask = tokio::task::JoinHandle<(
    Result<engine::call_driver::Finished, engine::VerifyError>,
    Arc<Mutex<Pacing>>,
)>;

impl Tally {
    fn other(&mut self, name: String) {
        match self.others.iter_mut().find(|(k, _)| *k == name) {
            Some((_, c)) => *c += 1,
            None => self.others.push((name, 1)),
        }
    }

    /// Waits for every call and counts what it ended with.
    async fn of(tasks: Vec<CallTask>) -> Tally {
        let mut t = Tally::default();
        for task in tasks {
            match task.await {
                Ok((Ok(f), pacing)) => {
                    if let Ok(p) = pacing.lock() {
                        t.intervals.merge(&p.intervals);
                    }
                    let r = &f.report;
                    t.call_seconds += r.timings.duration_ms as f64 / 1000.0;
                    t.jitter_sum_ms += r.media.jitter_ms;
                    t.jitter_max_ms = t.jitter_max_ms.max(r.media.jitter_ms);
                    t.rtp_lost += r.media.packets_lost.max(0) as u64;
                    if r.outcome == Outcome::Approved && r.keys.len() == 1 {
                        t.approved += 1;
                    } else {
                        t.other(format!("{} {:?}", r.outcome.name(), r.detail));
                    }
                }
                Ok((Err(e), _)) => t.others.push((format!("not placed: {e}"), 1)),
                Err(e) => t.others.push((format!("task failed: {e}"), 1)),
            }
        }
        t
    }
}

/// A SIP endpoint on loopback whose one trunk is sipp.
async fn endpoint(sipp: SocketAddr) -> SipEndpoint {
    let ua = UaConfig {
        listen: vec![Listener::new(Transport::Udp, SocketAddr::new(LOOPBACK, 0))],
        user_agent: "callverify-bench".into(),
        timers: Timers::default(),
        ring_timeout: Duration::from_secs(30),
    };
    let trunk = callverify_e2e::trunk("sipp", Transport::Udp, sipp);
    let (ep, _events) = SipEndpoint::start(ua, vec![trunk]).await.expect("endpoint");
    ep
}

/// Calls in progress now, and the most at once.
#[derive(Default)]
struct Live {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// Places `n` calls at `rate` a second from `start`, each measuring its send intervals.
async fn place_calls(
    n: usize,
    rate: f64,
    start: Instant,
    ep: &Arc<SipEndpoint>,
    prompts: &engine::Prompts,
    live: &Arc<Live>,
) -> Vec<CallTask> {
    let media = MediaConfig {
        address: LOOPBACK,
        public_address: None,
        ports: 20000..=40000,
        // Offered as the tests offer them (sipp's scenario checks the offer); sipp picks PCMU.
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        on_send: None,
    };
    let script = ScriptConfig {
        repeats: 3,
        first_key_timeout: Duration::from_secs(30),
        call_timeout: Duration::from_secs(60),
        ..ScriptConfig::default()
    };
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (ep, script, prompts) = (ep.clone(), script.clone(), prompts.clone());
        let (media, pacing) = measured(&media);
        let live = live.clone();
        tasks.push(tokio::spawn(async move {
            let now = live.now.fetch_add(1, Ordering::Relaxed) + 1;
            live.peak.fetch_max(now, Ordering::Relaxed);
            let number = store::PhoneNumber::parse(&format!("+8190{i:08}")).expect("E.164");
            let finished = engine::verify(
                &ep,
                &media,
                script,
                prompts,
                engine::Confirmation::Pound,
                &number,
                None,
                std::future::pending(),
            )
            .await;
            live.now.fetch_sub(1, Ordering::Relaxed);
            (finished, pacing)
        }));
    }
    tasks
}

/// Wake-ups more than 10 ms late: when (since the start), how late.
type Lags = Arc<Mutex<Vec<(Duration, Duration)>>>;

/// A task that sleeps 1 ms again and again until aborted, noting each wake-up more than
/// 10 ms late (when, how late): the runtime as a whole stalled, not one call.
fn probe_lag(start: Instant) -> (Lags, tokio::task::JoinHandle<()>) {
    let lags = Arc::new(Mutex::new(Vec::new()));
    let task = {
        let lags = lags.clone();
        tokio::spawn(async move {
            loop {
                let before = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let lag = before.elapsed().saturating_sub(Duration::from_millis(1));
                if lag > Duration::from_millis(10)
                    && let Ok(mut l) = lags.lock()
                    && l.len() < 10_000
                {
                    l.push((before - start, lag));
                }
            }
        })
    };
    (lags, task)
}

/// Samples this process's peak RSS every 100 ms until aborted.
fn sample_peak_rss() -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(rss_kib()));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    (peak, sampler)
}

/// Lets sipp finish (up to 10 s), then stops it.
async fn stop(mut sipp: Child) {
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while sipp.try_wait().ok().flatten().is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let _ = sipp.kill();
    let _ = sipp.wait();
}

/// The phones of one load: sipp, or bench-phone.
enum Phones {
    Sipp(Child),
    Bench(phone_peer::BenchPhone),
}

impl Phones {
    fn id(&self) -> u32 {
        match self {
            Phones::Sipp(c) => c.id(),
            Phones::Bench(b) => b.id(),
        }
    }
}

async fn run(n: usize, a: &Args, prompts: engine::Prompts, pcap: &Path, dir: &Path) -> Figures {
    let (phones, phones_addr) = if a.phone == "bench" {
        // The same audio as sipp's capture: '#' 8 s after the answer.
        let b = phone_peer::BenchPhone::start(8000);
        let addr = b.sip;
        (Phones::Bench(b), addr)
    } else {
        let (c, addr) = sipp(dir, pcap, n, a);
        (Phones::Sipp(c), addr)
    };
    let ep = Arc::new(endpoint(phones_addr).await);
    let rss0 = rss_kib();
    let cpu0 = cpu_time();
    let sipp_cpu0 = cpu_of(phones.id());
    let start = Instant::now();
    let (lags, prober) = probe_lag(start);
    let live = Arc::new(Live::default());
    let tasks = place_calls(n, a.rate, start, &ep, &prompts, &live).await;
    // Sample memory while the calls run.
    let (peak, sampler) = sample_peak_rss();
    let tally = Tally::of(tasks).await;
    let wall = start.elapsed();
    let cpu = cpu_time().checked_sub(cpu0).unwrap();
    let sipp_cpu = cpu_of(phones.id()).checked_sub(sipp_cpu0).unwrap();
    sampler.abort();
    prober.abort();
    let lags = lags.lock().map(|l| l.clone()).unwrap_or_default();
    let peak = peak.load(Ordering::Relaxed).max(rss_kib());
    let summary = match phones {
        Phones::Sipp(c) => {
            stop(c).await;
            None
        }
        Phones::Bench(b) => Some(b.finish()),
    };
    if let Ok(ep) = Arc::try_unwrap(ep) {
        ep.shutdown().await;
    }
    Figures {
        calls: n,
        peak: live.peak.load(Ordering::Relaxed),
        cpu_per_call_s_ms: cpu.as_secs_f64() * 1000.0 / tally.call_seconds.max(1e-9),
        phones_per_call_s_ms: sipp_cpu.as_secs_f64() * 1000.0 / tally.call_seconds.max(1e-9),
        cpu_cores: cpu.as_secs_f64() / wall.as_secs_f64(),
        sipp_cores: sipp_cpu.as_secs_f64() / wall.as_secs_f64(),
        rss_per_call_kib: peak.saturating_sub(rss0) as f64 / n as f64,
        tally,
        wall,
        start,
        lags,
        summary,
    }
}
fn capture(dir: &Path) -> PathBuf {
    let audio = Signal::new()
        .silence(8000.0)
        .digit(Digit::Pound, -10.0, 160.0)
        .silence(1840.0)
        .pcm();
    let path = dir.join("pound-at-8s.pcap");
    let ulaw: Vec<u8> = audio.iter().map(|&x| media::g711::ulaw_encode(x)).collect();
    std::fs::write(path.with_extension("ulaw"), ulaw).expect("write the audio");
    pcap::write(&path, &pcap::rtp(&[Part::Audio(audio)]));
    path
}

fn main() {
    let a = Args::parse();
    let dir = std::env::temp_dir().join(format!("callverify-call-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let pcap = capture(&dir);
    let prompts = callverify_e2e::prompts(Language::En);
    // Before any call (see engine::descriptors): two sockets a call, and some room.
    let most = a.calls.iter().copied().max().unwrap_or(0) as u64;
    if let Ok(r) = engine::descriptors::reserve(2 * most + 512)
        && !r.is_enough()
    {
        eprintln!(
            "call-bench: the open-file limit {} is below the {} descriptors {most} calls need",
            r.limit, r.wanted
        );
    }
    let reference = Reference::measure(100).expect("loopback sockets for the reference");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.workers)
        .enable_all()
        .build()
        .expect("runtime");
    let phones = if a.phone == "bench" {
        "bench-phone".to_string()
    } else {
        format!(
            "sipp (nice {}, CPUs {}, policy {})",
            a.sipp_nice, a.sipp_cpu, a.sipp_policy
        )
    };
    println!(
        "call-bench: {} tokio workers, calls placed at {}/s, {phones} plays 10 s with '#' at 8 s; {} CPUs online, in-band DTMF kernel: {:?}",
        a.workers,
        a.rate,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        dtmf::Detector::new().kernel(),
    );
    reference.print();
    let floor_call_ms = Reference::call_second_ms(reference.each);
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>9} {:>6} {:>7}",
        "calls",
        "cpu ms/s",
        "cores",
        "phones",
        "KiB/call",
        "p50 ms",
        "p99 ms",
        "p99.9",
        "max",
        "approved",
        "lost",
        "wall s"
    );
    for &n in &a.calls {
        let run_dir = dir.join(n.to_string());
        std::fs::create_dir_all(&run_dir).expect("scratch");
        let f = rt.block_on(run(n, &a, prompts.clone(), &pcap, &run_dir));
        print(&f, floor_call_ms);
    }
}

/// One load's line of figures, then what is worth knowing about it.
/// `floor_call_ms`: the kernel's least CPU for a call-second's datagrams (the reference).
fn print(f: &Figures, floor_call_ms: f64) {
    let t = &f.tally;
    let q = |x| t.intervals.quantile_ms(x).unwrap_or(f64::NAN);
    println!(
        "{:>6} {:>10.2} {:>8.2} {:>8.2} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>6} {:>7.1}",
        f.calls,
        f.cpu_per_call_s_ms,
        f.cpu_cores,
        f.sipp_cores,
        f.rss_per_call_kib,
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0),
        t.approved,
        f.calls - t.approved,
        f.wall.as_secs_f64(),
    );
    println!(
        "        CPU a call-second: gateway {:.3} ms, phones {:.3} ms, together {:.2}x the first reference ({floor_call_ms:.3} ms)",
        f.cpu_per_call_s_ms,
        f.phones_per_call_s_ms,
        (f.cpu_per_call_s_ms + f.phones_per_call_s_ms) / floor_call_ms.max(1e-9),
    );
    println!(
        "        most calls at once {}; received: jitter (RFC 3550) mean {:.2} ms, worst call {:.2} ms; RTP packets lost {}",
        f.peak,
        t.jitter_sum_ms / f.calls as f64,
        t.jitter_max_ms,
        t.rtp_lost
    );
    if !t.intervals.late.is_empty() {
        // When the sends later than 40 ms happened, per second of the run.
        let mut per_s = std::collections::BTreeMap::new();
        for (at, _) in &t.intervals.late {
            *per_s
                .entry(at.saturating_duration_since(f.start).as_secs())
                .or_insert(0) += 1;
        }
        let worst = t.intervals.late.iter().map(|l| l.1).max().unwrap_or(0);
        println!(
            "        sends > 40 ms after the previous: {} (worst {:.1} ms); by second of the run: {:?}",
            t.intervals.late.len(),
            f64::from(worst) / 1000.0,
            per_s
        );
    }
    if !f.lags.is_empty() {
        let mut per_s = std::collections::BTreeMap::new();
        for (at, _) in &f.lags {
            *per_s.entry(at.as_secs()).or_insert(0) += 1;
        }
        let worst = f.lags.iter().map(|l| l.1).max().unwrap_or_default();
        println!(
            "        the runtime's 1 ms timer woke > 10 ms late {} times (worst {:.1} ms); by second: {:?}",
            f.lags.len(),
            worst.as_secs_f64() * 1000.0,
            per_s
        );
    } else {
        println!("        the runtime's 1 ms timer never woke more than 10 ms late");
    }
    for (what, count) in &t.others {
        println!("        not approved: {count} × {what}");
    }
    if let Some(s) = &f.summary {
        println!("        bench-phone: {s}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    #[test]
    fn help_lists_every_option() {
        cli_check::help_lists::<Args>(&[
            "calls",
            "workers",
            "rate",
            "sipp-nice",
            "sipp-cpu",
            "sipp-policy",
            "sipp-audio",
            "phone",
        ]);
    }

    #[test]
    fn unknown_arguments_are_refused() {
        cli_check::refuses_unknown::<Args>();
    }

    #[test]
    fn bad_values_are_refused() {
        for (argv, kind) in [
            (&["--workers", "two"][..], ErrorKind::ValueValidation),
            (&["--workers", "0"], ErrorKind::ValueValidation),
            (&["--calls", "100,x"], ErrorKind::ValueValidation),
            (&["--calls", "0"], ErrorKind::ValueValidation),
            (&["--rate", "0"], ErrorKind::ValueValidation),
            (&["--rate", "inf"], ErrorKind::ValueValidation),
            (&["--sipp-nice", "20"], ErrorKind::ValueValidation),
            (&["--sipp-cpu", "last"], ErrorKind::ValueValidation),
            (&["--sipp-cpu", "1-"], ErrorKind::ValueValidation),
            (&["--sipp-policy", "fifo"], ErrorKind::InvalidValue),
            (&["--sipp-audio", "rtp"], ErrorKind::InvalidValue),
            (&["--workers"], ErrorKind::InvalidValue),
            (&["--phone", "baresip"], ErrorKind::InvalidValue),
        ] {
            assert_eq!(cli_check::error_kind::<Args>(argv), kind, "{argv:?}");
        }
    }

    #[test]
    fn defaults_are_the_previous_ones() {
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
        assert_eq!(
            cli_check::parse::<Args>(&[]),
            Args {
                calls: vec![100, 500, 1000],
                workers: 2,
                rate: 200.0,
                sipp_nice: 19,
                sipp_cpu: cpus.to_string(),
                sipp_policy: "idle".into(),
                sipp_audio: "stream".into(),
                phone: "sipp".into(),
            }
        );
    }

    #[test]
    fn options_are_read_as_before() {
        let a = cli_check::parse::<Args>(&[
            "--calls",
            "10,20",
            "--workers",
            "4",
            "--rate",
            "50.5",
            "--sipp-nice",
            "-5",
            "--sipp-cpu",
            "0-3,6",
            "--sipp-policy",
            "normal",
            "--sipp-audio",
            "pcap",
            "--phone",
            "bench",
        ]);
        assert_eq!(
            a,
            Args {
                calls: vec![10, 20],
                workers: 4,
                rate: 50.5,
                sipp_nice: -5,
                sipp_cpu: "0-3,6".into(),
                sipp_policy: "normal".into(),
                sipp_audio: "pcap".into(),
                phone: "bench".into(),
            }
        );
        assert_eq!(
            cli_check::parse::<Args>(&["--sipp-cpu", "all"]).sipp_cpu,
            "all"
        );
    }

    #[test]
    fn interval_quantiles() {
        let mut h = SendIntervals::default();
        let t = Instant::now();
        for _ in 0..98 {
            h.record(t, 20_000);
        }
        h.record(t, 24_100);
        h.record(t, 900_000);
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_ms(0.5), Some(20.25));
        assert_eq!(h.quantile_ms(0.99), Some(24.25));
        assert_eq!(h.quantile_ms(1.0), Some(128.25));
        assert_eq!(h.late, vec![(t, 900_000)]);
    }

    #[test]
    fn the_reference_reads_every_datagram_it_sends_and_costs_some_cpu() {
        // Two sockets for each of the 1,000 pairs, whatever the shell's limit.
        engine::descriptors::reserve(2 * REFERENCE_SOCKETS as u64 + 64).unwrap();
        let r = Reference::measure(3).unwrap();
        let batches = (REFERENCE_SOCKETS / REFERENCE_BATCH * REFERENCE_BATCH) as u32;
        assert_eq!(r.read, [3000, 3000, 3 * batches]);
        for d in [r.each, r.batched_sends, r.shared] {
            assert!(d > Duration::ZERO && d < Duration::from_millis(1), "{d:?}");
        }
    }

    #[test]
    fn pacing_records_the_interval_between_sends() {
        let mut p = Pacing::default();
        let t = Instant::now();
        p.sent(t);
        p.sent(t + Duration::from_millis(20));
        p.sent(t + Duration::from_millis(61));
        assert_eq!(p.intervals.count(), 2);
        assert_eq!(p.intervals.quantile_ms(0.5), Some(20.25));
        assert_eq!(
            p.intervals.late,
            vec![(t + Duration::from_millis(61), 41_000)]
        );
    }
}
