//! sipp as the far end: a process playing one scenario of `tests/sipp/` for one call, and
//! the verification callee's scenario (`tests/sipp/verify_callee.xml`) written with the
//! audio and the ringing a test chooses.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sip::Transport;

use crate::net::{free_media_ports, free_port, in_use};
use crate::{BOUND, KEY_AT_MS, scratch};

/// sipp's own capture of an RFC 4733 '#' (its events come in its first 100 ms).
pub const SIPP_POUND: &str = "/usr/share/sip-tester/dtmf_2833_pound.pcap";

/// A sipp process playing one scenario from `tests/sipp/` for one call.
pub struct Sipp {
    child: Child,
    dir: PathBuf,
    /// Where it listens for SIP.
    pub addr: SocketAddr,
    /// Its transport.
    pub transport: Transport,
}

/// How a sipp run ended.
#[derive(Debug)]
pub struct SippExit {
    /// True when the scenario ran to its end with no failed call.
    pub passed: bool,
    /// sipp's screen and error log, for assertion messages.
    pub log: String,
}

impl Sipp {
    /// Starts `sipp -sf tests/sipp/<scenario>.xml` as a server on a free port of `ip`;
    /// returns once it listens.
    pub fn start(scenario: &str, transport: Transport, ip: IpAddr) -> Sipp {
        Sipp::start_with(scenario, transport, ip, &[])
    }

    /// As [`Sipp::start`], with extra arguments.
    pub fn start_with(scenario: &str, transport: Transport, ip: IpAddr, extra: &[&str]) -> Sipp {
        let dir = scratch(&format!("sipp-{scenario}-{transport}"));
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sipp")
            .join(format!("{scenario}.xml"));
        Sipp::spawn(dir, &file, transport, ip, extra)
    }

    /// Starts sipp as the phone of a verification call (`tests/sipp/verify_callee.xml`) over
    /// UDP: it rings 300 ms, answers and plays `pcap` (RTP captured or made by
    /// [`crate::pcap`]) as its audio.
    pub fn callee(name: &str, ip: IpAddr, pcap: Option<&Path>) -> Sipp {
        let dir = scratch(&format!("sipp-callee-{name}"));
        let file = callee_scenario(&dir, pcap, Duration::from_millis(300));
        Sipp::spawn(dir, &file, Transport::Udp, ip, &[])
    }

    /// As [`Sipp::callee`], pressing '#' as RFC 4733 events (sipp's own capture,
    /// [`SIPP_POUND`]) [`KEY_AT_MS`] after the answer.
    pub fn callee_pressing_pound(name: &str, ip: IpAddr) -> Sipp {
        let dir = scratch(&format!("sipp-callee-{name}"));
        let file = callee_scenario_after(
            &dir,
            Some(Path::new(SIPP_POUND)),
            Duration::from_millis(300),
            Duration::from_millis(KEY_AT_MS as u64),
        );
        Sipp::spawn(dir, &file, Transport::Udp, ip, &[])
    }

    /// sipp running the scenario file `file` (made in `dir`) on UDP, with extra arguments
    /// (a later `-m` overrides the default of one call).
    pub fn start_file(dir: PathBuf, file: &Path, ip: IpAddr, extra: &[&str]) -> Sipp {
        Sipp::spawn(dir, file, Transport::Udp, ip, extra)
    }

    /// Starts sipp; when a port it chose was taken by another test between choosing and
    /// binding (sipp exits with "Address already in use"), tries again on other ports.
    fn spawn(dir: PathBuf, file: &Path, transport: Transport, ip: IpAddr, extra: &[&str]) -> Sipp {
        let mut tries = 0;
        loop {
            tries += 1;
            match Sipp::try_spawn(dir.clone(), file, transport, ip, extra) {
                Ok(sipp) => return sipp,
                Err(log) if tries < 5 && log.contains("Address already in use") => {}
                Err(log) => panic!("{log}"),
            }
        }
    }

    fn try_spawn(
        dir: PathBuf,
        file: &Path,
        transport: Transport,
        ip: IpAddr,
        extra: &[&str],
    ) -> Result<Sipp, String> {
        let port = free_port(ip);
        let media = free_media_ports(ip);
        let out = fs::File::create(dir.join("screen.log")).expect("create the screen log");
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(file)
            .args(["-i", &ip.to_string(), "-p", &port.to_string()])
            .args(["-mp", &media.to_string()])
            .args([
                "-t",
                if transport == Transport::Udp {
                    "u1"
                } else {
                    "t1"
                },
            ])
            .args(["-m", "1", "-timeout", "25s", "-timeout_error", "-nostdin"])
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.join("errors.log"))
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.join("messages.log"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone a file handle"))
            .stderr(out)
            .spawn()
            .expect("sipp runs (apt-get install sip-tester)");
        let addr = SocketAddr::new(ip, port);
        let mut sipp = Sipp {
            child,
            dir,
            addr,
            transport,
        };
        let start = Instant::now();
        while !in_use(transport, addr) {
            if let Ok(Some(status)) = sipp.child.try_wait() {
                return Err(format!("sipp exited at start ({status}):\n{}", sipp.log()));
            }
            assert!(start.elapsed() < BOUND, "sipp did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(sipp)
    }

    fn log(&self) -> String {
        let read = |n: &str| fs::read_to_string(self.dir.join(n)).unwrap_or_default();
        let screen = read("screen.log");
        let tail: String = screen
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        format!(
            "--- sipp screen (end) ---\n{tail}\n--- sipp errors ---\n{}\n--- sipp messages ---\n{}",
            read("errors.log"),
            read("messages.log")
        )
    }

    /// Waits (bounded) for sipp to finish its one call. Keep callverify's endpoint running
    /// until this returns: sipp counts a connection closed under it as a failure.
    pub async fn finish(mut self) -> SippExit {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    return SippExit {
                        passed: status.success(),
                        log: self.log(),
                    };
                }
                Ok(None) if start.elapsed() < BOUND => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return SippExit {
                        passed: false,
                        log: format!("sipp killed after {BOUND:?}\n{}", self.log()),
                    };
                }
            }
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `tests/sipp/verify_callee.xml` into `dir` with `pcap` as the phone's audio (or
/// none), ringing `ring` before it answers, and returns its path.
pub fn callee_scenario(dir: &Path, pcap: Option<&Path>, ring: Duration) -> PathBuf {
    callee_scenario_after(dir, pcap, ring, Duration::ZERO)
}

/// As [`callee_scenario`], with the capture played `after` the answer (sipp waits first).
pub fn callee_scenario_after(
    dir: &Path,
    pcap: Option<&Path>,
    ring: Duration,
    after: Duration,
) -> PathBuf {
    let mut play = pcap.map_or(String::new(), |p| {
        format!("play_pcap_audio=\"{}\"", p.display())
    });
    if !play.is_empty() && !after.is_zero() {
        play = format!("@WAIT{}@{play}", after.as_millis());
    }
    callee_scenario_playing(dir, &play, ring)
}

/// As [`callee_scenario`], the audio played by the `exec` attribute `play` (sipp's
/// `play_pcap_audio="…"` or `rtp_stream="…"`; empty for none).
pub fn callee_scenario_playing(dir: &Path, play: &str, ring: Duration) -> PathBuf {
    let template =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp/verify_callee.xml"))
            .expect("read the callee scenario");
    let play = match play {
        "" => String::new(),
        p => match p.strip_prefix("@WAIT").and_then(|r| r.split_once('@')) {
            Some((ms, p)) => {
                format!("<pause milliseconds=\"{ms}\"/><nop><action><exec {p}/></action></nop>")
            }
            None => format!("<nop><action><exec {p}/></action></nop>"),
        },
    };
    let file = dir.join("scenario.xml");
    let ring = match ring.as_millis() {
        0 => String::new(),
        ms => format!("<pause milliseconds=\"{ms}\"/>"),
    };
    let scenario = template.replace("@PLAY@", &play).replace("@RING@", &ring);
    fs::write(&file, scenario).expect("write the scenario");
    file
}
