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
    /// Check a configuration file (syntax, values, password variables) and exit.
    CheckConfig {
        /// The configuration file.
        #[arg(long, default_value = "sip-config/callverify.toml")]
        config: PathBuf,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
    let cfg =
        config::Config::load(path, env).map_err(|e| anyhow::anyhow!("bad configuration: {e}"))?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let lang = lang.unwrap_or_else(|| cfg.language());
    let library = media::PromptLibrary::load(&cfg.call.prompts, &[lang])?;
    let prompts = engine::Prompts::from_library(&library, lang)
        .ok_or_else(|| anyhow::anyhow!("prompts for {} are incomplete", lang.code()))?;
    let (ua, trunks) = cfg.sip_settings(env);
    let rt = tokio::runtime::Runtime::new()?;
    let report = rt.block_on(async {
        let (endpoint, _trunk_events) = engine::SipEndpoint::start(ua, trunks).await?;
        let finished = engine::verify(
            &endpoint,
            &cfg.media_settings(),
            cfg.script_settings(),
            prompts,
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
    let ms = |s: u64| s * 1000 / SAMPLE_RATE as u64;
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
