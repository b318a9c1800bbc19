//! RADIUS peers the project did not write: FreeRADIUS (Debian `freeradius`) started on a
//! free loopback port with a users file, as the upstream server that checks passwords; and
//! `radclient` (Debian `freeradius-utils`) as the NAS, one request per run, bounded.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{BOUND, V4, free_port, scratch, wait_exit};

/// FreeRADIUS serving `auth` on 127.0.0.1 (stopped on drop; it quits by itself after
/// [`BOUND`] times four).
pub struct FreeRadius {
    child: Child,
    dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl FreeRadius {
    /// Starts it in a scratch directory named `name`: one client (127.0.0.1, `secret`, a
    /// Message-Authenticator required of it), the `users` file given (FreeRADIUS's syntax),
    /// PAP. Returns once it says it is ready (bounded by [`BOUND`]).
    pub fn start(name: &str, secret: &str, users: &str) -> FreeRadius {
        let dir = scratch(name);
        let port = free_port(V4);
        let d = dir.display();
        // The least a FreeRADIUS 3 needs: its dictionaries, a client, one virtual server
        // with `files` and `pap`; and a Message-Authenticator in every answer, as the
        // BlastRADIUS advisory tells servers older than 3.2.5 (Debian 12 has 3.2.1) to add.
        let conf = format!(
            "prefix = /usr\nexec_prefix = /usr\nsbindir = /usr/sbin\n\
             libdir = /usr/lib/freeradius\n\
             sysconfdir = {d}\nlocalstatedir = {d}\nlogdir = {d}\nraddbdir = {d}\n\
             radacctdir = {d}\nconfdir = {d}\nmodconfdir = {d}\ncertdir = {d}\ncadir = {d}\n\
             run_dir = {d}\ndb_dir = {d}\npidfile = {d}/radiusd.pid\nname = freeradius\n\
             max_request_time = 30\ncleanup_delay = 5\nmax_requests = 1024\n\
             hostname_lookups = no\n\
             log {{\n  destination = files\n  file = {d}/radius.log\n  auth = yes\n}}\n\
             security {{\n  allow_core_dumps = no\n  max_attributes = 200\n  \
             reject_delay = 0\n  status_server = no\n}}\n\
             client nas {{\n  ipaddr = 127.0.0.1\n  secret = {secret}\n  \
             require_message_authenticator = yes\n}}\n\
             modules {{\n  files {{\n    filename = {d}/users\n  }}\n  pap {{\n  }}\n}}\n\
             server default {{\n  listen {{\n    type = auth\n    ipaddr = 127.0.0.1\n    \
             port = {port}\n  }}\n  authorize {{\n    files\n    pap\n  }}\n  \
             authenticate {{\n    Auth-Type PAP {{\n      pap\n    }}\n  }}\n  \
             post-auth {{\n    update reply {{\n      Message-Authenticator := 0x00\n    }}\n    \
             Post-Auth-Type REJECT {{\n      update reply {{\n        \
             Message-Authenticator := 0x00\n      }}\n    }}\n  }}\n}}\n"
        );
        fs::write(dir.join("radiusd.conf"), conf).expect("radiusd.conf");
        fs::write(
            dir.join("dictionary"),
            "$INCLUDE /usr/share/freeradius/dictionary\n",
        )
        .expect("the dictionary");
        fs::write(dir.join("users"), users).expect("the users file");
        let out = fs::File::create(dir.join("freeradius.out")).expect("its output");
        let child = Command::new("timeout")
            .process_group(0)
            .args(["-k", "5"])
            .arg(format!("{}", BOUND.as_secs() * 4))
            .args(["freeradius", "-f", "-l", "stdout", "-x", "-d"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("its output"))
            .stderr(out)
            .spawn()
            .expect("freeradius (Debian package freeradius)");
        let server = FreeRadius {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let started = Instant::now();
        while !server.log().contains("Ready to process requests") {
            assert!(
                started.elapsed() < BOUND,
                "FreeRADIUS did not start: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// What it wrote (its `-x` output and its log).
    pub fn log(&self) -> String {
        let out = fs::read_to_string(self.dir.join("freeradius.out")).unwrap_or_default();
        let log = fs::read_to_string(self.dir.join("radius.log")).unwrap_or_default();
        out + &log
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        // `timeout` and FreeRADIUS are one process group (a SIGKILL to `timeout` alone
        // would leave FreeRADIUS running).
        crate::stop_group(&mut self.child, Duration::from_secs(10));
    }
}

/// What `radclient` received for one request.
#[derive(Debug)]
pub struct RadReply {
    /// `Access-Accept`, `Access-Reject` or `Access-Challenge`; `None`: no reply.
    pub code: Option<String>,
    /// The reply's attributes as radclient prints them (`Name = value`), in order.
    pub attributes: Vec<String>,
    /// How many times it sent the request (the first time and its retransmissions).
    pub sent: usize,
    /// Its whole output.
    pub output: String,
}

impl RadReply {
    /// The value of the first attribute named `name`, as radclient prints it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find_map(|a| {
            a.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(" = "))
        })
    }
}

/// Runs `radclient -x -t timeout_s -r tries server auth` with the request `attributes`
/// (radclient's syntax, one `Name = value` per line) and the shared secret `secret` (in a
/// file, as an operator keeps it off the command line); returns what it received. It sends
/// the request `tries` times at most (1 at least: radclient's `-r` counts the first),
/// `timeout_s` apart. Bounded by its own timeouts and by [`BOUND`] more.
pub fn radclient(
    server: SocketAddr,
    secret: &str,
    attributes: &[&str],
    timeout_s: u32,
    tries: u32,
    dir: &Path,
) -> RadReply {
    let secret_file = dir.join("radclient.secret");
    fs::write(&secret_file, secret).expect("the secret file");
    let out_path = dir.join(format!(
        "radclient-{}.out",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let out = fs::File::create(&out_path).expect("its output");
    let mut child = Command::new("radclient")
        .args(["-x", "-P", "udp", "-t"])
        .arg(timeout_s.to_string())
        .arg("-r")
        .arg(tries.max(1).to_string())
        .arg("-S")
        .arg(&secret_file)
        .arg(server.to_string())
        .arg("auth")
        .stdin(Stdio::piped())
        .stdout(out.try_clone().expect("its output"))
        .stderr(out)
        .spawn()
        .expect("radclient (Debian package freeradius-utils)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("its stdin");
        stdin
            .write_all(attributes.join("\n").as_bytes())
            .expect("the request");
        stdin.write_all(b"\n").expect("the request");
    }
    let bound = Duration::from_secs(u64::from(timeout_s) * u64::from(tries.max(1))) + BOUND;
    wait_exit(&mut child, bound, "radclient");
    let output = fs::read_to_string(&out_path).unwrap_or_default();
    parse(output)
}

fn parse(output: String) -> RadReply {
    let mut code = None;
    let mut attributes = Vec::new();
    let mut sent = 0;
    let mut in_reply = false;
    for line in output.lines() {
        if line.starts_with("Sent Access-Request") {
            sent += 1;
            in_reply = false;
        } else if let Some(rest) = line.strip_prefix("Received ") {
            code = rest.split_whitespace().next().map(str::to_string);
            in_reply = true;
        } else if in_reply && line.starts_with('\t') {
            // radclient ends its last attribute's line with its verdict, when unexpected.
            let a = line.trim().split("(0) ").next().unwrap_or("").trim();
            attributes.push(a.to_string());
        } else {
            in_reply = false;
        }
    }
    RadReply {
        code,
        attributes,
        sent,
        output,
    }
}
