//! poll-bench: how many `GET /v1/challenges/{id}` polls per second the API answers on
//! loopback, and their latency, with 10,000 stored challenges, on SQLite and on PostgreSQL
//! (a server of its own on loopback). The load comes from wrk (Debian's package), a second
//! process; each request polls a random challenge with that challenge's poll token, as login
//! pages do. The API runs on a tokio runtime of `--api-threads` workers, on the store as
//! `serve` opens it (with its copy of the challenges read; `--cache off` without). With
//! `--changes N`, N state changes a second go on meanwhile (challenges moving from `queued`
//! to `approved` one step at a time), as calls in progress make them.
//!
//! `cargo run --release -p callverify-bench --bin poll-bench -- [--challenges N]
//!  [--connections C] [--seconds S] [--api-threads T] [--backend sqlite|postgres|both]
//!  [--cache on|off] [--changes N]`

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use api::{ApiConfig, AppState};
use callverify_e2e::{Postgres, scratch, sign_in};
use store::{KeyKind, NewChallenge, Store, now_ms};

struct Args {
    challenges: usize,
    connections: usize,
    seconds: u64,
    api_threads: usize,
    wrk_threads: usize,
    backends: Vec<String>,
    cache: bool,
    changes: u64,
}

fn args() -> Args {
    let mut a = Args {
        challenges: 10_000,
        connections: 64,
        seconds: 10,
        api_threads: 2,
        wrk_threads: 1,
        backends: vec!["sqlite".into(), "postgres".into()],
        cache: true,
        changes: 0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() + 1 && i < argv.len() {
        let v = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--challenges" => a.challenges = v.parse().expect("a count"),
            "--connections" => a.connections = v.parse().expect("a count"),
            "--seconds" => a.seconds = v.parse().expect("seconds"),
            "--api-threads" => a.api_threads = v.parse().expect("a count"),
            "--wrk-threads" => a.wrk_threads = v.parse().expect("a count"),
            "--backend" => {
                a.backends = match v.as_str() {
                    "both" => vec!["sqlite".into(), "postgres".into()],
                    b => vec![b.to_string()],
                }
            }
            "--cache" => a.cache = v == "on",
            "--changes" => a.changes = v.parse().expect("changes per second"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

const SECRET: &[u8] = b"poll-bench token secret, 32 bytes or more";

/// Fills the store; returns (id, poll token) of each challenge.
async fn fill(store: &Store, n: usize) -> Vec<(String, String)> {
    let (key, _) = store
        .create_api_key("bench", KeyKind::Service, 0)
        .await
        .unwrap();
    let now = now_ms();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (c, _) = store
            .create_challenge(&NewChallenge {
                expires_at_ms: now + 3_600_000,
                ..sign_in(&key.id, &format!("+8190{i:08}"), now)
            })
            .await
            .unwrap();
        out.push((c.id.to_string(), api::poll_token(SECRET, &c.id)));
    }
    out
}

/// Moves the challenges on, `per_s` changes a second, one step at a time.
async fn change(store: Store, ids: Vec<(String, String)>, per_s: u64) {
    use store::ChallengeState::*;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_s as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for (id, _) in ids.iter().rev() {
        let id = store::ChallengeId::from_stored(id.clone());
        for to in [Calling, Ringing, Answered, Approved] {
            tick.tick().await;
            let _ = store.transition(&id, to, now_ms(), None, None).await;
        }
    }
}

fn wrk_script(dir: &std::path::Path, ids: &[(String, String)]) -> std::path::PathBuf {
    let mut lua = String::from("local c = {\n");
    for (id, token) in ids {
        lua.push_str(&format!(
            "{{\"/v1/challenges/{id}\", \"Bearer {token}\"}},\n"
        ));
    }
    lua.push_str(
        "}\n\
         math.randomseed(7)\n\
         request = function()\n  \
           local e = c[math.random(#c)]\n  \
           return wrk.format(\"GET\", e[1], {[\"Authorization\"] = e[2]})\n\
         end\n\
         done = function(summary, latency, requests)\n  \
           io.write(string.format(\"RESULT %d %d %d %d %.1f %.1f %.1f %.1f\\n\", summary.requests, summary.duration, \
             summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, \
             0, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))\n\
         end\n",
    );
    let path = dir.join("poll.lua");
    std::fs::write(&path, lua).unwrap();
    path
}

fn run(backend: &str, a: &Args) {
    let dir = scratch(&format!("poll-bench-{backend}"));
    let pg;
    let url = match backend {
        "sqlite" => format!("sqlite://{}", dir.join("bench.db").display()),
        "postgres" => {
            pg = Postgres::start("poll-bench");
            pg.url.clone()
        }
        other => panic!("unknown backend {other}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.api_threads)
        .enable_all()
        .build()
        .unwrap();
    let (addr, ids) = rt.block_on(async {
        let mut store = Store::open(&url).await.unwrap();
        if a.cache {
            store = store.cached().unwrap();
            while !store.cache_live() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let ids = fill(&store, a.challenges).await;
        if a.changes > 0 {
            tokio::spawn(change(store.clone(), ids.clone(), a.changes));
        }
        let state = AppState {
            store,
            runner: None,
            readiness: Default::default(),
            cfg: Arc::new(ApiConfig {
                token_secret: SECRET.to_vec(),
                ..ApiConfig::default()
            }),
        };
        let lis = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = lis.local_addr().unwrap();
        tokio::spawn(api::serve(
            lis,
            api::router(state),
            api::ServeLimits::default(),
            std::future::pending(),
        ));
        (addr, ids)
    });
    let script = wrk_script(&dir, &ids);
    // Warm up (connections, caches), then measure.
    for (secs, measured) in [(2u64, false), (a.seconds, true)] {
        let out = Command::new("wrk")
            .arg(format!("-t{}", a.wrk_threads))
            .arg(format!("-c{}", a.connections))
            .arg(format!("-d{secs}s"))
            .arg("-s")
            .arg(&script)
            .arg(format!("http://{addr}"))
            .output()
            .expect("wrk runs (apt-get install wrk)");
        let text = String::from_utf8_lossy(&out.stdout);
        if !measured {
            continue;
        }
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no result from wrk:\n{text}"));
        let f: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        let rate = f[0] / (f[1] / 1e6);
        println!(
            "{backend:<8} cache {:<3} changes {:>4}/s {:>6} challenges  {:>3} connections  {:>8.0} polls/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  errors {}",
            if a.cache { "on" } else { "off" },
            a.changes,
            a.challenges,
            a.connections,
            rate,
            f[4] / 1e3,
            f[5] / 1e3,
            f[6] / 1e3,
            f[7] / 1e3,
            f[2]
        );
    }
    rt.shutdown_timeout(Duration::from_secs(1));
}

fn main() {
    let a = args();
    println!(
        "poll-bench: GET /v1/challenges/{{id}} with the poll token, wrk {} thread(s), {} s, API on {} tokio worker(s), {} CPUs",
        a.wrk_threads,
        a.seconds,
        a.api_threads,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    for b in &a.backends {
        run(b, &a);
    }
}
