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
//!  [--rate 100] [--nodes 1,2] [--max-calls 500]` (`--help` lists the options)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use callverify_e2e::{
    KEY_AT_MS, Postgres, Served, Sipp, V4, call_log, callee_scenario_playing, create_api_key,
    free_port, http, pound_ulaw, scratch,
};
use clap::Parser;
use clap::builder::RangedU64ValueParser;
use serde_json::Value;

#[cfg(test)]
mod cli_check;

const SECRET: &str = "node-bench token secret, 32 bytes or more";

/// The command line.
#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "node-bench",
    about = "The gateway under load as deployed: `callverify serve` nodes on one PostgreSQL with\n\
             sipp as every phone; per node count, the calls completed a second, the most calls in\n\
             progress at once, challenge to verdict (p50/p99), the verdicts other than approved\n\
             and the challenges not called exactly once",
    long_about = None,
    after_help = "Needs the release binary (cargo build --release -p callverify), sipp and\n\
                  PostgreSQL's server."
)]
struct Args {
    /// Challenges made a node count
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = at_least_one())]
    challenges: usize,
    /// Challenges made a second, spread over the nodes
    #[arg(long, value_name = "PER_S", default_value_t = 100.0, value_parser = per_second)]
    rate: f64,
    /// Node counts to run one after another, comma-separated (each 1 to 4)
    #[arg(long, value_name = "N,...", value_delimiter = ',', default_value = "1,2",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=4))]
    nodes: Vec<usize>,
    /// Each node's [call] max_calls: the most calls it places at once
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = at_least_one())]
    max_calls: usize,
}

/// A count of 1 or more.
fn at_least_one() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

/// A rate: a finite number above 0.
fn per_second(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(_) => Err("a rate above 0 is needed".into()),
        Err(e) => Err(e.to_string()),
    }
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

/// One run's peers: the nodes, sipp as every phone and the store (dropped in that order).
struct Cluster {
    nodes: Vec<Served>,
    _sipp: Sipp,
    _pg: Postgres,
    service: String,
    operator: String,
}

fn start(count: usize, a: &Args) -> Cluster {
    let dir = scratch(&format!("node-bench-{count}"));
    let pg = Postgres::start(&format!("node-bench-{count}"));
    let audio = pound_ulaw(&dir, KEY_AT_MS);
    let play = format!("rtp_stream=\"{},1,0\"", audio.display());
    let scenario = callee_scenario_playing(&dir, &play, Duration::ZERO);
    let n = a.challenges.to_string();
    let sipp = Sipp::start_file(
        dir.clone(),
        &scenario,
        V4,
        &["-m", &n, "-timeout", "600s", "-max_socket", "4096"],
    );
    let trunk = sipp.addr;
    let nodes: Vec<Served> = (0..count)
        .map(|i| node(&dir, i, &pg.url, trunk, a.max_calls))
        .collect();
    Cluster {
        service: key(&dir, "service"),
        operator: key(&dir, "operator"),
        nodes,
        _sipp: sipp,
        _pg: pg,
    }
}

/// Makes the challenges at `a.rate` a second, spread over the nodes: their ids and when
/// each was made, and the most calls seen in progress at once.
fn make_challenges(c: &Cluster, a: &Args, start: Instant) -> (Vec<(String, Instant)>, usize) {
    let mut created = Vec::with_capacity(a.challenges);
    let mut peak = 0;
    let mut last_sample = Instant::now();
    for i in 0..a.challenges {
        let due = start + Duration::from_secs_f64(i as f64 / a.rate);
        while Instant::now() < due {
            std::thread::sleep(Duration::from_millis(1));
        }
        let node = &c.nodes[i % c.nodes.len()];
        let body = format!(r#"{{"phone_number":"+8190{:08}"}}"#, 12_000_000 + i);
        let (status, reply) = http(&node.api, "POST", "/v1/challenges", &c.service, &body);
        assert_eq!(status, 201, "{reply}");
        created.push((
            json(&reply)["id"].as_str().unwrap().to_string(),
            Instant::now(),
        ));
        if last_sample.elapsed() > Duration::from_millis(200) {
            peak = peak.max(active(&c.nodes));
            last_sample = Instant::now();
        }
    }
    (created, peak)
}

/// What the challenges ended with.
struct Verdicts {
    /// Seconds from each challenge to its verdict, sorted.
    seconds: Vec<f64>,
    /// How many ended in each state.
    states: HashMap<String, usize>,
}

/// Waits until every challenge is decided (raising `peak` as calls are seen in progress).
fn await_verdicts(c: &Cluster, mut pending: Vec<(String, Instant)>, peak: &mut usize) -> Verdicts {
    let mut seconds = Vec::with_capacity(pending.len());
    let mut states = HashMap::<String, usize>::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} still pending", pending.len());
        *peak = (*peak).max(active(&c.nodes));
        let mut still = Vec::new();
        for (id, at) in pending {
            let path = format!("/v1/challenges/{id}");
            let (_, body) = http(&c.nodes[0].api, "GET", &path, &c.service, "");
            let state = json(&body)["state"].as_str().unwrap_or("?").to_string();
            if ["queued", "calling", "ringing", "answered"].contains(&state.as_str()) {
                still.push((id, at));
            } else {
                seconds.push(at.elapsed().as_secs_f64());
                *states.entry(state).or_default() += 1;
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(200));
    }
    seconds.sort_by(f64::total_cmp);
    Verdicts { seconds, states }
}

/// The challenges not called exactly once, from the call log once all calls have ended.
fn not_called_once(c: &Cluster, challenges: usize) -> usize {
    std::thread::sleep(Duration::from_secs(5));
    let mut per = HashMap::<String, usize>::new();
    for call in call_log(&c.nodes[0].api, &c.operator) {
        *per.entry(call["challenge_id"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    challenges - per.values().filter(|n| **n == 1).count()
}

fn run(count: usize, a: &Args) {
    let cluster = start(count, a);
    let start = Instant::now();
    let (created, mut peak) = make_challenges(&cluster, a, start);
    let v = await_verdicts(&cluster, created, &mut peak);
    let wall = start.elapsed();
    let not_once = not_called_once(&cluster, a.challenges);
    let approved = v.states.get("approved").copied().unwrap_or(0);
    let mut others: Vec<_> = v.states.iter().filter(|(s, _)| *s != "approved").collect();
    others.sort();
    println!(
        "{count:>5} {:>8} {:>8.1} {:>10.1} {:>8} {:>8.2} {:>8.2} {:>9} {:>6} {:>6} {:>8.1}",
        a.challenges,
        a.rate,
        a.challenges as f64 / wall.as_secs_f64(),
        peak,
        pct(&v.seconds, 0.5),
        pct(&v.seconds, 0.99),
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
    let a = Args::parse();
    println!(
        "node-bench: {} challenges made at {}/s, sipp answers at once and presses '#' {} ms later; {} CPUs",
        a.challenges,
        a.rate,
        KEY_AT_MS,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    #[test]
    fn help_lists_every_option() {
        cli_check::help_lists::<Args>(&["challenges", "rate", "nodes", "max-calls"]);
    }

    #[test]
    fn unknown_arguments_are_refused() {
        cli_check::refuses_unknown::<Args>();
    }

    #[test]
    fn bad_values_are_refused() {
        for argv in [
            &["--challenges", "0"][..],
            &["--challenges", "lots"],
            &["--rate", "0"],
            &["--rate", "fast"],
            &["--nodes", "1,x"],
            &["--nodes", "0"],
            &["--nodes", "5"],
            &["--max-calls", "0"],
        ] {
            assert_eq!(
                cli_check::error_kind::<Args>(argv),
                ErrorKind::ValueValidation,
                "{argv:?}"
            );
        }
        assert_eq!(
            cli_check::error_kind::<Args>(&["--rate"]),
            ErrorKind::InvalidValue
        );
    }

    #[test]
    fn defaults_are_the_previous_ones() {
        assert_eq!(
            cli_check::parse::<Args>(&[]),
            Args {
                challenges: 2000,
                rate: 100.0,
                nodes: vec![1, 2],
                max_calls: 500,
            }
        );
    }

    #[test]
    fn options_are_read_as_before() {
        assert_eq!(
            cli_check::parse::<Args>(&[
                "--challenges",
                "20",
                "--rate",
                "200",
                "--nodes",
                "2,1,4",
                "--max-calls",
                "1000",
            ]),
            Args {
                challenges: 20,
                rate: 200.0,
                nodes: vec![2, 1, 4],
                max_calls: 1000,
            }
        );
    }
}
