//! `callverify serve` and `callverify demo`, run as an operator runs them: the served
//! gateway (API key made with `create-api-key`) calls sipp, which presses '#'; the JSON logs
//! carry one span per call with the number masked; /metrics counts the call; SIGTERM stops
//! it. The demo runs against baresip and must end with every step approved.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use callverify_e2e::{
    BOUND, Served, Sipp, V4, create_api_key, decided, free_port, free_rtp_pair, http,
    metrics_holding, scratch, sigterm, wait_exit,
};

/// Writes the served gateway's configuration into `dir`: sipp at `trunk` the one trunk, the
/// API on `api`, the store a SQLite file beside it. Its path.
fn write_config(dir: &Path, trunk: std::net::SocketAddr, api: &str) -> std::path::PathBuf {
    let rtp = free_rtp_pair(V4);
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"sipp\"\naddress = \"{trunk}\"\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
         [call]\nprompts = \"{prompts}\"\nfirst_key_timeout_s = 5\ncall_timeout_s = 60\n\n\
         [store]\nurl = \"sqlite://{db}\"\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\n",
        sip = free_port(V4),
        rtp1 = rtp + 1,
        db = dir.join("cv.db").display(),
    );
    let path = dir.join("callverify.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `serve` grew its descriptor table at start to what its calls (two sockets each, 500 by
/// default), its HTTP connections (4,096 by default) and 256 more need, or to its open-file
/// limit when that is lower: no call then waits for the table to grow.
fn descriptors_reserved(pid: u32) {
    let field = |file: &str, name: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/{file}:\n{text}"))
    };
    let wanted = 2 * 500 + 4096 + 256;
    let limit = field("limits", "Max open files");
    let table = field("status", "FDSize:");
    assert!(
        table >= wanted.min(limit),
        "FDSize {table}, open-file limit {limit}, wanted {wanted}"
    );
}

#[test]
fn serve_calls_counts_and_stops_on_sigterm() {
    let sipp = Sipp::callee_pressing_pound("cli-serve", V4);
    let dir = scratch("cli-serve");
    let api = format!("127.0.0.1:{}", free_port(V4));
    let path = write_config(&dir, sipp.addr, &api);
    let secret = "0123456789abcdef0123456789abcdef-test";
    let bin = env!("CARGO_BIN_EXE_callverify");

    // Without its secrets it refuses to start, naming the variable.
    let out = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("CALLVERIFY_TOKEN_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CALLVERIFY_TOKEN_SECRET is not set"));

    let key = create_api_key(Path::new(bin), &path, "idp", "service");
    assert!(key.starts_with("cvk_"));
    let operator = create_api_key(Path::new(bin), &path, "ops", "operator");
    let served = Served::start(
        Path::new(bin),
        &path,
        &api,
        secret,
        &["--json-logs"],
        &dir.join("serve.log"),
    );
    descriptors_reserved(served.child.id());
    let started = Instant::now();
    let (status, body) = http(
        &api,
        "POST",
        "/v1/challenges",
        &key,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let token = v["poll_token"].as_str().unwrap().to_string();
    let state = decided(&api, &id, &token, started);
    assert_eq!(state, "approved");
    // The call ends after the closing prompt; the counters follow.
    // The gauge falls after the call log is written, a moment after the counter rises.
    metrics_holding(&api, "callverify_calls_total{outcome=\"approved\"} 1");
    let (_, metrics) = metrics_holding(&api, "callverify_active_calls 0");
    for line in [
        "callverify_calls_total{outcome=\"approved\"} 1",
        "callverify_active_calls 0",
        "callverify_trunk_up{trunk=\"sipp\"} 1",
        "callverify_post_dial_delay_seconds_count 1",
        "callverify_time_to_verdict_seconds_count 1",
        "callverify_challenges_total{purpose=\"sign_in\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    let (status, _) = http(&api, "GET", "/v1/calls", &operator, "");
    assert_eq!(status, 200);
    let exit = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(sipp.finish());
    assert!(exit.passed, "{}", exit.log);

    // SIGTERM: it stops by itself.
    let mut served = served;
    assert!(sigterm(served.child.id()));
    let code = wait_exit(&mut served.child, BOUND, "serve after SIGTERM");
    assert!(code.success(), "{code}");
    let logs = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(
        !logs.contains("+819012345678"),
        "a whole number in the logs"
    );
    let ended = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["fields"]["message"] == "call ended")
        .unwrap_or_else(|| panic!("no 'call ended' line:\n{logs}"));
    assert_eq!(ended["span"]["name"], "call", "{ended}");
    assert_eq!(ended["span"]["challenge"], id.as_str(), "{ended}");
    assert_eq!(ended["span"]["to"], "+81 ** **** **78", "{ended}");
    assert_eq!(ended["fields"]["outcome"], "approved", "{ended}");
}

#[test]
fn under_a_low_open_file_limit_serve_warns_and_still_calls() {
    let sipp = Sipp::callee_pressing_pound("cli-serve-nofile", V4);
    let dir = scratch("cli-serve-nofile");
    let api = format!("127.0.0.1:{}", free_port(V4));
    let path = write_config(&dir, sipp.addr, &api);
    let bin = env!("CARGO_BIN_EXE_callverify");
    let key = create_api_key(Path::new(bin), &path, "idp", "service");
    let secret = "0123456789abcdef0123456789abcdef-test";
    // 1,024 descriptors, soft and hard: below the 5,352 the defaults want.
    let mut cmd = Command::new("prlimit");
    cmd.args(["--nofile=1024:1024", "--"])
        .arg(bin)
        .args(["serve", "--config"])
        .arg(&path);
    let mut served = Served::spawn(cmd, &api, secret, &dir.join("serve.log"));
    let started = Instant::now();
    let (status, body) = http(
        &api,
        "POST",
        "/v1/challenges",
        &key,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let state = decided(
        &api,
        v["id"].as_str().unwrap(),
        v["poll_token"].as_str().unwrap(),
        started,
    );
    assert_eq!(state, "approved");
    assert!(sigterm(served.child.id()));
    let code = wait_exit(&mut served.child, BOUND, "serve after SIGTERM");
    assert!(code.success(), "{code}");
    let logs = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(
        logs.contains(
            "the open-file limit is below what [call] max_calls and [api] max_connections need"
        ),
        "no warning about the limit:\n{logs}"
    );
    assert!(logs.contains("limit=1024"), "{logs}");
}

#[test]
fn the_demo_approves_every_step_against_baresip() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callverify"))
        .args(["demo", "--lang", "ja"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, BOUND * 3, "the demo");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("phone +81 ** **** **78: verified"), "{out}");
    assert!(out.contains("approved (trusted_device)"), "{out}");
    assert!(out.contains("demo: every step approved"), "{out}");
    assert_eq!(out.matches("key '#'").count(), 2, "{out}");
    assert!(
        out.contains("queued → ") && out.contains("answered → ") && out.contains("approved"),
        "{out}"
    );
    assert!(!out.contains("+819012345678"), "{out}");
}
