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
