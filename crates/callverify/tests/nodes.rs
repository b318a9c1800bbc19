//! Several `callverify serve` nodes on one PostgreSQL (started by the test on loopback),
//! with sipp as every phone. Challenges are queued in the database and claimed by the
//! nodes (`FOR UPDATE SKIP LOCKED`); each must be called exactly once, and a node killed with
//! SIGKILL must leave its calls `interrupted` (its claims lapse) and never called again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callverify_e2e::{
    KEY_AT_MS, Postgres, Served, Sipp, V4, call_log, callee_scenario_playing, create_api_key,
    free_port, http, pound_ulaw, scratch, sign_in, sigterm, wait_exit,
};
use serde_json::Value;

const SECRET: &str = "0123456789abcdef0123456789abcdef-nodes";
const BIN: &str = env!("CARGO_BIN_EXE_callverify");
/// Each wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(180);

/// The configuration of node `n` (its own SIP, RTP and API ports) on PostgreSQL `url`,
/// calling through sipp at `trunk`.
fn config(dir: &Path, n: u16, url: &str, trunk: std::net::SocketAddr, max_calls: u32) -> PathBuf {
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let rtp = 36_000 + n * 2_000;
    let text = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"sipp\"\naddress = \"{trunk}\"\noptions_interval_s = 0\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp_end}\"\n\n\
         [call]\nprompts = \"{prompts}\"\nrepeats = 1\nfirst_key_timeout_s = 20\ncall_timeout_s = 60\n\
         max_calls = {max_calls}\nclaim_lease_s = 3\n\n\
         [store]\nurl = \"{url}\"\n\n\
         [api]\nlisten = \"127.0.0.1:{api}\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\nmax_concurrent_calls = 2000\n\
         per_api_key = {{ max = 100000, window_s = 60 }}\n\
         per_country = {{ max = 100000, window_s = 60 }}\n",
        sip = free_port(V4),
        rtp_end = rtp + 1_999,
        api = free_port(V4),
    );
    let path = dir.join(format!("node{n}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Node `name` (its log `<dir>/<name>.log`) with configuration `config`.
fn start(dir: &Path, config: &Path, name: &str) -> Served {
    let text = std::fs::read_to_string(config).unwrap();
    let api = text
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .map(|p| format!("127.0.0.1:{}", p.trim_end_matches('"')))
        .unwrap();
    Served::start(
        Path::new(BIN),
        config,
        &api,
        SECRET,
        &[],
        &dir.join(format!("{name}.log")),
    )
}

fn api_key(config: &Path, kind: &str) -> String {
    create_api_key(Path::new(BIN), config, kind, kind)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn state(api: &str, id: &str, key: &str) -> String {
    let (status, body) = http(api, "GET", &format!("/v1/challenges/{id}"), key, "");
    assert_eq!(status, 200, "{body}");
    json(&body)["state"].as_str().unwrap().to_string()
}

const PENDING: [&str; 4] = ["queued", "calling", "ringing", "answered"];

#[test]
fn two_nodes_call_500_challenges_each_exactly_once() {
    const N: usize = 500;
    let pg = Postgres::start("nodes-500");
    let dir = scratch("nodes-500");
    // sipp answers every call and presses '#' (in-band, sent with rtp_stream: a pool of
    // threads rather than one a call).
    let play = format!(
        "rtp_stream=\"{},1,0\"",
        pound_ulaw(&dir, KEY_AT_MS).display()
    );
    let scenario = callee_scenario_playing(&dir, &play, Duration::ZERO);
    let n = N.to_string();
    let sipp = Sipp::start_file(
        dir.clone(),
        &scenario,
        V4,
        &["-m", &n, "-timeout", "170s", "-max_socket", "2048"],
    );
    let a_cfg = config(&dir, 0, &pg.url, sipp.addr, 100);
    let b_cfg = config(&dir, 1, &pg.url, sipp.addr, 100);
    let a = start(&dir, &a_cfg, "node-a");
    let b = start(&dir, &b_cfg, "node-b");
    let key = api_key(&a_cfg, "service");
    let operator = api_key(&a_cfg, "operator");

    // Half the challenges through each node's API, as a load balancer would spread them.
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        let node = if i % 2 == 0 { &a } else { &b };
        let body = format!(r#"{{"phone_number":"+819012{i:06}"}}"#);
        let (status, reply) = http(&node.api, "POST", "/v1/challenges", &key, &body);
        assert_eq!(status, 201, "{reply}");
        ids.push(json(&reply)["id"].as_str().unwrap().to_string());
    }
    // Every challenge decided.
    let started = Instant::now();
    let mut pending = ids.clone();
    while !pending.is_empty() {
        assert!(
            started.elapsed() < WAIT,
            "{} challenges still pending, e.g. {} ({})",
            pending.len(),
            pending[0],
            state(&a.api, &pending[0], &key)
        );
        pending.retain(|id| PENDING.contains(&state(&a.api, id, &key).as_str()));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Once every call has ended: exactly one call for each challenge.
    let mut calls = call_log(&a.api, &operator);
    while calls.iter().any(|c| c["ended_at"].is_null()) {
        assert!(started.elapsed() < WAIT, "calls still in progress");
        std::thread::sleep(Duration::from_millis(200));
        calls = call_log(&a.api, &operator);
    }
    let mut per_challenge = std::collections::HashMap::<String, usize>::new();
    for c in &calls {
        *per_challenge
            .entry(c["challenge_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let twice: Vec<_> = per_challenge.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "called more than once: {twice:?}");
    for id in &ids {
        assert_eq!(per_challenge.get(id), Some(&1), "{id} was not called");
    }
    assert_eq!(calls.len(), N);
    let approved = calls.iter().filter(|c| c["outcome"] == "approved").count();
    // Both nodes called: each node's log names the calls it ended.
    let ended = |_: &Served, name: &str| {
        std::fs::read_to_string(dir.join(format!("{name}.log")))
            .unwrap()
            .matches("call ended")
            .count()
    };
    let (by_a, by_b) = (ended(&a, "node-a"), ended(&b, "node-b"));
    eprintln!("{N} challenges: {approved} approved; node A ended {by_a} calls, node B {by_b}");
    assert_eq!(by_a + by_b, N, "every call ended on one node");
    assert!(by_a > 0 && by_b > 0, "both nodes called");
    drop((a, b));
    // sipp saw each call once: N calls in all, and it stops by itself after them.
    let exit = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(sipp.finish());
    let invites: Option<usize> = exit
        .log
        .lines()
        .rev()
        .find(|l| l.contains("----------> INVITE"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok());
    assert_eq!(invites, Some(N), "{}", exit.log);
}

#[test]
fn a_node_killed_mid_call_leaves_its_calls_interrupted_and_never_called_again() {
    const N: usize = 5;
    let pg = Postgres::start("nodes-kill");
    let dir = scratch("nodes-kill");
    // sipp answers and stays silent: the calls wait for a key.
    let scenario = callee_scenario_playing(&dir, "", Duration::ZERO);
    let sipp = Sipp::start_file(
        dir.clone(),
        &scenario,
        V4,
        &["-m", &N.to_string(), "-timeout", "60s"],
    );
    let a_cfg = config(&dir, 2, &pg.url, sipp.addr, 100);
    let b_cfg = config(&dir, 3, &pg.url, sipp.addr, 100);
    let mut a = start(&dir, &a_cfg, "node-a");
    let key = api_key(&a_cfg, "service");
    let operator = api_key(&a_cfg, "operator");
    let mut ids = Vec::new();
    for i in 0..N {
        let body = format!(r#"{{"phone_number":"+819012{i:06}"}}"#);
        let (status, reply) = http(&a.api, "POST", "/v1/challenges", &key, &body);
        assert_eq!(status, 201, "{reply}");
        ids.push(json(&reply)["id"].as_str().unwrap().to_string());
    }
    let started = Instant::now();
    while ids.iter().any(|id| state(&a.api, id, &key) != "answered") {
        assert!(started.elapsed() < WAIT, "the calls were not answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // B runs beside A; then A is killed mid-call.
    let b = start(&dir, &b_cfg, "node-b");
    a.child.kill().unwrap(); // SIGKILL
    a.child.wait().unwrap();
    let killed = Instant::now();
    while ids
        .iter()
        .any(|id| state(&b.api, id, &key) != "interrupted")
    {
        assert!(killed.elapsed() < WAIT, "A's calls were not interrupted");
        std::thread::sleep(Duration::from_millis(100));
    }
    let detected = killed.elapsed();
    // Give B time to (wrongly) call them again, then look: one call each, interrupted.
    std::thread::sleep(Duration::from_secs(3));
    let calls = call_log(&b.api, &operator);
    assert_eq!(calls.len(), N, "{calls:?}");
    for c in &calls {
        assert_eq!(c["outcome"], "interrupted", "{c}");
        assert!(ids.contains(&c["challenge_id"].as_str().unwrap().to_string()));
    }
    let (_, body) = http(
        &b.api,
        "GET",
        &format!("/v1/challenges/{}", ids[0]),
        &key,
        "",
    );
    assert!(
        json(&body)["reason"]
            .as_str()
            .unwrap()
            .contains("claim lapsed"),
        "{body}"
    );
    let log = std::fs::read_to_string(dir.join("node-b.log")).unwrap();
    assert!(!log.contains("call ended"), "B placed no call: {log}");
    eprintln!("A's {N} calls marked interrupted {detected:?} after SIGKILL (claims of 3 s)");
    drop(sipp);
}

/// SIGTERM during a call: the node stops taking requests at once, lets the call finish with
/// its verdict, then exits 0.
#[test]
fn sigterm_lets_the_call_in_progress_finish_then_exits() {
    let dir = scratch("nodes-sigterm");
    // The phone presses '#' 2 s into the instructions.
    let audio = pound_ulaw(&dir, KEY_AT_MS + 1500.0);
    let play = format!("rtp_stream=\"{},1,0\"", audio.display());
    let scenario = callee_scenario_playing(&dir, &play, Duration::ZERO);
    let sipp = Sipp::start_file(dir.clone(), &scenario, V4, &[]);
    let url = format!("sqlite://{}", dir.join("cv.db").display());
    let cfg = config(&dir, 4, &url, sipp.addr, 10);
    let key = api_key(&cfg, "service");
    let mut node = start(&dir, &cfg, "node");
    let (status, reply) = http(
        &node.api,
        "POST",
        "/v1/challenges",
        &key,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{reply}");
    let id = json(&reply)["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    while state(&node.api, &id, &key) != "answered" {
        assert!(started.elapsed() < WAIT, "not answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = sigterm(node.child.id());
    // New requests are refused at once (the listener is closed)...
    let refused = Instant::now();
    while std::net::TcpStream::connect(&node.api).is_ok() {
        assert!(
            refused.elapsed() < Duration::from_secs(5),
            "still accepting"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...the call finishes, and only then the node exits, with 0.
    let status = wait_exit(&mut node.child, WAIT, "the node after SIGTERM");
    assert!(status.success(), "{status}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, call) = rt.block_on(async {
        let store = store::Store::open(&url).await.unwrap();
        let id = store::ChallengeId::parse(&id).expect("a challenge id");
        let c = store.challenge(&id).await.unwrap().unwrap();
        let (calls, _) = store
            .calls(&store::CallFilter::default(), 10, None)
            .await
            .unwrap();
        (c, calls.into_iter().next().unwrap())
    });
    assert_eq!(c.state, store::ChallengeState::Approved);
    let end = call.end.expect("the call ended before the exit");
    assert_eq!(end.outcome.as_str(), "approved");
    eprintln!(
        "SIGTERM while answered: the call ended approved, the node exited {:?} after the SIGTERM",
        refused.elapsed()
    );
    drop(sipp);
}

/// Challenges queued in the database by someone else (here written straight into the
/// store) are claimed by a node's dispatcher, never more at once than its `max_calls`, and
/// each is called once.
#[test]
fn a_node_takes_queued_challenges_within_its_capacity() {
    const N: usize = 9;
    const MAX: usize = 3;
    let pg = Postgres::start("nodes-capacity");
    let dir = scratch("nodes-capacity");
    let play = format!(
        "rtp_stream=\"{},1,0\"",
        pound_ulaw(&dir, KEY_AT_MS).display()
    );
    let scenario = callee_scenario_playing(&dir, &play, Duration::ZERO);
    let n = N.to_string();
    let sipp = Sipp::start_file(dir.clone(), &scenario, V4, &["-m", &n, "-timeout", "120s"]);
    let cfg = config(&dir, 5, &pg.url, sipp.addr, MAX as u32);
    let operator = api_key(&cfg, "operator");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ids: Vec<store::ChallengeId> = rt.block_on(async {
        let store = store::Store::open(&pg.url).await.unwrap();
        let now = store::now_ms();
        let mut ids = Vec::new();
        for i in 0..N {
            let (c, _) = store
                .create_challenge(&store::NewChallenge {
                    language: "en".into(),
                    ..sign_in("key_elsewhere", &format!("+819012{i:06}"), now)
                })
                .await
                .unwrap();
            ids.push(c.id);
        }
        ids
    });
    let node = start(&dir, &cfg, "node");
    let started = Instant::now();
    let mut peak = 0usize;
    loop {
        let (_, metrics) = http(&node.api, "GET", "/metrics", "", "");
        let active = metrics
            .lines()
            .find_map(|l| l.strip_prefix("callverify_active_calls "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0) as usize;
        peak = peak.max(active);
        let calls = call_log(&node.api, &operator);
        if calls.len() == N && calls.iter().all(|c| !c["ended_at"].is_null()) {
            let mut per = std::collections::HashMap::<String, usize>::new();
            for c in &calls {
                assert_eq!(c["outcome"], "approved", "{c}");
                *per.entry(c["challenge_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            assert!(
                ids.iter().all(|id| per.get(id.as_str()) == Some(&1)),
                "{per:?}"
            );
            break;
        }
        assert!(started.elapsed() < WAIT, "{} calls so far", calls.len());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(peak <= MAX, "{peak} calls at once, max_calls {MAX}");
    assert!(peak >= 2, "the node called several at once ({peak})");
    eprintln!(
        "{N} queued challenges called once each, at most {peak} at once (max_calls {MAX}), in {:?}",
        started.elapsed()
    );
}

/// A challenge cancelled through another node's API: node A calls (sipp rings and never
/// answers), `DELETE` goes to node B, and A hangs up at once (sipp gets the CANCEL) through
/// the database's change notifications, long before its claims' next renewal (every 10 s
/// with these 30 s claims) or the ring timeout.
#[test]
fn a_cancel_through_another_node_hangs_up_the_call_at_once() {
    let pg = Postgres::start("nodes-cancel");
    let dir = scratch("nodes-cancel");
    let sipp = Sipp::start("ring_no_answer", sip::Transport::Udp, V4);
    let long_claims = |cfg: PathBuf| {
        let text = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            &cfg,
            text.replace("claim_lease_s = 3", "claim_lease_s = 30"),
        )
        .unwrap();
        cfg
    };
    let a_cfg = long_claims(config(&dir, 6, &pg.url, sipp.addr, 10));
    let b_cfg = long_claims(config(&dir, 7, &pg.url, sipp.addr, 10));
    let a = start(&dir, &a_cfg, "node-a");
    let b = start(&dir, &b_cfg, "node-b");
    let key = api_key(&a_cfg, "service");
    let operator = api_key(&a_cfg, "operator");
    let (status, reply) = http(
        &a.api,
        "POST",
        "/v1/challenges",
        &key,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{reply}");
    let id = json(&reply)["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    while state(&b.api, &id, &key) != "ringing" {
        assert!(started.elapsed() < WAIT, "the call did not ring");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, reply) = http(&b.api, "DELETE", &format!("/v1/challenges/{id}"), &key, "");
    assert_eq!(status, 200, "{reply}");
    let cancelled = store::now_ms();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let end = rt.block_on(async {
        let store = store::Store::open(&pg.url).await.unwrap();
        loop {
            let (calls, _) = store
                .calls(&store::CallFilter::default(), 10, None)
                .await
                .unwrap();
            if let Some(end) = calls.first().and_then(|c| c.end.clone()) {
                break end;
            }
            assert!(started.elapsed() < WAIT, "the call did not end: {calls:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let exit = rt.block_on(sipp.finish());
    assert!(exit.passed, "sipp saw the CANCEL: {}", exit.log);
    let after = end.ended_at_ms - cancelled;
    eprintln!(
        "cancelled through node B; node A's call ended {after} ms later ({})",
        end.outcome
    );
    assert_eq!(end.outcome.as_str(), "canceled");
    assert!(
        after < 2_000,
        "ended {after} ms after the cancel: not by the notification"
    );
    assert_eq!(call_log(&b.api, &operator).len(), 1);
    let a_log = std::fs::read_to_string(dir.join("node-a.log")).unwrap();
    assert!(a_log.contains("hanging up"), "{a_log}");
}
