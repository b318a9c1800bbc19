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
//!  [--connections C] [--seconds S] [--api-threads T] [--wrk-threads T]
//!  [--backend sqlite|postgres|both] [--cache on|off] [--changes N]` (`--help` lists them)

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use api::{ApiConfig, AppState};
use callverify_e2e::{Postgres, scratch, sign_in};
use clap::builder::{PossibleValuesParser, RangedU64ValueParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{ArgAction, CommandFactory, Parser};
use store::{KeyKind, NewChallenge, Store, now_ms};

#[cfg(test)]
mod cli_check;

/// The command line.
#[derive(Parser, Debug, PartialEq, Eq)]
#[command(
    name = "poll-bench",
    about = "How many GET /v1/challenges/{id} polls per second the API answers on loopback, and\n\
             their latency, on SQLite and on PostgreSQL, with wrk polling random challenges with\n\
             their poll tokens as login pages do",
    long_about = None,
    after_help = "Needs wrk, and PostgreSQL's server for --backend postgres or both."
)]
struct Args {
    /// Challenges stored, each polled with its own poll token
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = at_least_one())]
    challenges: usize,
    /// wrk's connections (at least --wrk-threads)
    #[arg(long, value_name = "C", default_value_t = 64, value_parser = at_least_one())]
    connections: usize,
    /// Seconds measured a backend, after a 2 s warm-up
    #[arg(long, value_name = "S", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    seconds: u64,
    /// Threads of the tokio runtime that serves the API
    #[arg(long, value_name = "T", default_value_t = 2, value_parser = at_least_one())]
    api_threads: usize,
    /// wrk's threads
    #[arg(long, value_name = "T", default_value_t = 1, value_parser = at_least_one())]
    wrk_threads: usize,
    /// The store (postgres: a server of its own); both: sqlite, then postgres
    #[arg(long, value_name = "sqlite|postgres|both", default_value = "both",
          hide_possible_values = true,
          value_parser = PossibleValuesParser::new(["sqlite", "postgres", "both"]))]
    backend: String,
    /// Whether the store keeps its copy of the challenges read, as `serve` opens it
    #[arg(long, value_name = "on|off", default_value = "on", action = ArgAction::Set,
          hide_possible_values = true,
          value_parser = PossibleValuesParser::new(["on", "off"]).map(|v| v == "on"))]
    cache: bool,
    /// State changes a second meanwhile, challenges moving from queued to approved
    #[arg(long, value_name = "N", default_value_t = 0)]
    changes: u64,
}

/// A count of 1 or more.
fn at_least_one() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

impl Args {
    /// The command line, or its error (status 2) for what clap cannot see alone.
    fn parse_checked() -> Args {
        let a = Args::parse();
        if let Err(e) = a.check() {
            e.exit();
        }
        a
    }

    /// wrk needs at least one connection a thread.
    fn check(&self) -> Result<(), clap::Error> {
        if self.connections < self.wrk_threads {
            return Err(Args::command().error(
                ErrorKind::ArgumentConflict,
                format!(
                    "--connections {} is fewer than --wrk-threads {}: wrk needs a connection a thread",
                    self.connections, self.wrk_threads
                ),
            ));
        }
        Ok(())
    }

    /// The backends to run, in order.
    fn backends(&self) -> Vec<&str> {
        match self.backend.as_str() {
            "both" => vec!["sqlite", "postgres"],
            b => vec![b],
        }
    }
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
    let a = Args::parse_checked();
    println!(
        "poll-bench: GET /v1/challenges/{{id}} with the poll token, wrk {} thread(s), {} s, API on {} tokio worker(s), {} CPUs",
        a.wrk_threads,
        a.seconds,
        a.api_threads,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    for b in a.backends() {
        run(b, &a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_option() {
        cli_check::help_lists::<Args>(&[
            "challenges",
            "connections",
            "seconds",
            "api-threads",
            "wrk-threads",
            "backend",
            "cache",
            "changes",
        ]);
    }

    #[test]
    fn unknown_arguments_are_refused() {
        cli_check::refuses_unknown::<Args>();
    }

    #[test]
    fn bad_values_are_refused() {
        for (argv, kind) in [
            (&["--challenges", "many"][..], ErrorKind::ValueValidation),
            (&["--challenges", "0"], ErrorKind::ValueValidation),
            (&["--connections", "0"], ErrorKind::ValueValidation),
            (&["--seconds", "0"], ErrorKind::ValueValidation),
            (&["--seconds", "1.5"], ErrorKind::ValueValidation),
            (&["--api-threads", "0"], ErrorKind::ValueValidation),
            (&["--wrk-threads", "-1"], ErrorKind::UnknownArgument),
            (&["--changes", "-1"], ErrorKind::UnknownArgument),
            (&["--backend", "mysql"], ErrorKind::InvalidValue),
            (&["--cache", "yes"], ErrorKind::InvalidValue),
            (&["--cache"], ErrorKind::InvalidValue),
        ] {
            assert_eq!(cli_check::error_kind::<Args>(argv), kind, "{argv:?}");
        }
        let a = cli_check::parse::<Args>(&["--connections", "2", "--wrk-threads", "4"]);
        assert_eq!(a.check().unwrap_err().kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn defaults_are_the_previous_ones() {
        let a = cli_check::parse::<Args>(&[]);
        assert_eq!(
            a,
            Args {
                challenges: 10_000,
                connections: 64,
                seconds: 10,
                api_threads: 2,
                wrk_threads: 1,
                backend: "both".into(),
                cache: true,
                changes: 0,
            }
        );
        assert_eq!(a.backends(), ["sqlite", "postgres"]);
        assert!(a.check().is_ok());
    }

    #[test]
    fn options_are_read_as_before() {
        let a = cli_check::parse::<Args>(&[
            "--challenges",
            "100",
            "--connections",
            "16",
            "--seconds",
            "3",
            "--api-threads",
            "4",
            "--wrk-threads",
            "2",
            "--backend",
            "postgres",
            "--cache",
            "off",
            "--changes",
            "50",
        ]);
        assert_eq!(
            a,
            Args {
                challenges: 100,
                connections: 16,
                seconds: 3,
                api_threads: 4,
                wrk_threads: 2,
                backend: "postgres".into(),
                cache: false,
                changes: 50,
            }
        );
        assert_eq!(a.backends(), ["postgres"]);
        let sqlite = cli_check::parse::<Args>(&["--backend", "sqlite", "--cache", "on"]);
        assert_eq!((sqlite.backends(), sqlite.cache), (vec!["sqlite"], true));
    }
}
