//! baresip, a real softphone, as the far end: it answers every call by itself and plays a
//! WAV into it, over UDP and TCP, or TLS with or without SRTP.

use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sip::Transport;

use crate::audio::pound_wav;
use crate::net::{free_port, in_use};
use crate::tls::TestCa;
use crate::{BOUND, V4, scratch};

/// baresip (a real softphone) listening on a free loopback port and answering every call
/// automatically, playing an 8 kHz WAV as its microphone (aufile; ausine only does 48 kHz).
pub struct Baresip {
    child: Child,
    dir: PathBuf,
    /// Its `ctrl_tcp` command port, when it answers on command.
    control: Option<SocketAddr>,
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
    /// It lets calls ring until [`Baresip::answer`] (its `ctrl_tcp` command port) instead
    /// of answering at once: a test can then write the WAV it plays (aufile opens it at the
    /// answer) once it knows what to say, such as the number shown on a sign-in page.
    pub answer_on_command: bool,
}

/// A registrar baresip registers its one account to (instead of its two numbers taking
/// calls at its own address).
#[derive(Clone, Copy)]
pub struct BaresipRegistrar<'a> {
    /// The registrar (and the proxy its calls come through).
    pub addr: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// The account's user (a number) and digest username.
    pub user: &'a str,
    /// Its password.
    pub password: &'a str,
}

impl Baresip {
    /// Starts it as the phone of +81901234567 and +819012345678; returns once it listens. It quits by itself
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
                ..BaresipSecurity::default()
            },
        )
    }

    /// As [`Baresip::start_saying`], quitting by itself after `lifetime` instead (for a
    /// test that makes several calls).
    pub fn start_saying_for(name: &str, wav: &Path, lifetime: Duration) -> Baresip {
        Baresip::start_for(name, wav, BaresipSecurity::default(), lifetime)
    }

    /// As [`Baresip::start_saying_for`], letting calls ring until [`Baresip::answer`]; `wav`
    /// is opened when it answers, so it may be written after the call came in.
    pub fn start_answering_on_command(name: &str, wav: &Path, lifetime: Duration) -> Baresip {
        let sec = BaresipSecurity {
            answer_on_command: true,
            ..BaresipSecurity::default()
        };
        Baresip::start_for(name, wav, sec, lifetime)
    }

    /// As [`Baresip::start_saying`], with TLS and SRTP as `sec` says.
    pub fn start_secured(name: &str, wav: &Path, sec: BaresipSecurity) -> Baresip {
        Baresip::start_for(name, wav, sec, BOUND)
    }

    /// As [`Baresip::start_secured`] (living for `lifetime`), registered (every 10 minutes) to
    /// `registrar` as its one account: its calls come through the registrar. Returns once
    /// it listens; the test waits for the registration where the registrar shows it.
    pub fn start_registered(
        name: &str,
        wav: &Path,
        registrar: &BaresipRegistrar<'_>,
        sec: BaresipSecurity,
        lifetime: Duration,
    ) -> Baresip {
        Baresip::launch(name, wav, sec, Some(registrar), lifetime, None)
    }

    /// As [`Baresip::start_saying_for`], inside the network namespace `netns` (see
    /// [`crate::NatNet`]) where it listens on `ip`, port 5060, with RTP on 40000-40010.
    pub fn start_in(
        netns: &str,
        ip: IpAddr,
        name: &str,
        wav: &Path,
        lifetime: Duration,
    ) -> Baresip {
        Baresip::launch(
            name,
            wav,
            BaresipSecurity::default(),
            None,
            lifetime,
            Some((netns, SocketAddr::new(ip, 5060), 40000)),
        )
    }

    fn start_for(name: &str, wav: &Path, sec: BaresipSecurity, lifetime: Duration) -> Baresip {
        Baresip::launch(name, wav, sec, None, lifetime, None)
    }

    /// Starts it on loopback with free ports, or (`netns`) in that namespace at that SIP
    /// address and RTP port; with one account registered to `registrar`, or the tests' two.
    fn launch(
        name: &str,
        wav: &Path,
        sec: BaresipSecurity,
        registrar: Option<&BaresipRegistrar<'_>>,
        lifetime: Duration,
        netns: Option<(&str, SocketAddr, u16)>,
    ) -> Baresip {
        let dir = scratch(&format!("baresip-{name}"));
        let (addr, rtp) = match netns {
            Some((_, addr, rtp)) => (addr, rtp),
            None => {
                // Its TLS listener takes the port after the SIP port.
                let port = loop {
                    let p = free_port(V4);
                    if p < u16::MAX && TcpListener::bind((V4, p + 1)).is_ok() {
                        break p;
                    }
                };
                (SocketAddr::new(V4, port), free_port(V4))
            }
        };
        let (host, port) = (addr.ip(), addr.port());
        // baresip 1.0 binds only where net_interface says.
        let mut config = format!(
            "poll_method\tepoll\n\
             sip_listen\t{addr}\n\
             net_interface\t{host}\n\
             audio_player\taufile,{heard}\n\
             audio_source\taufile,{said}\n\
             audio_alert\taufile,/dev/null\n\
             module_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module\tsndfile.so\n\
             snd_path\t{dir}\n\
             module_app\taccount.so\n\
             module_app\tmenu.so\n\
             rtp_ports\t{rtp}-{}\n",
            rtp + 10,
            heard = dir.join("heard.wav").display(),
            dir = dir.display(),
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
        let control = sec.answer_on_command.then(|| {
            let port = TcpListener::bind((V4, 0))
                .and_then(|l| l.local_addr())
                .expect("a free TCP port on loopback")
                .port();
            config += &format!("module_app\tctrl_tcp.so\nctrl_tcp_listen\t127.0.0.1:{port}\n");
            SocketAddr::new(V4, port)
        });
        let answermode = if control.is_some() { "manual" } else { "auto" };
        fs::write(dir.join("config"), config).expect("write baresip's config");
        let mediaenc = sec
            .mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        let accounts = match registrar {
            Some(r) => format!(
                "<sip:{user}@{addr};transport={transport}>;auth_pass={password};regint=600;answermode={answermode};audio_codecs=PCMU,PCMA{mediaenc}\n",
                user = r.user,
                addr = r.addr,
                transport = r.transport,
                password = r.password,
            ),
            // Two users: +81901234567 for the SIP tests, and +819012345678, a number in
            // Japan's plan, for the tests that go through the policy.
            None => ["+81901234567", "+819012345678"]
                .map(|user| {
                    format!(
                        "<sip:{user}@{host}>;regint=0;answermode={answermode};audio_codecs=PCMU,PCMA{mediaenc}\n"
                    )
                })
                .concat(),
        };
        fs::write(dir.join("accounts"), accounts).expect("write baresip's accounts");
        let out = fs::File::create(dir.join("baresip.log")).expect("create the log");
        let mut cmd = match netns {
            Some((ns, ..)) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "baresip"]);
                c
            }
            None => Command::new("baresip"),
        };
        let child = cmd
            .arg("-f")
            .arg(&dir)
            .args(["-s", "-t", &lifetime.as_secs().to_string()])
            // A pipe kept open: at the end of a null stdin its console would take the
            // end of file for a key and answer a ringing call.
            .stdin(Stdio::piped())
            .stdout(out.try_clone().expect("clone a file handle"))
            .stderr(out)
            .spawn()
            .expect("baresip runs (apt-get install baresip-core)");
        let tls_addr = sec.certificate.map(|_| SocketAddr::new(host, port + 1));
        let mut b = Baresip {
            child,
            dir,
            control,
            addr,
            tls_addr,
        };
        let start = Instant::now();
        // In a namespace of its own its sockets cannot be seen from here: its word is taken.
        let listening = |b: &Baresip| match netns {
            Some(_) => b.log().contains("baresip is ready."),
            None => in_use(Transport::Udp, addr),
        };
        while !listening(&b)
            || tls_addr.is_some_and(|a| !in_use(Transport::Tcp, a))
            || control.is_some_and(|a| !in_use(Transport::Tcp, a))
        {
            if let Ok(Some(status)) = b.child.try_wait() {
                panic!("baresip exited at start ({status}):\n{}", b.log());
            }
            assert!(start.elapsed() < BOUND, "baresip did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        b
    }

    /// Answers the call that rings (started with `answer_on_command`): sends `accept` to
    /// its command port until a call is there to take, for up to [`BOUND`].
    pub fn answer(&self) {
        let control = self.control.expect("started with answer_on_command");
        let start = Instant::now();
        loop {
            if accept(control).unwrap_or(false) {
                return;
            }
            assert!(
                start.elapsed() < BOUND,
                "no call to answer at baresip:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What it heard in its last call: the audio it decoded (its `sndfile` dump, written
    /// out when the call ends), 8 kHz. Waits up to 3 s for it; empty when it heard nothing.
    pub fn heard(&self) -> Vec<i16> {
        let start = Instant::now();
        loop {
            let pcm = self.last_dump();
            if !pcm.is_empty() || start.elapsed() > Duration::from_secs(3) {
                return pcm;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn last_dump(&self) -> Vec<i16> {
        let mut dumps: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
                    .collect()
            })
            .unwrap_or_default();
        dumps.sort();
        let Some(last) = dumps.last() else {
            return Vec::new();
        };
        hound::WavReader::open(last)
            .map(|r| r.into_samples::<i16>().map_while(Result::ok).collect())
            .unwrap_or_default()
    }

    /// Its output (with the SIP trace).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("baresip.log")).unwrap_or_default()
    }
}

/// One `accept` over baresip's `ctrl_tcp` (netstring-framed JSON): whether it took a call.
fn accept(control: SocketAddr) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&control, Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    let cmd = r#"{"command":"accept","params":"","token":"t"}"#;
    conn.write_all(format!("{}:{cmd},", cmd.len()).as_bytes())?;
    // Read netstrings until the response to our command (events may come first).
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        for message in netstrings(&text) {
            if message.contains("\"response\":true") {
                return Ok(message.contains("\"ok\":true"));
            }
        }
    }
    Ok(false)
}

/// The whole netstrings (`len:payload,`) at the start of `text`.
fn netstrings(mut text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    while let Some((len, rest)) = text.split_once(':') {
        let Ok(len) = len.trim().parse::<usize>() else {
            break;
        };
        let (Some(payload), Some(after)) = (rest.get(..len), rest.get(len + 1..)) else {
            break;
        };
        out.push(payload);
        text = after;
    }
    out
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
