//! The `callverify` binary: the command line and the wiring of the gateway's crates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dtmf::{Detector, DigitEvent, SAMPLE_RATE};

use callverify::config;

/// Telephony voice-verification gateway.
#[derive(Parser, Debug)]
#[command(name = "callverify", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Detect in-band DTMF digits in a WAV file (any rate, depth, channels; PCM, float,
    /// μ-law or A-law) and print one JSON line per digit, then a summary line.
    Dtmf {
        /// The WAV file to read.
        file: PathBuf,
    },
    /// Place one verification call through the configured trunks and print its outcome as
    /// JSON (outcome, keys, timings, RTP figures).
    Call {
        /// The number to call, in E.164 form (+81901234567).
        number: String,
        /// The prompts' language (en, ja); the configuration's default otherwise.
        #[arg(long)]
        lang: Option<media::Language>,
        /// The configuration file.
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
    /// Run the gateway: the HTTP API, the call runner, SIP, the store and /metrics.
    Serve {
        /// The configuration file.
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
        /// Log lines as JSON (one object a line) instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// The whole flow on loopback: the gateway with SQLite, baresip answering and pressing
    /// '#', an enrolment and two sign-ins through the API, each state printed.
    Demo {
        /// The prompts' language (en, ja).
        #[arg(long, default_value = "en")]
        lang: media::Language,
        /// Instead of the scripted flow, serve the /demo page and the /console here (e.g.
        /// 127.0.0.1:8080) until SIGTERM or Ctrl-C, for a person or a browser to use.
        #[arg(long)]
        serve: Option<std::net::SocketAddr>,
    },
    /// Make an API key (its secret is printed once; only its hash is stored); the same as
    /// `api-keys create`.
    CreateApiKey(CreateKey),
    /// The API keys: list them (never a secret), revoke one, make one.
    ApiKeys {
        #[command(subcommand)]
        what: ApiKeysCommand,
    },
    /// Copy the SQLite store into the new file FILE (`VACUUM INTO`), safe while `serve`
    /// runs on it; restore by stopping the gateway and putting the copy in the database's
    /// place. A PostgreSQL store is backed up with pg_dump instead.
    Backup {
        /// The file to write (it must not exist).
        file: PathBuf,
        /// The configuration file (for the store).
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
    /// The Entra EAM provider's signing keys (`[eam]`): list them, or add the next one.
    EamKeys {
        #[command(subcommand)]
        what: EamKeysCommand,
    },
    /// Import users' phones an administrator vouches for from a CSV file with the header
    /// `user_id,number,role[,language]`: each row checked (the number against the policy),
    /// the good ones verified at once, the refused ones told on stderr. Exit status 0 when
    /// nothing was refused, 3 when some rows were, 2 when the file cannot be read.
    ImportPhones {
        /// The CSV file (at most 100,000 rows, lines of at most 1 KiB).
        file: PathBuf,
        /// Check every row, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// The configuration file (for the store, the policy and the default language).
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
    /// Check a configuration file (syntax, values, password variables) and exit.
    CheckConfig {
        /// The configuration file.
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
}

/// `create-api-key` and `api-keys create`.
#[derive(clap::Args, Debug)]
struct CreateKey {
    /// A name for people.
    name: String,
    /// `service` (identity services) or `operator` (the call log and the API keys).
    #[arg(long, default_value = "service")]
    kind: String,
    /// A service key that may replace a user's verified phone without that phone's
    /// approval, and remove verified phones (for the identity service's administrators).
    #[arg(long)]
    phone_admin: bool,
    /// How the challenges of this key are confirmed when a request does not say:
    /// `pound`, `keypad_code` or `spoken_code` (default: the gateway's `[call]
    /// confirmation`).
    #[arg(long)]
    confirmation: Option<String>,
    /// The configuration file (for the store).
    #[arg(long, default_value = "sip-config/callverify.toml")]
    config: PathBuf,
}

#[derive(Subcommand, Debug)]
enum ApiKeysCommand {
    /// Every key, revoked ones included: id, name, kind, when made, last used (its newest
    /// challenge or refused attempt kept), when revoked, flags. Never a secret.
    List {
        /// One JSON object (as `GET /v1/api-keys` answers) instead of a table.
        #[arg(long)]
        json: bool,
        /// The configuration file (for the store).
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
    /// Revoke key ID (`key_…`): refused at once by every node. Exit status 0 when revoked
    /// now, 3 when no key has that id, 4 when it was revoked already.
    Revoke {
        /// The key's id, as `api-keys list` shows it.
        id: String,
        /// The configuration file (for the store).
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
    /// Make an API key (as `create-api-key`).
    Create(CreateKey),
}

/// The store's URL in `cfg` (from its `url_env` variable when it names one).
fn store_url(cfg: &config::Config) -> anyhow::Result<String> {
    cfg.store_url(|v| std::env::var(v).ok())
        .map_err(|e| anyhow::anyhow!(e))
}

/// The store of the configuration at `path`, opened on a runtime of its own.
fn open_store(path: &std::path::Path) -> anyhow::Result<(tokio::runtime::Runtime, store::Store)> {
    let url = store_url(&load(path)?)?;
    let rt = tokio::runtime::Runtime::new()?;
    let store = rt.block_on(store::Store::open(&url))?;
    Ok((rt, store))
}

/// `callverify api-keys list|revoke|create`: the exit status.
fn api_keys(what: &ApiKeysCommand) -> anyhow::Result<u8> {
    use callverify::keys;
    match what {
        ApiKeysCommand::Create(k) => create_api_key(k).map(|()| 0),
        ApiKeysCommand::List { json, config } => {
            let (rt, store) = open_store(config)?;
            let entries = rt.block_on(store.api_keys())?;
            let list = api::keys::ApiKeyList::of(&entries);
            if *json {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                print!("{}", keys::table(&list.api_keys));
            }
            Ok(0)
        }
        ApiKeysCommand::Revoke { id, config } => {
            let (rt, store) = open_store(config)?;
            match rt.block_on(store.revoke_api_key_by_id(id, store::now_ms()))? {
                store::Revocation::Revoked(e) => {
                    println!(
                        "revoked {} ({}, {}): refused from now on; its open event streams \
                         and long polls end within {} s",
                        e.key.id,
                        e.key.name,
                        e.key.kind.as_str(),
                        api::keys::KEY_RECHECK.as_secs()
                    );
                    Ok(0)
                }
                store::Revocation::AlreadyRevoked(e) => {
                    eprintln!(
                        "callverify api-keys revoke: {} was revoked already, at {}",
                        e.key.id,
                        e.revoked_at_ms.map(api::rfc3339).unwrap_or_default()
                    );
                    Ok(keys::EXIT_REVOKED_ALREADY)
                }
                store::Revocation::Unknown => {
                    eprintln!(
                        "callverify api-keys revoke: no API key has the id {id:?} (see \
                         callverify api-keys list)"
                    );
                    Ok(keys::EXIT_UNKNOWN_KEY)
                }
            }
        }
    }
}

/// `callverify backup FILE`.
fn backup(file: &std::path::Path, path: &std::path::Path) -> anyhow::Result<()> {
    // Not opened as a store: opening would migrate it.
    let url = store_url(&load(path)?)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(store::backup_sqlite(&url, file))?;
    let size = std::fs::metadata(file).map_or(0, |m| m.len());
    println!("{}: a copy of the store ({size} bytes)", file.display());
    Ok(())
}

#[derive(Subcommand, Debug)]
enum EamKeysCommand {
    /// Each key: its id, when it was made, from when it signs, whether it signs and is
    /// published now.
    List {
        /// The configuration file (for `[eam]` and the store).
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
    /// Publishes the next key at once; it signs only after `[eam] key_publish_hours` (Entra
    /// caches the provider's keys for a day or more), unless `--now`.
    Rotate {
        /// Sign with the new key at once (after a compromise of the old one: tokens Entra
        /// validates with its cached keys fail until it refreshes them).
        #[arg(long)]
        now: bool,
        /// The configuration file (for `[eam]` and the store).
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
}

/// `callverify eam-keys …`: what to print.
fn eam_keys(what: &EamKeysCommand) -> anyhow::Result<String> {
    let path = match what {
        EamKeysCommand::List { config } | EamKeysCommand::Rotate { config, .. } => config,
    };
    let cfg = load(path)?;
    let env = |v: &str| std::env::var(v).ok();
    let eam = cfg
        .eam_settings(env)
        .map_err(|e| anyhow::anyhow!(e))?
        .ok_or_else(|| anyhow::anyhow!("{} has no [eam] section", path.display()))?;
    // The keys are sealed under the token secret (and only that secret is needed here).
    let var = &cfg.api.token_secret_env;
    let secret = match env(var) {
        Some(v) if v.len() >= 32 => v.into_bytes(),
        Some(_) => anyhow::bail!("{var} must hold at least 32 bytes"),
        None => anyhow::bail!("{var} is not set (the EAM keys are sealed with it)"),
    };
    let url = cfg.store_url(env).map_err(|e| anyhow::anyhow!(e))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = store::Store::open(&url).await?;
        match what {
            EamKeysCommand::List { .. } => callverify::eam::list(&eam, &store, &secret).await,
            EamKeysCommand::Rotate { now, .. } => {
                callverify::eam::rotate(&eam, &store, &secret, *now).await
            }
        }
    })
}

/// One detected digit, as printed.
#[derive(serde::Serialize)]
struct DigitLine {
    digit: String,
    start_ms: u64,
    end_ms: u64,
}

/// The closing line: every digit in order.
#[derive(serde::Serialize)]
struct Summary {
    digits: String,
}

fn init_logs(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<config::Config> {
    config::Config::load(path, |v| std::env::var(v).ok())
        .map_err(|e| anyhow::anyhow!("bad configuration: {e}"))
}

/// The exit status of `serve` when a core task stopped (EX_SOFTWARE): restart it.
const EXIT_TASK_STOPPED: u8 = 70;

fn serve(path: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let env = |v: &str| std::env::var(v).ok();
    let api_cfg = cfg.api_settings(env).map_err(|e| anyhow::anyhow!(e))?;
    let url = cfg.store_url(env).map_err(|e| anyhow::anyhow!(e))?;
    init_logs(json, "info");
    api::install_crypto_provider();
    let systemd = callverify::systemd::Notifier::from_env();
    systemd.notify("STATUS=starting: the store, the prompts, the listeners");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let gw = callverify::gateway::Gateway::start(&cfg, api_cfg, &url, None).await?;
        // The listeners are bound and the store migrated: /readyz answers ready from now.
        systemd.notify(&format!("READY=1\nSTATUS=serving (API on {})", gw.api_addr));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // Pings while every core task runs; the ping comes from the runtime that runs them,
        // so a stuck runtime stops it too.
        let mut ping = tokio::time::interval(
            systemd
                .watchdog_every()
                .unwrap_or(std::time::Duration::from_secs(3600)),
        );
        {
            let failed = gw.failed();
            tokio::pin!(failed);
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                    _ = ping.tick(), if systemd.watchdog_every().is_some() => {
                        if gw.failure().is_none() {
                            systemd.notify("WATCHDOG=1");
                        }
                    }
                    why = &mut failed => {
                        tracing::error!(
                            reason = %why,
                            "a core task stopped: exiting for the supervisor to restart the gateway"
                        );
                        systemd.notify(&format!("STATUS=a core task stopped: {why}"));
                        // Half a second for /readyz to answer 503 to whoever watches it, then
                        // out: calls in progress cannot be trusted to finish; they become
                        // interrupted at the next start (or when their claims lapse).
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        std::process::exit(i32::from(EXIT_TASK_STOPPED));
                    }
                }
            }
        }
        systemd.notify("STOPPING=1\nSTATUS=stopping: calls in progress may finish (up to 60 s)");
        tracing::info!("stopping: no new challenges; calls in progress may finish (up to 60 s)");
        gw.shutdown(std::time::Duration::from_secs(60)).await;
        anyhow::Ok(())
    })
}

fn create_api_key(k: &CreateKey) -> anyhow::Result<()> {
    let (name, kind, phone_admin, path) = (&k.name, &k.kind, k.phone_admin, &k.config);
    let confirmation = k.confirmation.as_deref();
    let Some(kind) = store::KeyKind::from_name(kind) else {
        anyhow::bail!("kind {kind:?}: expected service or operator");
    };
    let confirmation = match confirmation {
        None => None,
        Some(c) => match store::Confirmation::from_name(c) {
            Some(_) if kind != store::KeyKind::Service => {
                anyhow::bail!("--confirmation is for service keys")
            }
            Some(m) => Some(m),
            None => {
                anyhow::bail!("confirmation {c:?}: expected pound, keypad_code or spoken_code")
            }
        },
    };
    if phone_admin && kind != store::KeyKind::Service {
        anyhow::bail!("--phone-admin is for service keys");
    }
    let (rt, store) = open_store(path)?;
    let (key, secret) = rt.block_on(async {
        let (key, secret) = store
            .create_api_key_with(name, kind, phone_admin, store::now_ms())
            .await?;
        if confirmation.is_some() {
            store.set_key_confirmation(&key.id, confirmation).await?;
        }
        anyhow::Ok((key, secret))
    })?;
    let admin = match (key.phone_admin, confirmation) {
        (true, Some(c)) => format!(", phone_admin, confirmation {c}"),
        (true, None) => ", phone_admin".to_string(),
        (false, Some(c)) => format!(", confirmation {c}"),
        (false, None) => String::new(),
    };
    eprintln!(
        "API key {} ({name}{admin}); its secret, shown once:",
        key.id
    );
    println!("{secret}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, json_logs } => match serve(&config, json_logs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("callverify serve: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Demo { lang, serve } => {
            init_logs(false, "warn");
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("callverify demo: {e}");
                    return ExitCode::from(2);
                }
            };
            match rt.block_on(callverify::demo::run(lang, serve)) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("callverify demo: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::CreateApiKey(k) => match create_api_key(&k) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("callverify create-api-key: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::ApiKeys { what } => match api_keys(&what) {
            Ok(status) => ExitCode::from(status),
            Err(e) => {
                eprintln!("callverify api-keys: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Backup { file, config } => match backup(&file, &config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("callverify backup: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Call {
            number,
            lang,
            config,
        } => match call(&number, lang, &config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("callverify call: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Dtmf { file } => match dtmf_file(&file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("callverify dtmf: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::EamKeys { what } => match eam_keys(&what) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("callverify eam-keys: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::ImportPhones {
            file,
            dry_run,
            config,
        } => match import_phones(&file, dry_run, &config) {
            Ok(status) => ExitCode::from(status),
            Err(e) => {
                eprintln!("callverify import-phones: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::CheckConfig { config } => match config::Config::load(&config, |v| {
            std::env::var(v).ok()
        }) {
            Ok(c) => {
                let names: Vec<&str> = c.trunks.iter().map(|t| t.name.get_ref().as_str()).collect();
                println!(
                    "{}: ok ({} listeners, trunks: {})",
                    config.display(),
                    c.sip.listen.get_ref().len(),
                    names.join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("callverify: bad configuration: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// The exit status of `import-phones` when some rows were refused (the others imported).
const EXIT_ROWS_REFUSED: u8 = 3;

/// `callverify import-phones`: the exit status (0, or [`EXIT_ROWS_REFUSED`]), or why the
/// file or the store could not be used at all.
fn import_phones(
    file: &std::path::Path,
    dry_run: bool,
    path: &std::path::Path,
) -> anyhow::Result<u8> {
    use callverify::import;
    let cfg = load(path)?;
    let url = store_url(&cfg)?;
    let policy = cfg.policy();
    let checks = import::Checks {
        policy: &policy,
        default_language: cfg.language(),
    };
    let (rows, refused) = std::fs::File::open(file)
        .map_err(import::FileError::Read)
        .and_then(|f| import::read_rows(std::io::BufReader::new(f), &checks))
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    for r in &refused {
        eprintln!("{r}");
    }
    let rt = tokio::runtime::Runtime::new()?;
    let counts = rt.block_on(async {
        let store = store::Store::open(&url).await?;
        anyhow::Ok(import::import(&store, &rows, dry_run).await?)
    })?;
    let would = if dry_run { "would import" } else { "imported" };
    println!(
        "{would} {} ({} replaced, {} unchanged), refused {}",
        counts.imported,
        counts.replaced,
        counts.unchanged,
        refused.len()
    );
    Ok(if refused.is_empty() {
        0
    } else {
        EXIT_ROWS_REFUSED
    })
}

/// The outcome line of `callverify call`.
#[derive(serde::Serialize)]
struct CallLine<'a> {
    number: String,
    language: &'static str,
    #[serde(flatten)]
    report: &'a engine::CallReport,
}

fn call(number: &str, lang: Option<media::Language>, path: &std::path::Path) -> anyhow::Result<()> {
    let number =
        store::PhoneNumber::parse(number).map_err(|e| anyhow::anyhow!("{number:?}: {e}"))?;
    let env = |v: &str| std::env::var(v).ok();
    let cfg = load(path)?;
    init_logs(false, "info");
    let lang = lang.unwrap_or_else(|| cfg.language());
    let library = media::PromptLibrary::load(&cfg.call.prompts, &[lang])?;
    let prompts = engine::Prompts::from_library(&library, lang)
        .ok_or_else(|| anyhow::anyhow!("prompts for {} are incomplete", lang.code()))?;
    let (ua, trunks) = cfg.sip_settings(env);
    let tls = cfg.tls_settings()?;
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(async {
        let (endpoint, _trunk_events) = engine::SipEndpoint::start_tls(ua, trunks, tls).await?;
        let finished = engine::verify(
            &endpoint,
            &cfg.media_settings(),
            cfg.script_settings(),
            prompts,
            engine::Confirmation::Pound,
            &number,
            None,
            std::future::pending(),
        )
        .await?;
        endpoint.shutdown().await;
        anyhow::Ok(finished.report)
    })?;
    let line = CallLine {
        number: number.masked(),
        language: lang.code(),
        report: &report,
    };
    println!("{}", serde_json::to_string(&line)?);
    Ok(())
}

fn dtmf_file(path: &std::path::Path) -> anyhow::Result<()> {
    let samples = media::load_wav_file(path)?;
    let ms = |s: u64| s * 1000 / u64::from(SAMPLE_RATE);
    let mut det = Detector::new();
    let mut out = std::io::stdout().lock();
    let mut digits = String::new();
    let mut print = |e: DigitEvent, out: &mut dyn Write| -> std::io::Result<()> {
        if let DigitEvent::Released { digit, start, end } = e {
            digits.push(digit.as_char());
            let line = DigitLine {
                digit: digit.to_string(),
                start_ms: ms(start),
                end_ms: ms(end),
            };
            writeln!(
                out,
                "{}",
                serde_json::to_string(&line).expect("serialisable")
            )?;
        }
        Ok(())
    };
    for e in det.push(&samples) {
        print(e, &mut out)?;
    }
    if let Some(e) = det.finish() {
        print(e, &mut out)?;
    }
    writeln!(
        out,
        "{}",
        serde_json::to_string(&Summary { digits }).expect("serialisable")
    )?;
    Ok(())
}
