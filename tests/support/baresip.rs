//! baresip, a real softphone, as the far end: it answers every call by itself and plays a
//! WAV into it, over UDP and TCP, or TLS with or without SRTP.

use std::fs;
use std::net::{SocketAddr, TcpListener};
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
            },
        )
    }

    /// As [`Baresip::start_saying`], quitting by itself after `lifetime` instead (for a
    /// test that makes several calls).
    pub fn start_saying_for(name: &str, wav: &Path, lifetime: Duration) -> Baresip {
        Baresip::start_for(name, wav, BaresipSecurity::default(), lifetime)
    }

    /// As [`Baresip::start_saying`], with TLS and SRTP as `sec` says.
    pub fn start_secured(name: &str, wav: &Path, sec: BaresipSecurity) -> Baresip {
        Baresip::start_for(name, wav, sec, BOUND)
    }

    fn start_for(name: &str, wav: &Path, sec: BaresipSecurity, lifetime: Duration) -> Baresip {
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
        fs::write(dir.join("config"), config).expect("write baresip's config");
        let mediaenc = sec
            .mediaenc
            .map(|m| format!(";mediaenc={m}"))
            .unwrap_or_default();
        fs::write(
            dir.join("accounts"),
            // Two users: +81901234567 for the SIP tests, and +819012345678, a number in
            // Japan's plan, for the tests that go through the policy.
            ["+81901234567", "+819012345678"]
                .map(|user| {
                    format!(
                        "<sip:{user}@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU,PCMA{mediaenc}\n"
                    )
                })
                .concat(),
        )
        .expect("write baresip's accounts");
        let out = fs::File::create(dir.join("baresip.log")).expect("create the log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .args(["-s", "-t", &lifetime.as_secs().to_string()])
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

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
