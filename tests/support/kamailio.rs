//! Kamailio, a real SIP proxy and registrar, as the trunk: started on loopback (UDP and TCP
//! on one free port) with the configuration in `tests/kamailio/`, digest users given by the
//! test, in the foreground, and stopped with its whole process group when the test ends.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sip::Transport;

use crate::net::{free_port, in_use};
use crate::{BOUND, V4, scratch};

/// The digest realm Kamailio challenges with.
pub const KAMAILIO_REALM: &str = "kamailio.test";

/// Kamailio listening on loopback UDP and TCP at `addr` (killed with its children on drop).
pub struct Kamailio {
    child: Child,
    dir: PathBuf,
    /// Where it listens, for UDP and TCP alike.
    pub addr: SocketAddr,
}

/// A username and its password.
#[derive(Clone, Copy)]
pub struct User<'a> {
    /// The username (and the user part it registers or calls as).
    pub name: &'a str,
    /// Its password.
    pub password: &'a str,
}

impl Kamailio {
    /// Starts it with `trunk` (the gateway's user) and `phone` (the phone's, its number) as
    /// its only users; returns once it listens on both transports (bounded by [`BOUND`]).
    pub fn start(name: &str, trunk: User<'_>, phone: User<'_>) -> Kamailio {
        let dir = scratch(&format!("kamailio-{name}"));
        let addr = SocketAddr::new(V4, free_port(V4));
        let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("kamailio/kamailio.cfg");
        let log = fs::File::create(dir.join("kamailio.log")).expect("create its log");
        let define = |name: &str, value: &str| format!("{name}={}", quoted(value));
        let child = Command::new("kamailio")
            // -DD: the process started stays in the foreground (its children beside it);
            // -E: the log on stderr.
            .args(["-DD", "-E", "-S", "-m", "32", "-M", "4", "-f"])
            .arg(&cfg)
            .arg("-A")
            .arg(define("REALM", KAMAILIO_REALM))
            .arg("-A")
            .arg(define("TRUNK_USER", trunk.name))
            .arg("-A")
            .arg(define("TRUNK_PASS", trunk.password))
            .arg("-A")
            .arg(define("PHONE_USER", phone.name))
            .arg("-A")
            .arg(define("PHONE_PASS", phone.password))
            .arg("-l")
            .arg(format!("udp:{addr}"))
            .arg("-l")
            .arg(format!("tcp:{addr}"))
            .arg("-Y")
            .arg(&dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .arg("-w")
            .arg(&dir)
            // Its own process group, so that its children go with it.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .expect("kamailio runs (apt-get install kamailio)");
        let mut k = Kamailio { child, dir, addr };
        let started = Instant::now();
        while !in_use(Transport::Udp, addr) || !in_use(Transport::Tcp, addr) {
            if let Ok(Some(status)) = k.child.try_wait() {
                panic!("kamailio exited at start ({status}):\n{}", k.log());
            }
            assert!(
                started.elapsed() < BOUND,
                "kamailio did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        k
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// The `cv:` lines its configuration writes, one per request it handled, without the
    /// log's prefix (`INVITE ruri=...`, `challenge 407 INVITE user=...`, `in-dialog BYE
    /// ruri=... via=loose_route ...`).
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| l.split_once(" cv: ").map(|(_, r)| r.to_string()))
            .collect()
    }

    /// Waits (up to [`BOUND`]) for a request line that starts with `prefix`, and returns it.
    pub fn wait_for(&self, prefix: &str) -> String {
        let started = Instant::now();
        loop {
            if let Some(line) = self.requests().into_iter().find(|l| l.starts_with(prefix)) {
                return line;
            }
            assert!(
                started.elapsed() < BOUND,
                "kamailio logged no {prefix:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `value` as a quoted string of Kamailio's configuration language.
fn quoted(value: &str) -> String {
    assert!(
        !value.contains(['"', '\\', '\n']),
        "a test user or password with a quote: {value:?}"
    );
    format!("\"{value}\"")
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM to the group: the main process stops its children; SIGKILL after 5 s.
        crate::stop_group(&mut self.child, Duration::from_secs(5));
    }
}
