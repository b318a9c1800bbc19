//! node-bench: the gateway under load as it is deployed: `callverify serve` nodes (one, then
//! two) on one PostgreSQL, with sipp as every phone (it answers at once and presses '#'
//! in-band one second later). Challenges are made through the nodes' APIs at `--rate` a
//! second, spread over the nodes; it prints, per node count, the calls completed a second,
//! the most calls in progress at once (the nodes' `callverify_active_calls`, summed), the
//! time from a challenge to its verdict (p50/p99), the verdicts other than `approved`
//! (every phone presses '#': a `denied` or `approved` without it would be wrong; a
//! `no_input` or `failed` is a call lost under load) and the challenges not called exactly
//! once.
//!
//! Needs the release binary: `cargo build --release -p callverify`, then
//! `cargo run --release -p callverify-bench --bin node-bench -- [--challenges 2000]
//!  [--rate 100] [--nodes 1,2] [--max-calls 500]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callverify_e2e::{
    KEY_AT_MS, Postgres, Served, Sipp, V4, call_log, callee_scenario_playing, create_api_key,
    free_port, http, pound_ulaw, scratch,
};
use serde_json::Value;

const SECRET: &str = "node-bench token secret, 32 bytes or more";

struct Args {
    challenges: usize,
    rate: f64,
    nodes: Vec<usize>,
    max_calls: usize,
}

fn args() -> Args {
    let mut a = Args {
        challenges: 2000,
        rate: 100.0,
        nodes: vec![1, 2],
        max_calls: 500,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let v = pair.get(1).cloned().unwrap_or_default();
        match pair[0].as_str() {
            "--challenges" => a.challenges = v.parse().expect("a count"),
            "--rate" => a.rate = v.parse().expect("per second"),
            "--nodes" => a.nodes = v.split(',').map(|n| n.parse().expect("1 or 2")).collect(),
            "--max-calls" => a.max_calls = v.parse().expect("a count"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn binary() -> PathBuf {
    let here = std::env::current_exe().expect("this program's path");
    let bin = here.with_file_name("callverify");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p callverify",
        bin.display()
    );
    bin
}

fn node(dir: &Path, n: usize, url: &str, trunk: std::net::SocketAddr, max_calls: usize) -> Served {
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let rtp = 20_000 + n * 10_000;
    let api = format!("127.0.0.1:{}", free_port(V4));
    let text = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"sipp\"\naddress = \"{trunk}\"\noptions_interval_s = 0\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp_end}\"\n\n\
         [call]\nprompts = \"{prompts}\"\nrepeats = 1\nfirst_key_timeout_s = 20\ncall_timeout_s = 60\n\
         max_calls = {max_calls}\n\n\
         [store]\nurl = \"{url}\"\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\nmax_concurrent_calls = 100000\n\
         per_api_key = {{ max = 1000000, window_s = 60 }}\n\
         per_country = {{ max = 1000000, window_s = 60 }}\n",
        sip = free_port(V4),
        rtp_end = rtp + 9_999,
    );
    let cfg = dir.join(format!("node{n}.toml"));
    std::fs::write(&cfg, text).unwrap();
    Served::start(
        &binary(),
        &cfg,
        &api,
        SECRET,
        &[],
        &dir.join(format!("node{n}.log")),
    )
}

fn key(dir: &Path, kind: &str) -> String {
    create_api_key(&binary(), &dir.join("node0.toml"), kind, kind)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn active(nodes: &[Served]) -> usize {
    nodes
        .iter()
        .map(|n| {
            let (_, m) = http(&n.api, "GET", "/metrics", "", "");
            m.lines()
                .find_map(|l| l.strip_prefix("callverify_active_calls "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as usize
        })
        .sum()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn run(count: usize, a: &Args) {
    let dir = scratch(&format!("node-bench-{count}"));
    let pg = Postgres::start(&format!("node-bench-{count}"));
    let audio = pound_ulaw(&dir, KEY_AT_MS);
    let play = format!("rtp_stream=\"{},1,0\"", audio.display());
    let scenario = callee_scenario_playing(&dir, &play, Duration::ZERO);
    let n = a.challenges.to_string();
    let _sipp = Sipp::start_file(
        dir.clone(),
        &scenario,
        V4,
        &["-m", &n, "-timeout", "600s", "-max_socket", "4096"],
    );
    let trunk = _sipp.addr;
    let nodes: Vec<Served> = (0..count)
        .map(|i| node(&dir, i, &pg.url, trunk, a.max_calls))
        .collect();
    let service = key(&dir, "service");
    let operator = key(&dir, "operator");

    let start = Instant::now();
    let mut created = Vec::with_capacity(a.challenges);
    let mut peak = 0;
    let mut last_sample = Instant::now();
    for i in 0..a.challenges {
        let due = start + Duration::from_secs_f64(i as f64 / a.rate);
        while Instant::now() < due {
            std::thread::sleep(Duration::from_millis(1));
        }
        let node = &nodes[i % count];
        let body = format!(r#"{{"phone_number":"+8190{:08}"}}"#, 12_000_000 + i);
        let (status, reply) = http(&node.api, "POST", "/v1/challenges", &service, &body);
        assert_eq!(status, 201, "{reply}");
        created.push((
            json(&reply)["id"].as_str().unwrap().to_string(),
            Instant::now(),
        ));
        if last_sample.elapsed() > Duration::from_millis(200) {
            peak = peak.max(active(&nodes));
            last_sample = Instant::now();
        }
    }
    // Until every challenge is decided.
    let mut verdict_s = Vec::with_capacity(a.challenges);
    let mut states = std::collections::HashMap::<String, usize>::new();
    let mut pending: Vec<(String, Instant)> = created;
    let deadline = Instant::now() + Duration::from_secs(600);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} still pending", pending.len());
        peak = peak.max(active(&nodes));
        let mut still = Vec::new();
        for (id, at) in pending {
            let (_, body) = http(
                &nodes[0].api,
                "GET",
                &format!("/v1/challenges/{id}"),
                &service,
                "",
            );
            let c = json(&body);
            let state = c["state"].as_str().unwrap_or("?").to_string();
            if ["queued", "calling", "ringing", "answered"].contains(&state.as_str()) {
                still.push((id, at));
            } else {
                verdict_s.push(at.elapsed().as_secs_f64());
                *states.entry(state).or_default() += 1;
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = start.elapsed();
    // Calls per challenge, once all have ended.
    std::thread::sleep(Duration::from_secs(5));
    let mut per = std::collections::HashMap::<String, usize>::new();
    for c in call_log(&nodes[0].api, &operator) {
        *per.entry(c["challenge_id"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let not_once = a.challenges - per.values().filter(|n| **n == 1).count();
    verdict_s.sort_by(f64::total_cmp);
    let approved = states.get("approved").copied().unwrap_or(0);
    let mut others: Vec<_> = states.iter().filter(|(s, _)| *s != "approved").collect();
    others.sort();
    println!(
        "{count:>5} {:>8} {:>8.1} {:>10.1} {:>8} {:>8.2} {:>8.2} {:>9} {:>6} {:>6} {:>8.1}",
        a.challenges,
        a.rate,
        a.challenges as f64 / wall.as_secs_f64(),
        peak,
        pct(&verdict_s, 0.5),
        pct(&verdict_s, 0.99),
        approved,
        a.challenges - approved,
        not_once,
        wall.as_secs_f64(),
    );
    if !others.is_empty() {
        println!("        not approved: {others:?}");
    }
}

fn main() {
    let a = args();
    println!(
        "node-bench: {} challenges made at {}/s, sipp answers at once and presses '#' {} ms later; {} CPUs",
        a.challenges,
        a.rate,
        KEY_AT_MS,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>5} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>9} {:>6} {:>6} {:>8}",
        "nodes",
        "made",
        "rate/s",
        "calls/s",
        "peak",
        "p50 s",
        "p99 s",
        "approved",
        "other",
        "!once",
        "wall s"
    );
    for &n in &a.nodes {
        run(n, &a);
    }
}
