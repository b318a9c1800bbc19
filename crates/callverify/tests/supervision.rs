//! A core task that dies makes the gateway unready and exit, never leaves it answering
//! "ready": `callverify serve` (a debug build) with a fault point that panics in the SIP
//! endpoint, in a call's task, in the dispatcher or in the store's notification follower
//! (on PostgreSQL), as a bug there would. After the challenge that reaches the point,
//! `/readyz` answers 503 naming the task, and the process exits with status 70 within a
//! second, for its supervisor to restart it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callverify_e2e::{
    BOUND, Postgres, Sipp, V4, create_api_key, free_port, free_rtp_pair, http, scratch,
};

const BIN: &str = env!("CARGO_BIN_EXE_callverify");
const SECRET: &str = "0123456789abcdef0123456789abcdef-supervision";

/// What the gateway did after the challenge that reached the fault point.
struct Seen {
    /// `/readyz` answers, in order (0: no connection).
    ready: Vec<u16>,
    /// The body of the first 503.
    unready: Option<String>,
    /// Its exit status and how long after the challenge it came.
    exit: Option<(Option<i32>, Duration)>,
}

fn run(point: &str, store_url: Option<&str>) -> Seen {
    let sipp = Sipp::start("ring_no_answer", sip::Transport::Udp, V4);
    let dir = scratch(&format!("supervision-{point}"));
    let rtp = free_rtp_pair(V4);
    let api = format!("127.0.0.1:{}", free_port(V4));
    let url = store_url.map_or_else(
        || format!("sqlite://{}", dir.join("cv.db").display()),
        str::to_string,
    );
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"sipp\"\naddress = \"{trunk}\"\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
         [call]\nprompts = \"{prompts}\"\n\n\
         [store]\nurl = \"{url}\"\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\n",
        sip = free_port(V4),
        trunk = sipp.addr,
        rtp1 = rtp + 1,
        prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts"),
    );
    let path = dir.join("callverify.toml");
    std::fs::write(&path, config).unwrap();
    let key = create_api_key(Path::new(BIN), &path, "idp", "service");
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("CALLVERIFY_TOKEN_SECRET", SECRET)
        .env("CALLVERIFY_WEBHOOK_SECRET", SECRET)
        .env("CALLVERIFY_FAULT", point)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(&api).is_err() {
        assert!(started.elapsed() < BOUND, "serve did not listen");
        assert!(child.try_wait().unwrap().is_none(), "serve exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready = |api: &str| readyz(api).unwrap_or((0, String::new()));
    let mut seen = Seen {
        ready: vec![ready(&api).0],
        unready: None,
        exit: None,
    };
    let (status, body) = http(
        &api,
        "POST",
        "/v1/challenges",
        &key,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(10) {
        if let Some(status) = child.try_wait().unwrap() {
            seen.exit = Some((status.code(), asked.elapsed()));
            break;
        }
        let (status, body) = ready(&api);
        if status == 503 && seen.unready.is_none() {
            seen.unready = Some(body);
        }
        if seen.ready.last() != Some(&status) {
            seen.ready.push(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    seen
}

/// `GET /readyz`: its status and body, `None` when the process is gone.
fn readyz(api: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).ok()?;
    s.set_read_timeout(Some(BOUND)).ok()?;
    write!(
        s,
        "GET /readyz HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    Some((status, raw.split_once("\r\n\r\n")?.1.to_string()))
}

fn check(point: &str, task: &str, seen: &Seen) {
    eprintln!(
        "fault at {point}: /readyz {:?}, {:?}; exit {:?}",
        seen.ready, seen.unready, seen.exit
    );
    assert_eq!(seen.ready[0], 200, "ready before the fault");
    let body = seen.unready.as_deref().unwrap_or_else(|| {
        panic!(
            "/readyz never answered 503 after the fault at {point}: {:?}",
            seen.ready
        )
    });
    assert!(body.contains(task), "{body}");
    let (code, after) = seen.exit.expect("serve exited");
    assert_eq!(code, Some(70), "exit status");
    assert!(
        after < Duration::from_secs(5),
        "exited {after:?} after the fault"
    );
}

#[test]
fn a_panic_in_the_sip_endpoint_makes_serve_unready_and_exit() {
    check("sip", "the SIP endpoint stopped", &run("sip", None));
}

#[test]
fn a_panic_in_a_calls_task_makes_serve_unready_and_exit() {
    check("call", "a call's task panicked", &run("call", None));
}

#[test]
fn a_panic_in_the_dispatcher_makes_serve_unready_and_exit() {
    check(
        "dispatcher",
        "the dispatcher ended",
        &run("dispatcher", None),
    );
}

#[test]
fn a_panic_in_the_stores_notifications_makes_serve_unready_and_exit() {
    let pg = Postgres::start("supervision-store");
    check(
        "store",
        "the store's change notification task ended",
        &run("store", Some(&pg.url)),
    );
}
