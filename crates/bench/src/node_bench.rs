//! node-bench: the gateway under load as it is deployed: `callverify serve` nodes (one, then
//! two) on one PostgreSQL, with bench-phone (or sipp) as every phone: it answers at once and
//! presses '#' in band 4.5 s later, while the instructions play. Challenges are made through
//! the nodes' APIs at `--rate` a second by several clients at once, spread over the nodes;
//! it prints, per node count, the calls completed a second, the most calls in progress at
//! once (the nodes' `callverify_active_calls`, summed), the time from a challenge to its
//! verdict (p50/p99, the challenge's `created_at` to its `decided_at`), the time from the
//! '#' tone's first packet (bench-phone's clock, read just before the send) to the
//! challenge's `decided_at` (p50/p99, with bench-phone only: sipp does not say when it
//! sends), the verdicts other than `approved` (every phone presses '#': a `denied` or
//! `approved` without it would be wrong; a `no_input` or `failed` is a call lost under load)
//! and the challenges not called exactly once.
//!
//! Needs the release binaries: `cargo build --release -p callverify -p callverify-bench`,
//! then `cargo run --release -p callverify-bench --bin node-bench -- [--challenges 2000]
//!  [--rate 100] [--nodes 1,2] [--max-calls 500] [--phone bench|sipp]` (`--help` lists the
//! options)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use callverify_e2e::{
    KEY_AT_MS, Postgres, Served, Sipp, V4, call_log, callee_scenario_playing, create_api_key,
    free_port, http, pound_ulaw, scratch,
};
use clap::Parser;
use clap::builder::{PossibleValuesParser, RangedU64ValueParser};
use serde_json::Value;

#[cfg(test)]
mod cli_check;
mod phone_peer;

const SECRET: &str = "node-bench token secret, 32 bytes or more";

/// The command line.
#[derive(Parser, Debug, PartialEq)]
#[command(
    name = "node-bench",
    about = "The gateway under load as deployed: `callverify serve` nodes on one PostgreSQL with\n\
             bench-phone or sipp as every phone; per node count, the calls completed a second, the\n\
             most calls in progress at once, challenge to verdict (p50/p99), the '#' tone's start\n\
             to the approved verdict (p50/p99, bench-phone only), the verdicts other than\n\
             approved and the challenges not called exactly once",
    long_about = None,
    after_help = "Needs the release binaries (cargo build --release -p callverify -p\n\
                  callverify-bench), PostgreSQL's server, and sipp for --phone sipp."
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
    /// The phones: bench-phone (this crate's load generator, which says when each '#' tone
    /// starts) or sipp
    #[arg(long, value_name = "bench|sipp", default_value = "bench", hide_possible_values = true,
          value_parser = PossibleValuesParser::new(["bench", "sipp"]))]
    phone: String,
}

/// How many clients make the challenges at once (each waits for its reply, as a sign-in
/// front end does), and how many read their states.
const CLIENTS: usize = 16;

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

/// Node `n` of `count`; each has its share of ports 20000 to 63999 for RTP (a pair a call).
fn node(
    dir: &Path,
    (n, count): (usize, usize),
    url: &str,
    trunk: std::net::SocketAddr,
    max_calls: usize,
) -> Served {
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let share = 44_000 / count / 2 * 2;
    let rtp = 20_000 + n * share;
    let api = format!("127.0.0.1:{}", free_port(V4));
    let text = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"phones\"\naddress = \"{trunk}\"\noptions_interval_s = 0\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp_end}\"\n\n\
         [call]\nprompts = \"{prompts}\"\nrepeats = 1\nfirst_key_timeout_s = 20\ncall_timeout_s = 60\n\
         max_calls = {max_calls}\n\n\
         [store]\nurl = \"{url}\"\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\nmax_concurrent_calls = 100000\n\
         per_api_key = {{ max = 1000000, window_s = 60 }}\n\
         per_country = {{ max = 1000000, window_s = 60 }}\n",
        sip = free_port(V4),
        rtp_end = rtp + share - 1,
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

/// The phones of one run.
enum Phones {
    Sipp(Sipp),
    Bench(phone_peer::BenchPhone),
}

/// One run's peers: the nodes, the phones and the store (dropped in that order).
struct Cluster {
    nodes: Vec<Served>,
    phones: Phones,
    _pg: Postgres,
    service: String,
    operator: String,
}

fn start(count: usize, a: &Args) -> Cluster {
    let dir = scratch(&format!("node-bench-{count}"));
    let pg = Postgres::start(&format!("node-bench-{count}"));
    let phones = if a.phone == "sipp" {
        let audio = pound_ulaw(&dir, KEY_AT_MS);
        let play = format!("rtp_stream=\"{},1,0\"", audio.display());
        let scenario = callee_scenario_playing(&dir, &play, Duration::ZERO);
        let n = a.challenges.to_string();
        Phones::Sipp(Sipp::start_file(
            dir.clone(),
            &scenario,
            V4,
            &["-m", &n, "-timeout", "600s", "-max_socket", "4096"],
        ))
    } else {
        Phones::Bench(phone_peer::BenchPhone::start(KEY_AT_MS as u64))
    };
    let trunk = match &phones {
        Phones::Sipp(s) => s.addr,
        Phones::Bench(b) => b.sip,
    };
    let nodes: Vec<Served> = (0..count)
        .map(|i| node(&dir, (i, count), &pg.url, trunk, a.max_calls))
        .collect();
    Cluster {
        service: key(&dir, "service"),
        operator: key(&dir, "operator"),
        nodes,
        phones,
        _pg: pg,
    }
}

/// The number challenge `i` calls, as the gateway dials it.
fn number(i: usize) -> String {
    format!("+8190{:08}", 12_000_000 + i)
}

/// Makes the challenges at `a.rate` a second from [`CLIENTS`] clients, spread over the
/// nodes: their ids in order, and the most calls seen in progress at once.
fn make_challenges(c: &Cluster, a: &Args, start: Instant) -> (Vec<String>, usize) {
    let done = AtomicBool::new(false);
    let mut peak = 0;
    let ids = std::thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|k| {
                s.spawn(move || {
                    let mut made = Vec::new();
                    for i in (k..a.challenges).step_by(CLIENTS) {
                        let due = start + Duration::from_secs_f64(i as f64 / a.rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let node = &c.nodes[i % c.nodes.len()];
                        let body = format!(r#"{{"phone_number":"{}"}}"#, number(i));
                        let (status, reply) =
                            http(&node.api, "POST", "/v1/challenges", &c.service, &body);
                        assert_eq!(status, 201, "{reply}");
                        made.push((i, json(&reply)["id"].as_str().unwrap().to_string()));
                    }
                    made
                })
            })
            .collect();
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(active(&c.nodes));
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        });
        let mut ids = vec![String::new(); a.challenges];
        for client in clients {
            for (i, id) in client.join().expect("a client") {
                ids[i] = id;
            }
        }
        done.store(true, Ordering::Relaxed);
        peak = sampler.join().expect("the sampler");
        ids
    });
    (ids, peak)
}

/// Milliseconds since the Unix epoch of an RFC 3339 time as the API writes it
/// (`2026-12-07T22:47:56.123Z`).
fn unix_ms(t: &str) -> Option<i64> {
    let t = t.strip_suffix('Z')?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|v| v.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut h = hms.splitn(3, ':').map(|v| v.parse::<i64>().ok());
    let (hh, mm, ss) = (h.next()??, h.next()??, h.next()??);
    let ms = format!("{frac:0<3}").get(..3)?.parse::<i64>().ok()?;
    // Days since 1970-01-01 from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// What the challenges ended with.
#[derive(Default)]
struct Verdicts {
    /// Seconds from each challenge to its verdict, sorted.
    seconds: Vec<f64>,
    /// Milliseconds from each approved call's '#' tone to its verdict, sorted (bench-phone).
    tone_ms: Vec<f64>,
    /// Approved challenges whose phone said no tone.
    no_tone: usize,
    /// How many ended in each state.
    states: HashMap<String, usize>,
}

/// A challenge's state, and its created and decided times in Unix ms once decided.
fn read(c: &Cluster, id: &str) -> (String, Option<(i64, i64)>) {
    let path = format!("/v1/challenges/{id}");
    let (_, body) = http(&c.nodes[0].api, "GET", &path, &c.service, "");
    let v = json(&body);
    let state = v["state"].as_str().unwrap_or("?").to_string();
    let times = v["created_at"]
        .as_str()
        .and_then(unix_ms)
        .zip(v["decided_at"].as_str().and_then(unix_ms));
    (state, times)
}

/// A challenge's index, state, and created and decided times.
type Reading = (usize, String, Option<(i64, i64)>);

/// Waits until every challenge is decided (raising `peak` as calls are seen in progress).
fn await_verdicts(c: &Cluster, ids: &[String], peak: &mut usize) -> Verdicts {
    let mut v = Verdicts::default();
    let mut pending: Vec<usize> = (0..ids.len()).collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} still pending", pending.len());
        *peak = (*peak).max(active(&c.nodes));
        let chunk = pending.len().div_ceil(CLIENTS);
        let readings: Vec<Reading> = std::thread::scope(|s| {
            let parts: Vec<_> = pending
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .map(|&i| {
                                let (state, times) = read(c, &ids[i]);
                                (i, state, times)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("a reader"))
                .collect()
        });
        pending.clear();
        for (i, state, times) in readings {
            if ["queued", "calling", "ringing", "answered"].contains(&state.as_str()) {
                pending.push(i);
                continue;
            }
            let (created, decided) = times.unwrap_or_else(|| panic!("{state} without times"));
            v.seconds.push((decided - created) as f64 / 1000.0);
            if let (Phones::Bench(b), "approved") = (&c.phones, state.as_str()) {
                match b.tone_at(&number(i)) {
                    Some(us) => v.tone_ms.push(decided as f64 - us as f64 / 1000.0),
                    None => v.no_tone += 1,
                }
            }
            *v.states.entry(state).or_default() += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    v.seconds.sort_by(f64::total_cmp);
    v.tone_ms.sort_by(f64::total_cmp);
    v
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
    let (ids, mut peak) = make_challenges(&cluster, a, start);
    let made = start.elapsed();
    let v = await_verdicts(&cluster, &ids, &mut peak);
    let wall = start.elapsed();
    let not_once = not_called_once(&cluster, a.challenges);
    let approved = v.states.get("approved").copied().unwrap_or(0);
    let mut others: Vec<_> = v.states.iter().filter(|(s, _)| *s != "approved").collect();
    others.sort();
    let tone = |p| {
        if v.tone_ms.is_empty() {
            "-".to_string()
        } else {
            format!("{:.0}", pct(&v.tone_ms, p))
        }
    };
    println!(
        "{count:>5} {:>6} {:>7.1} {:>7.1} {:>7.1} {:>6} {:>6.2} {:>6.2} {:>6} {:>6} {:>8} {:>5} {:>5} {:>6.1}",
        a.challenges,
        a.rate,
        a.challenges as f64 / made.as_secs_f64(),
        a.challenges as f64 / wall.as_secs_f64(),
        peak,
        pct(&v.seconds, 0.5),
        pct(&v.seconds, 0.99),
        tone(0.5),
        tone(0.99),
        approved,
        a.challenges - approved,
        not_once,
        wall.as_secs_f64(),
    );
    if !others.is_empty() {
        println!("        not approved: {others:?}");
    }
    if v.no_tone > 0 {
        println!(
            "        approved with no tone from bench-phone: {}",
            v.no_tone
        );
    }
    if let Phones::Bench(b) = cluster.phones {
        println!("        bench-phone: {}", b.finish());
    }
}

fn main() {
    let a = Args::parse();
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!(
        "node-bench: {} challenges asked for at {}/s by {CLIENTS} clients; {} answers at once \
         and presses '#' {} ms later; {} CPUs; started at Unix {unix}",
        a.challenges,
        a.rate,
        if a.phone == "sipp" {
            "sipp"
        } else {
            "bench-phone"
        },
        KEY_AT_MS,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!(
        "{:>5} {:>6} {:>7} {:>7} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8} {:>5} {:>5} {:>6}",
        "nodes",
        "made",
        "rate/s",
        "made/s",
        "calls/s",
        "peak",
        "p50 s",
        "p99 s",
        "#p50ms",
        "#p99ms",
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
        cli_check::help_lists::<Args>(&["challenges", "rate", "nodes", "max-calls", "phone"]);
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
        for argv in [&["--rate"][..], &["--phone", "softphone"]] {
            assert_eq!(
                cli_check::error_kind::<Args>(argv),
                ErrorKind::InvalidValue,
                "{argv:?}"
            );
        }
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
                phone: "bench".into(),
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
                "--phone",
                "sipp",
            ]),
            Args {
                challenges: 20,
                rate: 200.0,
                nodes: vec![2, 1, 4],
                max_calls: 1000,
                phone: "sipp".into(),
            }
        );
    }

    #[test]
    fn api_times_are_read_to_the_millisecond() {
        assert_eq!(unix_ms("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(unix_ms("2026-12-07T22:47:56.123Z"), Some(1_796_683_676_123));
        assert_eq!(unix_ms("2000-02-29T23:59:59.999Z"), Some(951_868_799_999));
        assert_eq!(unix_ms("1969-12-31T23:59:59.000Z"), Some(-1000));
        for bad in [
            "",
            "2026-12-07",
            "2026-12-07T22:47:56.123",
            "x-12-07T22:47:56Z",
        ] {
            assert_eq!(unix_ms(bad), None, "{bad}");
        }
    }
}
