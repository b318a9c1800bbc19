//! `callverify serve` as a process, and what a test does with one: API keys made with the
//! binary, plain HTTP requests, the call log read page by page, SIGTERM and a bounded wait.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::BOUND;

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
        Served::start_with_env(bin, config, api, secret, extra, &[], log)
    }

    /// As [`Served::start`], with the variables `env` set too (a trunk's password).
    pub fn start_with_env(
        bin: &Path,
        config: &Path,
        api: &str,
        secret: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Served {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(extra)
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied());
        Served::spawn(cmd, api, secret, log)
    }

    /// Runs `cmd`, a `serve` command line as the test builds it (under another program, such
    /// as `prlimit`), as [`Served::start`] does: both secrets `secret`, stderr into `log`,
    /// returning once its API at `api` listens.
    pub fn spawn(mut cmd: Command, api: &str, secret: &str, log: &Path) -> Served {
        let log = fs::File::create(log).expect("the serve log");
        let mut child = cmd
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
    create_api_key_with_env(bin, config, name, kind, &[])
}

/// As [`create_api_key`], with the variables `env` set (the configuration is checked whole,
/// a trunk's password variable with it).
pub fn create_api_key_with_env(
    bin: &Path,
    config: &Path,
    name: &str,
    kind: &str,
    env: &[(&str, &str)],
) -> String {
    let out = Command::new(bin)
        .args(["create-api-key", name, "--kind", kind, "--config"])
        .arg(config)
        .envs(env.iter().copied())
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
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("transfer-encoding") && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunked(body)
    } else {
        body.to_string()
    };
    (status, body)
}

/// A chunked body's content (RFC 9112 §7.1), its chunks joined.
fn dechunked(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = size.split(';').next().unwrap_or("").trim();
        let n = usize::from_str_radix(size, 16).unwrap_or_else(|_| panic!("chunk size {size}"));
        if n == 0 || after.len() < n {
            break;
        }
        body.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    body
}

/// Polls challenge `id` (long polls of 5 s, until [`BOUND`] after `started`) until it is
/// decided: its state.
pub fn decided(api: &str, id: &str, token: &str, started: Instant) -> String {
    let mut state = String::new();
    while started.elapsed() < BOUND {
        let (_, body) = http(
            api,
            "GET",
            &format!("/v1/challenges/{id}?wait=5"),
            token,
            "",
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        state = v["state"].as_str().unwrap().to_string();
        if !["queued", "calling", "ringing", "answered"].contains(&state.as_str()) {
            break;
        }
    }
    state
}

/// Reads `api`'s /metrics every 100 ms, for up to [`BOUND`], until it holds `line`: whether
/// it did, and the text last read.
pub fn metrics_holding(api: &str, line: &str) -> (bool, String) {
    let started = Instant::now();
    loop {
        let metrics = http(api, "GET", "/metrics", "", "").1;
        if metrics.contains(line) {
            return (true, metrics);
        }
        if started.elapsed() >= BOUND {
            return (false, metrics);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

/// Sends SIGTERM to process `pid` (with kill(1)); whether kill succeeded (it fails when the
/// process is gone).
pub fn sigterm(pid: u32) -> bool {
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Stops `child`'s process group (a child spawned with `process_group(0)`, the group
/// named by its pid): SIGTERM to the group, up to `grace` for `child` to exit, then SIGKILL
/// to the group (what is left of it) and a wait. For a peer whose children outlive it
/// when it alone is killed.
pub fn stop_group(child: &mut Child, grace: Duration) {
    let group = format!("-{}", child.id());
    let kill = |signal: &str| {
        let _ = Command::new("kill")
            .args([signal, "--", &group])
            .stderr(Stdio::null())
            .status();
    };
    kill("-TERM");
    let started = Instant::now();
    while started.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    kill("-KILL");
    let _ = child.wait();
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

/// Writes a configuration for `serve` into `dir` and returns its path: one UDP listener,
/// `trunk` the one trunk, the API on `api`, the store the SQLite file `dir/cv.db`, Japan
/// the one country called.
pub fn sqlite_config(dir: &Path, trunk: std::net::SocketAddr, api: &str) -> std::path::PathBuf {
    use crate::{V4, free_port, free_rtp_pair};
    let rtp = free_rtp_pair(V4);
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"pbx\"\naddress = \"{trunk}\"\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
         [call]\nprompts = \"{prompts}\"\n\n\
         [store]\nurl = \"sqlite://{db}\"\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\n",
        sip = free_port(V4),
        rtp1 = rtp + 1,
        prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../prompts"),
        db = dir.join("cv.db").display(),
    );
    let path = dir.join("callverify.toml");
    fs::write(&path, config).expect("the configuration");
    path
}

/// Runs `bin ARGS --config config`: its exit status, stdout and stderr.
pub fn run_cli(bin: &Path, args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(bin)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("callverify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}
