//! The gateway's configuration file (`sip-config/*.toml`): SIP listeners, trunks, codecs and
//! timers, the calls' media and the verification script's timeouts, and the Entra external
//! authentication provider (`[eam]`, optional). Loading checks everything it can before the
//! gateway starts, and every error names the line it is about and what was expected.
//!
//! `file.rs` holds the tables as written, with their defaults; `check.rs` the checks
//! [`Config::parse`] runs; `settings.rs` what the tables become for the other crates.

mod check;
mod file;
mod settings;
#[cfg(test)]
mod tests;

use std::ops::Range;

use toml::Spanned;

pub use file::*;
pub use settings::{EamSettings, GraphSettings};

/// A configuration error, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

/// The file being parsed: its name for messages, and its text to find the line of a span.
struct Source<'a> {
    text: &'a str,
    path: &'a str,
}

impl Source<'_> {
    /// An error at `span` (`None`, or a default's empty span: no line).
    fn error(&self, span: Option<Range<usize>>, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path.to_string(),
            line: span.and_then(|s| line_of(self.text, &s)),
            reason: reason.into(),
        }
    }

    /// An error about the value `v`, at its line.
    fn at<T>(&self, v: &Spanned<T>, reason: impl Into<String>) -> ConfigError {
        self.error(Some(v.span()), reason)
    }
}

fn line_of(text: &str, span: &Range<usize>) -> Option<usize> {
    (span.end > 0 || span.start > 0)
        .then(|| text[..span.start.min(text.len())].matches('\n').count() + 1)
}

impl Config {
    /// Reads and checks a file; `env` looks up password variables (the process environment
    /// in the gateway, a map in tests).
    pub fn load(
        path: &std::path::Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: shown.clone(),
            line: None,
            reason: e.to_string(),
        })?;
        Config::parse(&text, &shown, env)
    }

    /// Parses and checks the text of a file named `path` (for messages).
    pub fn parse(
        text: &str,
        path: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let src = Source { text, path };
        let config: Config =
            toml::from_str(text).map_err(|e| src.error(e.span(), e.message().trim()))?;
        check::all(&config, &src, env)?;
        Ok(config)
    }
}
