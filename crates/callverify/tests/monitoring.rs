//! The monitoring that ships in packaging/: the alert rules pass `promtool check rules` and
//! their unit tests (`promtool test rules`); a real Prometheus scrapes a served gateway with
//! those rules loaded: every metric the rules and the Grafana dashboard name is scraped,
//! every dashboard query and every rule evaluates without error, and a trunk that stops
//! answering raises `CallverifyTrunkDown` (pending) and a refused registration
//! `CallverifyTrunkNotRegistered`.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callverify_e2e::{
    BOUND, Served, Sipp, V4, create_api_key, free_port, free_rtp_pair, http, metrics_holding,
    scratch,
};

fn packaging(file: &str) -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging")).join(file)
}

/// Runs `promtool` with `args`: whether it passed, and what it printed.
fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool (Debian package prometheus) is installed: .ci/test installs it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let rules = packaging("prometheus/callverify-alerts.yml");
    let (ok, text) = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 13 rules found"), "{text}");
    // The answer rate's outcomes are the engine's answered ones, in the rules and the
    // dashboard alike.
    let answered = format!("outcome=~\"{}\"", engine::Outcome::ANSWERED.join("|"));
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    assert_eq!(rules_text.matches(&answered).count(), 2, "{answered}");
    let dashboard = packaging("grafana/callverify-dashboard.json");
    let dashboard = std::fs::read_to_string(dashboard).unwrap();
    assert!(
        dashboard.contains(&answered.replace('"', "\\\"")),
        "{answered}"
    );
    let tests = packaging("prometheus/callverify-alerts.test.yml");
    let (ok, text) = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(ok, "{text}");
    println!("{text}");
}

/// The metric names (`callverify_…`) in `text`, histograms' `_bucket`, `_sum` and `_count`
/// series included as written.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("callverify_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// Every `expr` of the dashboard's panels, with Grafana's variables given values.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(packaging("grafana/callverify-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            queries.push(
                expr.replace("$__rate_interval", "1m")
                    .replace("$instance", ".*"),
            );
        }
    }
    queries
}

/// `s` as a URL query value.
fn encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server on loopback, killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    /// Starts it scraping `target` every second, with the alert rules evaluated every second.
    fn start(dir: &Path, target: &str) -> Prometheus {
        let addr = format!("127.0.0.1:{}", free_port(V4));
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: callverify\n    static_configs:\n      \
             - targets: [\"{target}\"]\n",
            rules = packaging("prometheus/callverify-alerts.yml").display(),
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus (Debian package prometheus) is installed");
        let p = Prometheus { child, addr };
        let started = Instant::now();
        while std::net::TcpStream::connect(&p.addr).is_err()
            || http(&p.addr, "GET", "/-/ready", "", "").0 != 200
        {
            assert!(started.elapsed() < BOUND, "prometheus did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// The `data` of an API answer to GET `path`.
    fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http(&self.addr, "GET", path, "", "");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {status} {body}: {e}"));
        assert_eq!(v["status"], "success", "{path}: {body}");
        v["data"].clone()
    }

    /// The result of the instant query `q` (asserting it evaluates).
    fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let data = self.api(&format!("/api/v1/query?query={}", encoded(q)));
        data["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_the_gateway_and_evaluates_the_rules() {
    let sipp = Sipp::callee_pressing_pound("monitoring", V4);
    let dir = scratch("monitoring");
    let prom_dir = scratch("monitoring-prometheus");
    let api = format!("127.0.0.1:{}", free_port(V4));
    // A trunk with a registrar that never answers: its OPTIONS and REGISTER time out (Timer F
    // is 64·T1 = 3.2 s with T1 = 50 ms). It is second: the call goes to sipp. Its password is
    // read from a variable serve is given anyway (the registrar never asks for it).
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (sip, rtp) = (free_port(V4), free_rtp_pair(V4));
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let config = |silent_trunk: bool| {
        let silent_trunk = if silent_trunk {
            format!(
                "[[trunk]]\nname = \"silent\"\naddress = \"{}\"\noptions_interval_s = 1\n\
                 register = true\nusername = \"callverify\"\n\
                 password_env = \"CALLVERIFY_TOKEN_SECRET\"\n\n",
                silent.local_addr().unwrap()
            )
        } else {
            String::new()
        };
        format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
             [sip.timers]\nt1_ms = 50\nt2_ms = 400\n\n\
             [[trunk]]\nname = \"sipp\"\naddress = \"{trunk}\"\noptions_interval_s = 0\n\n\
             {silent_trunk}\
             [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
             [call]\nprompts = \"{prompts}\"\nfirst_key_timeout_s = 5\ncall_timeout_s = 60\n\n\
             [store]\nurl = \"sqlite://{db}\"\n\n\
             [api]\nlisten = \"{api}\"\n\n\
             [policy]\nallowed_countries = [\"JP\"]\n",
            trunk = sipp.addr,
            rtp1 = rtp + 1,
            db = dir.join("cv.db").display(),
        )
    };
    let path = dir.join("callverify.toml");
    let bin = env!("CARGO_BIN_EXE_callverify");
    // The key is made before the silent trunk is added: create-api-key is not given the
    // variable its password is read from.
    std::fs::write(&path, config(false)).unwrap();
    let key = create_api_key(Path::new(bin), &path, "idp", "service");
    std::fs::write(&path, config(true)).unwrap();
    let _served = Served::start(
        Path::new(bin),
        &path,
        &api,
        "0123456789abcdef0123456789abcdef-test",
        &[],
        &dir.join("serve.log"),
    );

    // One approved call, so that every series (the histograms too) has samples.
    let (status, body) = http(
        &api,
        "POST",
        "/v1/challenges",
        &key,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let (approved, metrics) =
        metrics_holding(&api, "callverify_calls_total{outcome=\"approved\"} 1");
    assert!(approved, "{metrics}");
    // The counters the alerts watch exist at zero before their first event.
    for line in [
        "callverify_calls_total{outcome=\"fraud_reported\"} 0",
        "callverify_webhook_attempts_total{result=\"gave_up\"} 0",
        "callverify_refusals_total{reason=\"too_many_calls\"} 0",
        "callverify_ready 1",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    let prom = Prometheus::start(&prom_dir, &api);
    let rules_text =
        std::fs::read_to_string(packaging("prometheus/callverify-alerts.yml")).unwrap();
    let queries = dashboard_queries();
    let mut wanted = metric_names(&rules_text);
    for q in &queries {
        wanted.extend(metric_names(q));
    }

    // Everything named is scraped; the trunk that does not answer raises its alerts.
    let started = Instant::now();
    let (mut missing, mut alerts) = (wanted.clone(), Vec::new());
    while started.elapsed() < Duration::from_secs(60) {
        let names: BTreeSet<String> = prom
            .api("/api/v1/label/__name__/values")
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        missing = wanted.difference(&names).cloned().collect();
        alerts = prom.api("/api/v1/alerts")["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let raised = |name: &str| {
            alerts.iter().any(|a| {
                a["labels"]["alertname"] == name
                    && a["labels"]["trunk"] == "silent"
                    && ["pending", "firing"].contains(&a["state"].as_str().unwrap_or(""))
            })
        };
        if missing.is_empty()
            && raised("CallverifyTrunkDown")
            && raised("CallverifyTrunkNotRegistered")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(missing.is_empty(), "not scraped: {missing:?}");
    let names: Vec<String> = alerts
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["labels"]["alertname"], a["labels"]["trunk"], a["state"]
            )
        })
        .collect();
    println!("alerts: {names:?}");
    for want in ["CallverifyTrunkDown", "CallverifyTrunkNotRegistered"] {
        assert!(
            names
                .iter()
                .any(|n| n.starts_with(&format!("\"{want}\" \"silent\""))),
            "{want} for the silent trunk in {names:?}"
        );
    }
    // Nothing else is raised: the gateway is up and ready, sipp's trunk is up.
    assert!(
        names.iter().all(|n| n.contains("\"silent\"")),
        "only the silent trunk's alerts: {names:?}"
    );

    // Every rule evaluated without error against the real series.
    let groups = prom.api("/api/v1/rules")["groups"].clone();
    let mut rules = 0;
    for g in groups.as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            rules += 1;
            assert_eq!(r["health"], "ok", "{r}");
        }
    }
    assert_eq!(rules, 13);

    // Every dashboard query evaluates, and those over the call's series have a result.
    // (A rate needs two samples of the series in its window: those wait for a second scrape.)
    for q in &queries {
        let started = Instant::now();
        let mut result = prom.query(q);
        if q.contains("post_dial_delay") || q.contains("callverify_ready") {
            while result.is_empty() && started.elapsed() < BOUND {
                std::thread::sleep(Duration::from_millis(500));
                result = prom.query(q);
            }
            assert!(!result.is_empty(), "no result for {q}");
        }
    }
    println!(
        "{} metrics named, {} dashboard queries, {rules} rules: all scraped and evaluated",
        wanted.len(),
        queries.len()
    );
    let exit = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(sipp.finish());
    assert!(exit.passed, "{}", exit.log);
}
