//! `callverify demo`: the whole flow on loopback with a real softphone. The gateway runs with
//! SQLite in a scratch directory; baresip answers every call automatically and "presses '#'"
//! (its microphone is a WAV with a '#' tone two seconds in); the demo registers the user's
//! phone through the API, signs in with "don't ask again", signs in once more with the
//! trusted-device token, and prints each state as it changes and the call log.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use store::KeyKind;

use crate::config::Config;
use crate::gateway::Gateway;

/// The demo user's phone: the softphone answers it and presses '#' (the number the CLI demo
/// registers, and the first the `/demo` page lists).
const NUMBER: &str = "+819012345678";

/// The demo user's other phone (a fallback the page registers): answers and presses '#' too.
const OTHER_NUMBER: &str = "+819077778888";

/// What the demo's softphone does when one of its numbers is called.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// Answers and presses '#' while the instructions play.
    Pound,
    /// Rings and is never answered (no answer after `ring_timeout_s`).
    Never,
    /// Answers and presses no key (no input).
    NoKey,
    /// Has no such user: the softphone answers 404 Not Found.
    NotInService,
}

/// Every number the demo calls (`[demo] numbers`, in this order), with what its softphone
/// does: the page's banner lists them, `demo --serve` prints them, the README says them.
const NUMBERS: [(&str, Answers, &str); 5] = [
    (NUMBER, Answers::Pound, "answers and presses '#'"),
    (
        "+819011112222",
        Answers::Never,
        "rings and is never answered (no answer)",
    ),
    (
        "+819033334444",
        Answers::NoKey,
        "answers and presses no key (no key heard)",
    ),
    (
        "+819055556666",
        Answers::NotInService,
        "is not in service (404 Not Found: check the number)",
    ),
    (
        OTHER_NUMBER,
        Answers::Pound,
        "is the other phone: answers and presses '#' (register it as a second phone)",
    ),
];

/// baresip's accounts: one per number it answers, each with its microphone (`pound`,
/// `quiet`) and answer mode.
fn accounts(pound: &Path, quiet: &Path) -> String {
    let mut out = String::new();
    for (number, answers, _) in NUMBERS {
        let (mode, source) = match answers {
            Answers::Pound => ("auto", pound),
            Answers::NoKey => ("auto", quiet),
            Answers::Never => ("manual", quiet),
            Answers::NotInService => continue,
        };
        out += &format!(
            "<sip:{number}@127.0.0.1>;regint=0;answermode={mode};audio_codecs=PCMU,PCMA;\
             audio_source=aufile,{}\n",
            source.display()
        );
    }
    out
}

/// Eight kHz mono, 45 seconds of quiet: the microphone of a phone that presses no key (baresip
/// hangs up when its file ends, so it lasts past the wait for a first key).
fn write_quiet(path: &Path) -> anyhow::Result<()> {
    write_wav(path, std::iter::repeat_n(0i16, 8000 * 45))
}

/// Writes `samples` as an 8 kHz mono 16-bit WAV.
fn write_wav(path: &Path, samples: impl Iterator<Item = i16>) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for v in samples {
        w.write_sample(v)?;
    }
    w.finalize()?;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Eight kHz mono: 4.5 s of quiet, '#' (941 + 1477 Hz) for 150 ms, then quiet to 40 s (the
/// softphone stays on the line while a spoken code is read: baresip hangs up when its
/// microphone's file ends).
fn write_keypress(path: &Path) -> anyhow::Result<()> {
    // '#' 4.5 s after the answer: while the instructions play (a key during the greeting,
    // before anyone asked for one, is dropped).
    let samples = (0..(8000 * 40)).map(|n| {
        let t = f64::from(n) / 8000.0;
        let tone = (4.5..4.65).contains(&t);
        let v = if tone {
            let tau = std::f64::consts::TAU;
            5000.0 * ((tau * 941.0 * t).sin() + (tau * 1477.0 * t).sin())
        } else {
            0.0
        };
        v as i16
    });
    write_wav(path, samples)
}

/// baresip on loopback, answering the demo's numbers as [`NUMBERS`] says, with `wav` as the
/// microphone of the one that presses '#'.
struct Softphone {
    child: Child,
    addr: SocketAddr,
}

impl Softphone {
    fn start(dir: &Path, wav: &Path, lifetime: Duration) -> anyhow::Result<Softphone> {
        let quiet = dir.join("user-presses-nothing.wav");
        write_quiet(&quiet)?;
        if Command::new("baresip")
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
            || !Path::new("/usr/lib/baresip/modules/aufile.so").exists()
        {
            bail!(
                "the demo needs baresip (Debian: apt-get install baresip-core); `bash .ci/demo` installs it"
            );
        }
        let port = free_port()?;
        let rtp = free_port()? & !1;
        let config = format!(
            "poll_method\tepoll\n\
             sip_listen\t127.0.0.1:{port}\n\
             net_interface\t127.0.0.1\n\
             audio_player\taufile,{heard}\n\
             audio_source\taufile,{said}\n\
             audio_alert\taufile,/dev/null\n\
             module_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\n\
             module\taufile.so\n\
             module_app\taccount.so\n\
             module_app\tmenu.so\n\
             rtp_ports\t{rtp}-{}\n",
            rtp + 20,
            heard = dir.join("heard.wav").display(),
            said = wav.display(),
        );
        std::fs::write(dir.join("config"), config)?;
        std::fs::write(dir.join("accounts"), accounts(wav, &quiet))?;
        let log = std::fs::File::create(dir.join("baresip.log"))?;
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir)
            // It quits by itself after `lifetime`, whatever happens to the demo.
            .args(["-t", &lifetime.as_secs().to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting baresip")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        // Listening once the port is taken.
        while UdpSocket::bind(addr).is_ok() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!(
                    "baresip did not listen on {addr} (see {})",
                    dir.join("baresip.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Softphone { child, addr })
    }
}

impl Drop for Softphone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prompts_dir() -> PathBuf {
    let here = PathBuf::from("prompts");
    if here.join("en/greeting.wav").exists() {
        here
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts"))
    }
}

fn random_secret() -> String {
    store::new_id("s") + &store::new_id("") + &store::new_id("")
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    started: Instant,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(bearer);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        ))
    }

    fn say(&self, what: &str) {
        println!("{:>6.2} s  {what}", self.started.elapsed().as_secs_f64());
    }

    /// Follows a challenge with its poll token (as a login page does) until it is decided;
    /// prints each state.
    async fn follow(&self, created: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let id = created["id"].as_str().context("no id")?;
        let token = created["poll_token"].as_str().context("no poll token")?;
        let mut last = String::new();
        let mut c = created.clone();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let state = c["state"].as_str().unwrap_or("?").to_string();
            if state != last {
                let reason = c["reason"]
                    .as_str()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                self.say(&format!("  {id}: {state}{reason}"));
                last = state.clone();
            }
            if !matches!(
                state.as_str(),
                "queued" | "calling" | "ringing" | "answered"
            ) {
                return Ok(c);
            }
            if Instant::now() > deadline {
                bail!("challenge {id} was not decided in 120 s");
            }
            let (status, next) = self
                .send(
                    reqwest::Method::GET,
                    &format!("/v1/challenges/{id}?wait=10"),
                    token,
                    None,
                )
                .await?;
            if status != 200 {
                bail!("polling {id}: HTTP {status}: {next}");
            }
            c = next;
        }
    }

    async fn create(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, r) = self
            .send(reqwest::Method::POST, path, &self.key, Some(body))
            .await?;
        if !(200..300).contains(&status) {
            bail!("POST {path}: HTTP {status}: {r}");
        }
        Ok(r)
    }
}

/// How long `callverify demo --serve` serves at most.
const SERVE_FOR: Duration = Duration::from_secs(3600);

/// Runs the demo; `Ok(true)` when every step was approved. With `serve`, the gateway
/// listens there with the `/demo` page on instead, until SIGTERM or Ctrl-C (an hour at
/// most), for a person or a browser to go through the flow.
pub async fn run(lang: media::Language, serve: Option<SocketAddr>) -> anyhow::Result<bool> {
    let dir = std::env::temp_dir().join(format!("callverify-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let wav = dir.join("user-presses-pound.wav");
    write_keypress(&wav)?;
    let lifetime = match serve {
        Some(_) => SERVE_FOR + Duration::from_secs(60),
        None => Duration::from_secs(300),
    };
    let phone = Softphone::start(&dir, &wav, lifetime)?;
    println!(
        "softphone: baresip on udp:{} answers automatically and presses '#'",
        phone.addr
    );
    let toml = demo_config(phone.addr, &dir, serve.is_some());
    let cfg = Config::parse(&toml, "demo", |_| None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = random_secret();
    let api_cfg = cfg
        .api_settings(|_| Some(secret.clone()))
        .map_err(|e| anyhow::anyhow!(e))?;
    let url = cfg.store_url(|_| None).map_err(|e| anyhow::anyhow!(e))?;
    let gw = Gateway::start(
        &cfg,
        api_cfg,
        &url,
        Some(serve.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)))),
    )
    .await?;
    if serve.is_some() {
        serve_page(&gw).await?;
        gw.shutdown(Duration::from_secs(5)).await;
        drop(phone);
        let _ = std::fs::remove_dir_all(&dir);
        println!("demo: stopped");
        return Ok(true);
    }
    println!(
        "gateway:   API on http://{} (SQLite {})",
        gw.api_addr,
        dir.join("callverify.db").display()
    );
    let (_, key) = gw.store.create_api_key("demo", KeyKind::Service, 0).await?;
    let (_, op) = gw
        .store
        .create_api_key("demo-ops", KeyKind::Operator, 0)
        .await?;
    api::install_crypto_provider();
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: format!("http://{}", gw.api_addr),
        key,
        started: Instant::now(),
    };
    let all_approved = steps(&client, lang.code()).await?;
    // A call goes on after its verdict (the closing prompt, then BYE): wait for its end.
    wait_for_calls_to_end(&client, &op).await?;
    print_call_log(&client, &op).await?;
    gw.shutdown(Duration::from_secs(5)).await;
    drop(phone);
    if all_approved {
        let _ = std::fs::remove_dir_all(&dir);
        println!("demo: every step approved");
    } else {
        println!(
            "demo: a step was not approved; files kept in {}",
            dir.display()
        );
    }
    Ok(all_approved)
}

/// The demo's configuration: the softphone at `phone` as the one trunk, the store a SQLite
/// file in `dir`, and the `/demo` page on when `page`.
fn demo_config(phone: SocketAddr, dir: &Path, page: bool) -> String {
    format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:0\"]\n\
         [sip.timers]\nring_timeout_s = 15\n\
         [[trunk]]\nname = \"softphone\"\naddress = \"{}\"\ntransport = \"udp\"\noptions_interval_s = 0\n\
         [media]\naddress = \"127.0.0.1\"\n\
         [call]\nprompts = {:?}\nrepeats = 2\ncall_timeout_s = 60\nfirst_key_timeout_s = 15\n\
         [store]\nurl = \"sqlite://{}\"\n\
         [policy]\nallowed_countries = [\"JP\"]\nper_number = {{ max = 10, window_s = 600 }}\n\
         [api]\ndemo_page = {}\n\
         [demo]\nnumbers = [{}]\n",
        phone,
        prompts_dir().display().to_string(),
        dir.join("callverify.db").display(),
        page,
        NUMBERS.map(|(n, _, _)| format!("{n:?}")).join(", "),
    )
}

/// `demo --serve`: says where the page and the console are, and serves until SIGTERM,
/// Ctrl-C or [`SERVE_FOR`].
async fn serve_page(gw: &Gateway) -> anyhow::Result<()> {
    let (_, op) = gw
        .store
        .create_api_key("demo-ops", KeyKind::Operator, 0)
        .await?;
    println!("demo page: http://{}/demo", gw.api_addr);
    println!("console:   http://{}/console", gw.api_addr);
    println!("operator key (for the console): {op}");
    println!("the page calls only these numbers (type them as 090-1234-5678 or +81 90 1234 5678):");
    for (number, _, does) in NUMBERS {
        println!("  {number}: the softphone {does}");
    }
    println!("serving until SIGTERM or Ctrl-C (an hour at most)");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        () = tokio::time::sleep(SERVE_FOR) => {}
    }
    Ok(())
}

/// The demo's three steps (an enrolment, a sign-in that asks to remember the device, a
/// sign-in on that device): whether each was approved.
async fn steps(client: &Client, code: &str) -> anyhow::Result<bool> {
    let mut all_approved = true;
    client.say(&format!(
        "1. enrolment: register {} for user demo-user (a call; press '#')",
        masked(NUMBER)
    ));
    let reg = client
        .create(
            "/v1/users/demo-user/phones",
            serde_json::json!({"phone_number": NUMBER, "language": code}),
        )
        .await?;
    let done = client.follow(&reg["challenge"]).await?;
    all_approved &= done["state"] == "approved";
    let (_, phones) = client
        .send(
            reqwest::Method::GET,
            "/v1/users/demo-user/phones",
            &client.key,
            None,
        )
        .await?;
    client.say(&format!(
        "  phone {}: {}",
        phones["phones"][0]["phone_number"].as_str().unwrap_or("?"),
        phones["phones"][0]["state"].as_str().unwrap_or("?")
    ));

    client.say("2. sign-in of demo-user, \"don't ask again for 14 days\" ticked");
    let c = client
        .create(
            "/v1/challenges",
            serde_json::json!({"user_id": "demo-user", "language": code, "remember_device": true}),
        )
        .await?;
    let done = client.follow(&c).await?;
    all_approved &= done["state"] == "approved";
    let token = done["trusted_device_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    client.say(&format!(
        "  trusted-device token {}… until {}",
        token.get(..16).unwrap_or(&token),
        done["trusted_until"].as_str().unwrap_or("?")
    ));

    client.say("3. next sign-in on the same device: no call");
    let c = client
        .create(
            "/v1/challenges",
            serde_json::json!({"user_id": "demo-user", "language": code, "trusted_device_token": token}),
        )
        .await?;
    let done = client.follow(&c).await?;
    all_approved &= done["state"] == "approved" && done["reason"] == "trusted_device";
    Ok(all_approved)
}

/// Waits (30 s at most) until the call log has no call in progress.
async fn wait_for_calls_to_end(client: &Client, op: &str) -> anyhow::Result<()> {
    let settled = Instant::now() + Duration::from_secs(30);
    while Instant::now() < settled {
        let (_, busy) = client
            .send(
                reqwest::Method::GET,
                "/v1/calls?outcome=in_progress",
                op,
                None,
            )
            .await?;
        if busy["calls"].as_array().is_none_or(std::vec::Vec::is_empty) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Prints the operator's call log (`GET /v1/calls`, each call's detail), oldest first.
async fn print_call_log(client: &Client, op: &str) -> anyhow::Result<()> {
    client.say("the operator's call log (GET /v1/calls):");
    let (_, calls) = client
        .send(reqwest::Method::GET, "/v1/calls", op, None)
        .await?;
    for call in calls["calls"].as_array().into_iter().flatten().rev() {
        let id = call["id"].as_str().unwrap_or("?");
        let (_, detail) = client
            .send(reqwest::Method::GET, &format!("/v1/calls/{id}"), op, None)
            .await?;
        let keys: Vec<String> = detail["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                format!(
                    "'{}' ({}, {} ms)",
                    k["digit"].as_str().unwrap_or("?"),
                    k["source"].as_str().unwrap_or("?"),
                    k["at_ms"]
                )
            })
            .collect();
        println!(
            "          {id} {} {}: post-dial delay {} ms, answered after {} ms, key {}; RTP sent {} received {} lost {}",
            call["phone_number"].as_str().unwrap_or("?"),
            call["outcome"].as_str().unwrap_or("?"),
            call["post_dial_delay_ms"],
            call["time_to_answer_ms"],
            keys.join(", "),
            call["packets_sent"],
            call["packets_received"],
            call["packets_lost"],
        );
        let timeline: Vec<String> = detail["challenge_events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let at = e["at"].as_str().unwrap_or("");
                format!(
                    "{} {}",
                    at.get(11..23).unwrap_or(at),
                    e["state"].as_str().unwrap_or("?")
                )
            })
            .collect();
        println!("            timeline: {}", timeline.join(" → "));
    }
    Ok(())
}

fn masked(n: &str) -> String {
    store::PhoneNumber::parse(n)
        .map(|p| p.masked())
        .unwrap_or_default()
}
