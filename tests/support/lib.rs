//! Helpers for the end-to-end tests: real peers (sipp, baresip) started on loopback with
//! free ports, bounded in time, stopped when the test ends; and callverify's SIP endpoint
//! configured for them.

pub mod pcap;

use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use engine::{Call, SipEndpoint};
use media::Codec;
use sip::sdp::Offer;
use sip::{CallEvent, EndReason, Listener, Timers, Transport, TrunkConfig, UaConfig};

/// Every wait in these tests ends by this bound.
pub const BOUND: Duration = Duration::from_secs(30);

/// When the test phones press their key, in milliseconds after the answer: while the
/// instructions play. Keys during the greeting (3.84 s in English, 3.9 s in Japanese) are
/// dropped, as a recorded greeting's would be.
pub const KEY_AT_MS: f64 = 4500.0;

/// sipp's own capture of an RFC 4733 '#' (its events come in its first 100 ms).
pub const SIPP_POUND: &str = "/usr/share/sip-tester/dtmf_2833_pound.pcap";

/// IPv4 loopback.
pub const V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// IPv6 loopback.
pub const V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);

/// A port free on `ip` for both UDP and TCP right now.
pub fn free_port(ip: IpAddr) -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind((ip, 0)).expect("bind a UDP port on loopback");
        let port = udp.local_addr().expect("local address").port();
        if TcpListener::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on {ip}");
}

/// A free even UDP port whose next three ports are free as well: sipp binds its audio RTP
/// and RTCP on the media port and the one after it, and its video pair on the two after those.
pub fn free_media_ports(ip: IpAddr) -> u16 {
    for _ in 0..200 {
        let udp = UdpSocket::bind((ip, 0)).expect("bind a UDP port on loopback");
        let base = udp.local_addr().expect("local address").port() & !1;
        drop(udp);
        if !(1024..=u16::MAX - 4).contains(&base) {
            continue;
        }
        if (base..base + 4).all(|p| UdpSocket::bind((ip, p)).is_ok()) {
            return base;
        }
    }
    panic!("no four free UDP ports in a row on {ip}");
}

/// Whether something listens on `addr` for `transport` (binding it fails).
fn in_use(transport: Transport, addr: SocketAddr) -> bool {
    match transport {
        Transport::Udp => UdpSocket::bind(addr).is_err(),
        Transport::Tcp | Transport::Tls => TcpListener::bind(addr).is_err(),
    }
}

/// Sends SIGTERM to process `pid` (with kill(1)); whether kill succeeded (it fails when the
/// process is gone).
pub fn sigterm(pid: u32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for `child` to exit and returns its status; when it has not within `bound`, kills
/// it and panics with "`what` did not end".
pub fn wait_exit(child: &mut Child, bound: Duration, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("its status") {
            return status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A SQLite store of its own in the scratch directory `name` (as `Store::open` opens it,
/// without the copy of challenges that `serve` adds).
pub async fn sqlite_store(name: &str) -> store::Store {
    let dir = scratch(name);
    store::Store::open(&format!("sqlite://{}", dir.join("cv.db").display()))
        .await
        .expect("a SQLite store in a scratch directory")
}

/// A scratch directory for one test's logs, under the system's temporary directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("callverify-e2e")
        .join(format!("{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// A sipp process playing one scenario from `tests/sipp/` for one call.
pub struct Sipp {
    child: Child,
    dir: PathBuf,
    /// Where it listens for SIP.
    pub addr: SocketAddr,
    /// Its transport.
    pub transport: Transport,
}

/// One HTTP/1.1 request over a fresh loopback connection (bounded by [`BOUND`]): the status
/// and the body. `bearer` may be empty.
pub fn http(addr: &str, method: &str, path: &str, bearer: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the API");
    s.set_read_timeout(Some(BOUND)).expect("a read timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not HTTP: {raw}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A sign-in challenge of API key `api_key_id` to call `number`, made at `now_ms` and
/// expiring 5 minutes later (Japanese prompts, no user, no idempotency key).
pub fn sign_in(api_key_id: &str, number: &str, now_ms: i64) -> store::NewChallenge {
    store::NewChallenge {
        api_key_id: api_key_id.into(),
        idempotency_key: None,
        request_hash: String::new(),
        user_id: None,
        phone: store::PhoneNumber::parse(number).expect("an E.164 number"),
        language: "ja".into(),
        purpose: store::Purpose::SignIn,
        callback_url: None,
        enrol: None,
        remember_device_ms: 0,
        fraud_block_ms: 86_400_000,
        confirm_primary: false,
        now_ms,
        expires_at_ms: now_ms + 300_000,
    }
}

/// `callverify serve` as a process (killed on drop).
pub struct Served {
    /// The process.
    pub child: Child,
    /// Its API's address.
    pub api: String,
}

impl Served {
    /// Starts `bin serve [extra] --config config` with both secrets set to `secret`, its
    /// stderr into `log`; returns once its API at `api` listens (bounded by [`BOUND`]).
    pub fn start(
        bin: &Path,
        config: &Path,
        api: &str,
        secret: &str,
        extra: &[&str],
        log: &Path,
    ) -> Served {
        let log = fs::File::create(log).expect("the serve log");
        let mut child = Command::new(bin)
            .arg("serve")
            .args(extra)
            .arg("--config")
            .arg(config)
            .env("CALLVERIFY_TOKEN_SECRET", secret)
            .env("CALLVERIFY_WEBHOOK_SECRET", secret)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("callverify serve");
        let started = Instant::now();
        while std::net::TcpStream::connect(api).is_err() {
            assert!(started.elapsed() < BOUND, "serve did not listen on {api}");
            assert!(
                child.try_wait().expect("its status").is_none(),
                "serve exited"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Served {
            child,
            api: api.to_string(),
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API key made with `bin create-api-key NAME --kind KIND --config config`.
pub fn create_api_key(bin: &Path, config: &Path, name: &str, kind: &str) -> String {
    let out = Command::new(bin)
        .args(["create-api-key", name, "--kind", kind, "--config"])
        .arg(config)
        .output()
        .expect("callverify create-api-key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("the key")
        .trim()
        .to_string()
}

/// Raw PCMU for sipp's `rtp_stream`: `before_ms` of quiet, a 160 ms in-band '#', 1 s of
/// quiet; written into `dir`.
pub fn pound_ulaw(dir: &Path, before_ms: f64) -> PathBuf {
    let pcm = testaudio::Signal::new()
        .silence(before_ms)
        .digit(dtmf::Digit::Pound, -10.0, 160.0)
        .silence(1000.0)
        .pcm();
    let ulaw: Vec<u8> = pcm.iter().map(|&x| media::g711::ulaw_encode(x)).collect();
    let path = dir.join(format!("pound-after-{before_ms}ms.ulaw"));
    fs::write(&path, ulaw).expect("write the audio");
    path
}

/// Every call in the call log of the API at `api` (operator key), following the pages.
pub fn call_log(api: &str, operator: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, body) = http(
            api,
            "GET",
            &format!("/v1/calls?limit=500{cursor}"),
            operator,
            "",
        );
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).expect("a page");
        out.extend(page["calls"].as_array().into_iter().flatten().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
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
    /// UDP: it rings 300 ms, answers and plays `pcap` (RTP captured or made by [`pcap`]) as its audio.
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
                Err(log) if tries < 5 && log.contains("Address already in use") => continue,
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

/// A trunk to `addr`.
pub fn trunk(name: &str, transport: Transport, addr: SocketAddr) -> TrunkConfig {
    TrunkConfig {
        name: name.into(),
        address: addr,
        transport,
        domain: addr.to_string(),
        from_user: "callverify".into(),
        credentials: None,
        register: false,
        options_interval: None,
        srtp: Default::default(),
        responses_from: Default::default(),
    }
}

/// callverify's endpoint listening on free ports of `ip` (UDP and TCP), ringing at most
/// `ring_timeout`.
pub async fn endpoint(ip: IpAddr, ring_timeout: Duration, trunks: Vec<TrunkConfig>) -> SipEndpoint {
    endpoint_with(ip, ring_timeout, trunks, Timers::default())
        .await
        .0
}

/// As [`endpoint`] with given T1/T2, also returning the trunk and registration events.
pub async fn endpoint_with(
    ip: IpAddr,
    ring_timeout: Duration,
    trunks: Vec<TrunkConfig>,
    timers: Timers,
) -> (
    SipEndpoint,
    tokio::sync::mpsc::UnboundedReceiver<sip::Event>,
) {
    let cfg = ua_config(ip, &[Transport::Udp, Transport::Tcp], timers, ring_timeout);
    SipEndpoint::start(cfg, trunks)
        .await
        .expect("the endpoint starts")
}

/// The user agent's settings for listeners of `transports` on free ports of `ip`.
fn ua_config(
    ip: IpAddr,
    transports: &[Transport],
    timers: Timers,
    ring_timeout: Duration,
) -> UaConfig {
    UaConfig {
        listen: transports
            .iter()
            .map(|&transport| Listener {
                transport,
                addr: SocketAddr::new(ip, 0),
            })
            .collect(),
        user_agent: "callverify-e2e".into(),
        timers,
        ring_timeout,
    }
}

/// callverify's endpoint with a TLS listener on a free port of `ip` (presenting
/// `tls.server`) beside UDP and TCP, checking TLS trunks as `tls.trunks` says.
pub async fn tls_endpoint(
    ip: IpAddr,
    trunks: Vec<TrunkConfig>,
    tls: engine::TlsSettings,
) -> SipEndpoint {
    let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
    let cfg = ua_config(ip, &all, Timers::default(), BOUND);
    SipEndpoint::start_tls(cfg, trunks, tls)
        .await
        .expect("the endpoint starts")
        .0
}

/// A certificate authority of a test's own: it issues certificates for loopback peers, as
/// PEM files in a scratch directory.
pub struct TestCa {
    dir: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA's certificate (PEM), to trust it.
    pub ca_file: PathBuf,
}

/// A certificate [`TestCa`] issued.
pub struct Issued {
    /// The certificate (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// Both in one file (what baresip reads).
    pub both_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let dir = scratch(&format!("ca-{name}"));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("callverify test CA {name}"),
        );
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("the CA certificate");
        let ca_file = dir.join("ca.pem");
        fs::write(&ca_file, cert.pem()).expect("write the CA certificate");
        TestCa {
            dir,
            issuer: rcgen::Issuer::new(params, key),
            ca_file,
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, stem);
        let key = rcgen::KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        let issued = Issued {
            cert_file: self.dir.join(format!("{stem}.pem")),
            key_file: self.dir.join(format!("{stem}.key")),
            both_file: self.dir.join(format!("{stem}-both.pem")),
        };
        fs::write(&issued.cert_file, cert.pem()).expect("write the certificate");
        fs::write(&issued.key_file, key.serialize_pem()).expect("write the key");
        fs::write(&issued.both_file, cert.pem() + &key.serialize_pem()).expect("write both");
        issued
    }
}

/// The next trunk or registration event (bounded).
pub async fn next_ua_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<sip::Event>,
) -> sip::Event {
    tokio::time::timeout(BOUND, events.recv())
        .await
        .expect("an event within the bound")
        .expect("the endpoint runs")
}

/// The offer for a call from `ep` (the RTP port is not used by these SIP tests).
pub fn offer(ip: IpAddr) -> Offer {
    Offer {
        address: ip,
        port: 49170,
        session_id: 1,
        version: 1,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        sdes: Default::default(),
    }
}

/// The events of `call` until it ends (each wait bounded); with `hang_up_after`, it
/// hangs up that long after the answer.
pub async fn run_call(call: &mut Call, hang_up_after: Option<Duration>) -> Vec<CallEvent> {
    let mut events = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(BOUND, call.next_event()).await {
        if let (Some(delay), CallEvent::Answered { .. }) = (hang_up_after, &e) {
            tokio::time::sleep(delay).await;
            call.hangup();
        }
        let end = matches!(e, CallEvent::Ended(_));
        events.push(e);
        if end {
            break;
        }
    }
    events
}

/// The end reason in a list of events.
pub fn ended(events: &[CallEvent]) -> Option<EndReason> {
    events.iter().find_map(|e| match e {
        CallEvent::Ended(r) => Some(r.clone()),
        _ => None,
    })
}

/// A UDP relay on loopback standing for a lossy network between callverify and a peer:
/// datagrams from the first sender go to `peer`, the peer's go back to that sender, and
/// `drop(n, bytes)` decides (for the n-th datagram towards the peer) what is lost.
pub struct Relay {
    /// Where callverify sends (use it as the trunk address).
    pub addr: SocketAddr,
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    forwarded: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying to `peer`.
    pub async fn start(
        peer: SocketAddr,
        drop: impl Fn(usize, &[u8]) -> bool + Send + 'static,
    ) -> Relay {
        use std::sync::atomic::Ordering;
        let front = tokio::net::UdpSocket::bind((peer.ip(), 0))
            .await
            .expect("bind the relay");
        let back = tokio::net::UdpSocket::bind((peer.ip(), 0))
            .await
            .expect("bind the relay");
        let addr = front.local_addr().expect("relay address");
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let forwarded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (d, f) = (dropped.clone(), forwarded.clone());
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            let mut n = 0;
            loop {
                tokio::select! {
                    Ok((len, from)) = front.recv_from(&mut a) => {
                        client = Some(from);
                        n += 1;
                        if drop(n, &a[..len]) {
                            d.fetch_add(1, Ordering::Relaxed);
                        } else {
                            f.fetch_add(1, Ordering::Relaxed);
                            let _ = back.send_to(&a[..len], peer).await;
                        }
                    }
                    Ok((len, _)) = back.recv_from(&mut b) => {
                        if let Some(c) = client {
                            let _ = front.send_to(&b[..len], c).await;
                        }
                    }
                }
            }
        });
        Relay {
            addr,
            dropped,
            forwarded,
            task,
        }
    }

    /// Datagrams lost and passed so far, towards the peer.
    pub fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.dropped.load(Ordering::Relaxed),
            self.forwarded.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A lossy UDP link on loopback between callverify and a peer: each datagram, either way,
/// is lost with probability `loss` (a seeded generator, so a run can be repeated). Its
/// address is known at once; the peer is given later ([`LossyLink::connect`]), so that the
/// peer's own configuration can name the link (sipp's Contact, for the in-dialog requests).
pub struct LossyLink {
    /// Where callverify sends (the trunk address, and the peer's Contact).
    pub addr: SocketAddr,
    peer: std::sync::Arc<std::sync::OnceLock<SocketAddr>>,
    counts: std::sync::Arc<std::sync::Mutex<(usize, usize)>>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyLink {
    /// Binds it on `ip`.
    pub async fn start(ip: IpAddr, loss: f64, seed: u64) -> LossyLink {
        let front = tokio::net::UdpSocket::bind((ip, 0))
            .await
            .expect("bind the link");
        let back = tokio::net::UdpSocket::bind((ip, 0))
            .await
            .expect("bind the link");
        let addr = front.local_addr().expect("link address");
        let peer = std::sync::Arc::new(std::sync::OnceLock::<SocketAddr>::new());
        let counts = std::sync::Arc::new(std::sync::Mutex::new((0, 0)));
        let (p, c) = (peer.clone(), counts.clone());
        let task = tokio::spawn(async move {
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut lose = move || {
                rng ^= rng >> 12;
                rng ^= rng << 25;
                rng ^= rng >> 27;
                let u =
                    (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
                u < loss
            };
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            loop {
                let (bytes, to, sock) = tokio::select! {
                    Ok((len, from)) = front.recv_from(&mut a) => {
                        client = Some(from);
                        (&a[..len], p.get().copied(), &back)
                    }
                    Ok((len, _)) = back.recv_from(&mut b) => (&b[..len], client, &front),
                };
                let Some(to) = to else { continue };
                let lost = lose();
                {
                    let mut c = c.lock().unwrap_or_else(|e| e.into_inner());
                    if lost { c.0 += 1 } else { c.1 += 1 }
                }
                if !lost {
                    let _ = sock.send_to(bytes, to).await;
                }
            }
        });
        LossyLink {
            addr,
            peer,
            counts,
            task,
        }
    }

    /// The peer behind the link.
    pub fn connect(&self, peer: SocketAddr) {
        let _ = self.peer.set(peer);
    }

    /// Datagrams lost and passed so far, both ways.
    pub fn counts(&self) -> (usize, usize) {
        *self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// baresip (a real softphone) listening on a free loopback port and answering every call
/// automatically, playing an 8 kHz WAV as its microphone (aufile; ausine only does 48 kHz).
pub struct Baresip {
    child: Child,
    dir: PathBuf,
    /// Where it listens for SIP (UDP and TCP).
    pub addr: SocketAddr,
    /// Where it listens for SIP over TLS (the port after `addr`'s), when started with TLS.
    pub tls_addr: Option<SocketAddr>,
}

/// baresip's TLS and SRTP settings.
#[derive(Clone, Copy, Default)]
pub struct BaresipSecurity<'a> {
    /// Its certificate and key in one PEM file: it listens for TLS on the port after its
    /// SIP port.
    pub certificate: Option<&'a Path>,
    /// The CAs it trusts (for the connections it opens).
    pub ca_file: Option<&'a Path>,
    /// Its account's `mediaenc` (`srtp`, `srtp-mand`).
    pub mediaenc: Option<&'a str>,
}

impl Baresip {
    /// Starts it as the phone of +81901234567; returns once it listens. It quits by itself
    /// after [`BOUND`].
    pub fn start(name: &str) -> Baresip {
        Baresip::start_saying(
            name,
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts/en/instructions.wav"),
        )
    }

    /// As [`Baresip::start`], playing `wav` (8 kHz mono) into every call it answers.
    pub fn start_saying(name: &str, wav: &Path) -> Baresip {
        Baresip::start_secured(name, wav, BaresipSecurity::default())
    }

    /// As [`Baresip::start_secured`] with a certificate for 127.0.0.1 from `ca` (and `ca`
    /// trusted), `mediaenc` for SRTP, and [`pound_wav`] as what it says.
    pub fn start_tls(name: &str, ca: &TestCa, mediaenc: Option<&str>) -> Baresip {
        let cert = ca.issue("phone", &["127.0.0.1"]);
        let wav = pound_wav(&format!("{name}-wav"));
        Baresip::start_secured(
            name,
            &wav,
            BaresipSecurity {
                certificate: Some(&cert.both_file),
                ca_file: Some(&ca.ca_file),
                mediaenc,
            },
        )
    }

    /// As [`Baresip::start_saying`], with TLS and SRTP as `sec` says.
    pub fn start_secured(name: &str, wav: &Path, sec: BaresipSecurity) -> Baresip {
        let dir = scratch(&format!("baresip-{name}"));
        // Its TLS listener takes the port after the SIP port.
        let port = loop {
            let p = free_port(V4);
            if p < u16::MAX && TcpListener::bind((V4, p + 1)).is_ok() {
                break p;
            }
        };
        let rtp = free_port(V4);
        // baresip 1.0 binds only where net_interface says (loopback here).
        let mut config = format!(
            "poll_method\tepoll\n\
             sip_listen\t127.0.0.1:{port}\n\
             net_interface\t127.0.0.1\n\
             audio_player\taufile,{heard}\n\
             audio_source\taufile,{said}\n\
             audio_alert\taufile,/dev/null\n\
             module_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module_app\taccount.so\n\
             module_app\tmenu.so\n\
             rtp_ports\t{rtp}-{}\n",
            rtp + 10,
            heard = dir.join("heard.wav").display(),
            said = wav.display(),
        );
        if let Some(cert) = sec.certificate {
            config += &format!("sip_certificate\t{}\n", cert.display());
        }
        if let Some(ca) = sec.ca_file {
            config += &format!("sip_cafile\t{}\n", ca.display());
        }
        if sec.mediaenc.is_some() {
            config += "module\tsrtp.so\n";
        }
        fs::write(dir.join("config"), config).expect("write baresip's config");
        let mediaenc = sec
            .mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        fs::write(
            dir.join("accounts"),
            format!(
                "<sip:+81901234567@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU,PCMA{mediaenc}\n"
            ),
        )
        .expect("write baresip's accounts");
        let out = fs::File::create(dir.join("baresip.log")).expect("create the log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-s", "-t", &BOUND.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone a file handle"))
            .stderr(out)
            .spawn()
            .expect("baresip runs (apt-get install baresip-core)");
        let addr = SocketAddr::new(V4, port);
        let tls_addr = sec.certificate.map(|_| SocketAddr::new(V4, port + 1));
        let mut b = Baresip {
            child,
            dir,
            addr,
            tls_addr,
        };
        let start = Instant::now();
        while !in_use(Transport::Udp, addr) || tls_addr.is_some_and(|a| !in_use(Transport::Tcp, a))
        {
            if let Ok(Some(status)) = b.child.try_wait() {
                panic!("baresip exited at start ({status}):\n{}", b.log());
            }
            assert!(start.elapsed() < BOUND, "baresip did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        b
    }

    /// Its output (with the SIP trace).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WAV (8 kHz mono) of [`KEY_AT_MS`] of silence, a '#' tone of 200 ms and 0.5 s more, in
/// a scratch directory named `name`: what baresip "says" when it answers.
pub fn pound_wav(name: &str) -> PathBuf {
    let wav = scratch(name).join("pound.wav");
    let pcm = testaudio::Signal::new()
        .silence(KEY_AT_MS)
        .digit(dtmf::Digit::Pound, -10.0, 200.0)
        .silence(500.0)
        .pcm();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).expect("create the WAV");
    for s in pcm {
        w.write_sample(s).expect("write a sample");
    }
    w.finalize().expect("finish the WAV");
    wav
}

/// The recorded prompts of `lang` from `prompts/`.
pub fn prompts(lang: media::Language) -> engine::Prompts {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    let lib = media::PromptLibrary::load(&dir, &[lang]).expect("the prompts load");
    engine::Prompts::from_library(&lib, lang).expect("every prompt is there")
}

/// The script with short timeouts for tests: one play of the instructions, no key in 4 s
/// (or 3 s after a key) is no input, 25 s for the whole call.
pub fn script() -> engine::ScriptConfig {
    engine::ScriptConfig {
        repeats: 1,
        first_key_timeout: Duration::from_secs(4),
        digit_timeout: Duration::from_secs(3),
        call_timeout: Duration::from_secs(25),
        ..engine::ScriptConfig::default()
    }
}

/// An even port on `ip` whose pair (port + 1) is free too, for RTP and RTCP.
pub fn free_rtp_pair(ip: IpAddr) -> u16 {
    for _ in 0..200 {
        let a = UdpSocket::bind((ip, 0)).expect("bind a UDP port on loopback");
        let port = a.local_addr().expect("local address").port();
        if port.is_multiple_of(2) && port < u16::MAX && UdpSocket::bind((ip, port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free RTP port pair on {ip}");
}

/// Media on `ip` with RTP on exactly the pair at `port` (so that a test knows where
/// callverify receives).
pub fn media_at(ip: IpAddr, port: u16) -> engine::MediaConfig {
    engine::MediaConfig {
        address: ip,
        ports: port..=port + 1,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        measure_pacing: false,
    }
}

/// Places a verification call through `ep` (bounded by [`BOUND`]) and returns its report.
pub async fn verify_call(
    ep: &SipEndpoint,
    media: &engine::MediaConfig,
    script: engine::ScriptConfig,
    lang: media::Language,
) -> engine::CallReport {
    verify_call_within(ep, media, script, lang, BOUND).await
}

/// As [`verify_call`], bounded by `bound`.
pub async fn verify_call_within(
    ep: &SipEndpoint,
    media: &engine::MediaConfig,
    script: engine::ScriptConfig,
    lang: media::Language,
    bound: Duration,
) -> engine::CallReport {
    let number = store::PhoneNumber::parse("+81901234567").expect("an E.164 number");
    let call = engine::verify(
        ep,
        media,
        script,
        prompts(lang),
        &number,
        None,
        std::future::pending(),
    );
    tokio::time::timeout(bound, call)
        .await
        .expect("the call ends within the bound")
        .expect("the call is placed")
        .report
}

/// A PostgreSQL server of its own, on a free loopback port, for one test: `initdb` into a
/// scratch directory (as the `postgres` user when the tests run as root, since PostgreSQL
/// refuses to run as root), started with `pg_ctl`, stopped on drop.
pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_user: Option<&'static str>,
    /// The URL to connect with (user `callverify`, trust authentication on loopback).
    pub url: String,
}

impl Postgres {
    /// Starts one (bounded by [`BOUND`]).
    pub fn start(name: &str) -> Postgres {
        let bin = postgres_bin_dir();
        let dir = scratch(&format!("postgres-{name}"));
        let data = dir.join("data");
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0\n"))
            .unwrap_or(false);
        let as_user = root.then_some("postgres");
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .expect("chown runs");
            assert!(status.success(), "chown the scratch directory to postgres");
        }
        let port = free_port(V4);
        let pg = Postgres {
            bin,
            data,
            as_user,
            url: format!("postgres://callverify@127.0.0.1:{port}/postgres"),
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-U",
                "callverify",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
            dir.display()
        );
        pg.run(
            "pg_ctl",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-o",
                &opts,
                "-l",
                &dir.join("postgres.log").display().to_string(),
                "-w",
                "-t",
                &BOUND.as_secs().to_string(),
                "start",
            ],
        );
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let exe = self.bin.join(tool);
        let mut cmd = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{} runs (apt-get install postgresql): {e}", exe.display()));
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let exe = self.bin.join("pg_ctl");
        let mut cmd = match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "-t", "10", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Some 40 MB a server: a whole run of the tests would leave a gigabyte behind.
        let _ = fs::remove_dir_all(&self.data);
    }
}

/// Where PostgreSQL's server programs are: on PATH, or Debian's /usr/lib/postgresql/N/bin
/// (the newest).
fn postgres_bin_dir() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty()
            && let Ok(real) = fs::canonicalize(&p)
        {
            return real.parent().expect("a directory").to_path_buf();
        }
    }
    let mut dirs: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// A call runner over `store` whose one trunk is the UDP callee at `callee`, with the test
/// script and the Japanese prompts.
pub async fn runner_through(store: store::Store, callee: SocketAddr) -> engine::Runner {
    let ep = endpoint(V4, BOUND, vec![trunk("sipp", Transport::Udp, callee)]).await;
    engine::Runner::new(
        store,
        std::sync::Arc::new(ep),
        media_at(V4, free_rtp_pair(V4)),
        script(),
        std::collections::HashMap::from([(media::Language::Ja, prompts(media::Language::Ja))]),
    )
}
