//! `callverify serve` under systemd's notification protocol, with the test as systemd: a
//! unix datagram socket named by NOTIFY_SOCKET (a path, and an abstract `@` name) and
//! WATCHDOG_USEC set. It sends READY=1 once /readyz answers ready, WATCHDOG=1 pings at half
//! the period, STOPPING=1 after SIGTERM; and when a core task dies (a fault point in the
//! dispatcher) the pings stop, a STATUS= line says why and the process exits with 70.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use callverify_e2e::{
    BOUND, Killed, V4, create_api_key, free_port, http, scratch, sigterm, sqlite_config, wait_exit,
};

const BIN: &str = env!("CARGO_BIN_EXE_callverify");
const SECRET: &str = "0123456789abcdef0123456789abcdef-systemd";
/// The watchdog period given: pings every 200 ms.
const WATCHDOG_USEC: &str = "400000";

/// A gateway started as systemd starts a `Type=notify` service, and the socket it tells.
struct Notified {
    child: Killed,
    rx: UnixDatagram,
    api: String,
    key: String,
}

fn start(name: &str, socket: &str, rx: UnixDatagram, fault: Option<&str>) -> Notified {
    let bin = Path::new(BIN);
    let dir = scratch(name);
    let api = format!("127.0.0.1:{}", free_port(V4));
    // Nothing answers at the trunk: no call is needed here.
    let trunk = format!("127.0.0.1:{}", free_port(V4)).parse().unwrap();
    let path = sqlite_config(&dir, trunk, &api);
    let key = create_api_key(bin, &path, "idp", "service");
    rx.set_read_timeout(Some(BOUND)).unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--config"])
        .arg(&path)
        .env("CALLVERIFY_TOKEN_SECRET", SECRET)
        .env("CALLVERIFY_WEBHOOK_SECRET", SECRET)
        .env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("serve.log")).unwrap());
    if let Some(f) = fault {
        cmd.env("CALLVERIFY_FAULT", f);
    }
    Notified {
        child: Killed(cmd.spawn().unwrap()),
        rx,
        api,
        key,
    }
}

impl Notified {
    /// The next notification (within [`BOUND`]).
    fn next(&self) -> String {
        let mut buf = [0; 4096];
        let n = self.rx.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).to_string()
    }

    /// Notifications until one with the line `line`: all of them, that one last.
    fn until(&self, line: &str) -> Vec<String> {
        let mut got = Vec::new();
        let started = Instant::now();
        while started.elapsed() < BOUND {
            let msg = self.next();
            let done = msg.lines().any(|l| l == line);
            got.push(msg);
            if done {
                return got;
            }
        }
        panic!("no {line} in {got:?}");
    }
}

fn readyz(api: &str) -> u16 {
    http(api, "GET", "/readyz", "", "").0
}

#[test]
fn serve_tells_systemd_ready_pings_the_watchdog_and_says_stopping() {
    let dir = scratch("cli-systemd-sock");
    let sock = dir.join("notify.sock");
    let rx = UnixDatagram::bind(&sock).unwrap();
    let mut gw = start("cli-systemd", sock.to_str().unwrap(), rx, None);

    let first = gw.until("READY=1");
    // Ready means ready: the API answers and /readyz says so at that moment.
    assert_eq!(readyz(&gw.api), 200);
    assert!(
        first[0].starts_with("STATUS=starting"),
        "the first notification: {first:?}"
    );
    let ready = first.last().unwrap();
    assert!(
        ready.contains("STATUS=serving (API on 127.0.0.1:"),
        "{ready}"
    );
    for _ in 0..3 {
        assert_eq!(gw.next(), "WATCHDOG=1");
    }
    assert!(sigterm(gw.child.0.id()));
    let last = gw.until("STOPPING=1");
    assert!(
        last.iter().take(last.len() - 1).all(|m| m == "WATCHDOG=1"),
        "{last:?}"
    );
    assert!(last.last().unwrap().contains("STATUS=stopping"), "{last:?}");
    let code = wait_exit(&mut gw.child.0, BOUND, "serve after SIGTERM");
    assert!(code.success(), "{code}");
}

#[test]
fn a_dead_core_task_stops_the_watchdog_pings_and_serve_exits() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("callverify-systemd-test-{}", std::process::id());
    let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
    let mut gw = start(
        "cli-systemd-fault",
        &format!("@{name}"),
        rx,
        Some("dispatcher"),
    );
    gw.until("READY=1");
    assert_eq!(gw.next(), "WATCHDOG=1");
    // The challenge's change reaches the dispatcher's fault point.
    let (status, body) = http(
        &gw.api,
        "POST",
        "/v1/challenges",
        &gw.key,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let code = wait_exit(&mut gw.child.0, BOUND, "serve after the fault");
    assert_eq!(code.code(), Some(70), "{code}");
    // Everything sent until it exited: the failure, and no ping after it.
    gw.rx.set_nonblocking(true).unwrap();
    let mut after = Vec::new();
    let mut buf = [0; 4096];
    while let Ok(n) = gw.rx.recv(&mut buf) {
        after.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    let failed = after
        .iter()
        .position(|m| m.starts_with("STATUS=a core task stopped: the dispatcher ended"))
        .unwrap_or_else(|| panic!("no failure status in {after:?}"));
    assert!(
        after[failed + 1..].is_empty(),
        "sent after the failure: {after:?}"
    );
}
