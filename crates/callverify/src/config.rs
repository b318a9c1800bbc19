//! The gateway's configuration file (`sip-config/*.toml`): SIP listeners, trunks, codecs and
//! timers, the calls' media and the verification script's timeouts. Loading checks everything it can before the gateway starts, and every error names
//! the line it is about and what was expected.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// A SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP (RFC 3261 §18 with retransmissions).
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP, with the trunk's certificate checked.
    Tls,
}

impl Transport {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

impl From<Transport> for sip::Transport {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Udp => sip::Transport::Udp,
            Transport::Tcp => sip::Transport::Tcp,
            Transport::Tls => sip::Transport::Tls,
        }
    }
}

/// A listening socket, written `transport:address:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    /// The transport.
    pub transport: Transport,
    /// The local address.
    pub addr: SocketAddr,
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (t, addr) = s
            .split_once(':')
            .ok_or_else(|| format!("expected transport:address:port, found {s:?}"))?;
        let transport = match t {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => {
                return Err(format!(
                    "unknown transport {other:?} in {s:?}, expected udp, tcp or tls"
                ));
            }
        };
        let addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not address:port (IPv6 in brackets)"))?;
        Ok(Listen { transport, addr })
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A codec name as written in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum CodecName {
    /// G.711 μ-law.
    #[serde(rename = "PCMU")]
    Pcmu,
    /// G.711 A-law.
    #[serde(rename = "PCMA")]
    Pcma,
}

impl From<CodecName> for media::Codec {
    fn from(c: CodecName) -> Self {
        match c {
            CodecName::Pcmu => media::Codec::Pcmu,
            CodecName::Pcma => media::Codec::Pcma,
        }
    }
}

/// RFC 3261 timers and the ring timeout.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timers {
    /// T1 in milliseconds.
    #[serde(default = "default_t1")]
    pub t1_ms: Spanned<u64>,
    /// T2 in milliseconds.
    #[serde(default = "default_t2")]
    pub t2_ms: Spanned<u64>,
    /// Seconds a call may ring before it is cancelled.
    #[serde(default = "default_ring")]
    pub ring_timeout_s: Spanned<u64>,
}

fn default_t1() -> Spanned<u64> {
    Spanned::new(0..0, 500)
}
fn default_t2() -> Spanned<u64> {
    Spanned::new(0..0, 4000)
}
fn default_ring() -> Spanned<u64> {
    Spanned::new(0..0, 45)
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1_ms: default_t1(),
            t2_ms: default_t2(),
            ring_timeout_s: default_ring(),
        }
    }
}

/// The `[sip]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sip {
    /// Listening sockets.
    pub listen: Spanned<Vec<Listen>>,
    /// Codecs offered, in order of preference.
    #[serde(default = "default_codecs")]
    pub codecs: Spanned<Vec<CodecName>>,
    /// The User-Agent header.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
    /// Timers.
    #[serde(default)]
    pub timers: Timers,
    /// The certificate TLS listeners present.
    pub tls: Option<Spanned<SipTls>>,
}

/// The `[sip.tls]` table: what this gateway presents to peers that connect to its TLS
/// listeners (in-dialog requests from a trunk).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTls {
    /// The certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
}

/// Whether a trunk's calls use SRTP (RFC 3711) with SDES keys (RFC 4568).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtpName {
    /// Plain RTP.
    #[default]
    Off,
    /// Offered as RTP/AVP with keys: SRTP when the answer takes it, plain RTP otherwise.
    Optional,
    /// Offered as RTP/SAVP: a call whose answer has no keys is hung up.
    Mandatory,
}

fn default_codecs() -> Spanned<Vec<CodecName>> {
    Spanned::new(0..0, vec![CodecName::Pcmu, CodecName::Pcma])
}
fn default_user_agent() -> String {
    "callverify".into()
}

/// One `[[trunk]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trunk {
    /// Unique name, used in logs and metrics.
    pub name: Spanned<String>,
    /// Where requests are sent.
    pub address: SocketAddr,
    /// How.
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// Domain for From and Request-URI (defaults to the address's host).
    pub domain: Option<String>,
    /// User part of From.
    #[serde(default = "default_from_user")]
    pub from_user: String,
    /// Digest username.
    pub username: Option<Spanned<String>>,
    /// Environment variable holding the Digest password.
    pub password_env: Option<Spanned<String>>,
    /// REGISTER to the trunk.
    #[serde(default)]
    pub register: bool,
    /// OPTIONS keep-alive interval in seconds (0 = off).
    #[serde(default)]
    pub options_interval_s: u64,
    /// TLS: the name the trunk's certificate must carry (defaults to the domain's host).
    pub tls_server_name: Option<Spanned<String>>,
    /// TLS: the CAs (PEM) the trunk's certificate must chain to (defaults to the system's).
    pub tls_ca_file: Option<Spanned<PathBuf>>,
    /// SRTP with SDES keys (only over TLS, which keeps the keys secret).
    #[serde(default = "default_srtp")]
    pub srtp: Spanned<SrtpName>,
    /// Where its responses come from: `address` (only its address and port, the default) or
    /// `host` (any port of its host).
    #[serde(default)]
    pub responses_from: ResponsesFromName,
}

/// Where a trunk's responses are accepted from, as written in the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponsesFromName {
    /// Its address and port (over TCP and TLS: the connection the request went on).
    #[default]
    Address,
    /// Any port of its host.
    Host,
}

fn default_from_user() -> String {
    "callverify".into()
}

impl Trunk {
    /// The domain of its Request-URI and From: as written, or the address (without the port
    /// when it is 5060).
    fn domain(&self) -> String {
        self.domain
            .clone()
            .unwrap_or_else(|| match self.address.port() {
                5060 => sip::message::host(self.address.ip()),
                _ => self.address.to_string(),
            })
    }
}

fn default_srtp() -> Spanned<SrtpName> {
    Spanned::new(0..0, SrtpName::Off)
}

fn default_transport() -> Transport {
    Transport::Udp
}

/// A port range written `first-last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port.
    pub last: u16,
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || {
            serde::de::Error::custom(format!(
                "expected first-last (e.g. 16384-32767), found {s:?}"
            ))
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first = a.trim().parse().map_err(|_| bad())?;
        let last = b.trim().parse().map_err(|_| bad())?;
        Ok(PortRange { first, last })
    }
}

/// How the far end's RTP source is accepted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LatchingName {
    /// Only the SDP answer's address and port.
    #[default]
    Strict,
    /// The first packet from the answer's IP address latches its port (NAT).
    SameHost,
}

/// The `[media]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    /// Local address for RTP; defaults to the first SIP listener's address.
    pub address: Option<IpAddr>,
    /// Ports for RTP/RTCP pairs.
    #[serde(default = "default_rtp_ports")]
    pub rtp_ports: Spanned<PortRange>,
    /// Which sources may start the far end's stream.
    #[serde(default)]
    pub latching: LatchingName,
    /// Seconds between RTCP sender reports.
    #[serde(default = "default_rtcp_interval")]
    pub rtcp_interval_s: Spanned<u64>,
}

fn default_rtp_ports() -> Spanned<PortRange> {
    Spanned::new(
        0..0,
        PortRange {
            first: 16384,
            last: 32767,
        },
    )
}
fn default_rtcp_interval() -> Spanned<u64> {
    Spanned::new(0..0, 5)
}

impl Default for Media {
    fn default() -> Self {
        Media {
            address: None,
            rtp_ports: default_rtp_ports(),
            latching: LatchingName::default(),
            rtcp_interval_s: default_rtcp_interval(),
        }
    }
}

/// The `[call.amd]` table: answering-machine detection.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amd {
    /// Whether to detect answering machines.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Continuous speech longer than this (ms) is a recorded greeting.
    #[serde(default = "default_max_greeting")]
    pub max_greeting_ms: Spanned<u64>,
    /// Silence shorter than this (ms) does not end a run of speech.
    #[serde(default = "default_gap")]
    pub gap_ms: Spanned<u64>,
    /// Only speech starting this soon (ms) after the answer is judged.
    #[serde(default = "default_window")]
    pub window_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_max_greeting() -> Spanned<u64> {
    Spanned::new(0..0, 4000)
}
fn default_gap() -> Spanned<u64> {
    Spanned::new(0..0, 600)
}
fn default_window() -> u64 {
    5000
}

impl Default for Amd {
    fn default() -> Self {
        Amd {
            enabled: true,
            max_greeting_ms: default_max_greeting(),
            gap_ms: default_gap(),
            window_ms: default_window(),
        }
    }
}

/// The `[call]` table: the verification script.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSettings {
    /// Directory with `<lang>/<prompt>.wav` (relative paths: from the working directory).
    #[serde(default = "default_prompts")]
    pub prompts: PathBuf,
    /// Language when a call does not name one.
    #[serde(default = "default_language")]
    pub language: Spanned<String>,
    /// How many times the instructions play.
    #[serde(default = "default_repeats")]
    pub repeats: Spanned<u32>,
    /// Milliseconds of silence between two plays of the instructions.
    #[serde(default = "default_pause")]
    pub pause_ms: u64,
    /// Seconds from the answer to the first key before `no_input`.
    #[serde(default = "default_first_key")]
    pub first_key_timeout_s: Spanned<u64>,
    /// Seconds after a key other than '#' before `no_input`.
    #[serde(default = "default_digit_timeout")]
    pub digit_timeout_s: Spanned<u64>,
    /// Seconds for the whole call, from the INVITE.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_s: Spanned<u64>,
    /// Answering-machine detection.
    #[serde(default)]
    pub amd: Amd,
    /// The most calls this node places at once; more challenges wait queued (for this
    /// node or another on the same PostgreSQL).
    #[serde(default = "default_max_calls")]
    pub max_calls: usize,
    /// Seconds a node's claim on a challenge it calls holds unless renewed: a node that
    /// stops has its calls marked `interrupted` this long after.
    #[serde(default = "default_claim_lease")]
    pub claim_lease_s: u64,
}

fn default_max_calls() -> usize {
    500
}
fn default_claim_lease() -> u64 {
    15
}

fn default_prompts() -> PathBuf {
    "prompts".into()
}
fn default_language() -> Spanned<String> {
    Spanned::new(0..0, "en".into())
}
fn default_repeats() -> Spanned<u32> {
    Spanned::new(0..0, 3)
}
fn default_pause() -> u64 {
    1000
}
fn default_first_key() -> Spanned<u64> {
    Spanned::new(0..0, 40)
}
fn default_digit_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}
fn default_call_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 120)
}

impl Default for CallSettings {
    fn default() -> Self {
        CallSettings {
            prompts: default_prompts(),
            language: default_language(),
            repeats: default_repeats(),
            pause_ms: default_pause(),
            first_key_timeout_s: default_first_key(),
            digit_timeout_s: default_digit_timeout(),
            call_timeout_s: default_call_timeout(),
            amd: Amd::default(),
            max_calls: default_max_calls(),
            claim_lease_s: default_claim_lease(),
        }
    }
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// SIP settings.
    pub sip: Sip,
    /// Trunks, in the order they are tried.
    #[serde(rename = "trunk", default)]
    pub trunks: Vec<Trunk>,
    /// The calls' media.
    #[serde(default)]
    pub media: Media,
    /// The verification script.
    #[serde(default)]
    pub call: CallSettings,
    /// The database.
    #[serde(default)]
    pub store: StoreSettings,
    /// The HTTP API.
    #[serde(default)]
    pub api: ApiSettings,
    /// Toll-fraud and abuse limits.
    #[serde(default)]
    pub policy: PolicySettings,
    /// The `/demo` page.
    #[serde(default)]
    pub demo: DemoSettings,
}

/// The `[demo]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSettings {
    /// The only numbers the `/demo` page registers (E.164).
    #[serde(default = "no_numbers")]
    pub numbers: Spanned<Vec<String>>,
}

fn no_numbers() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

impl Default for DemoSettings {
    fn default() -> Self {
        DemoSettings {
            numbers: no_numbers(),
        }
    }
}

/// The `[store]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://PATH` or `postgres://…` (without a password: see `url_env`).
    #[serde(default = "default_store_url")]
    pub url: String,
    /// If set, the URL is read from this environment variable instead (it may hold a
    /// password).
    pub url_env: Option<String>,
    /// Days the call log, state changes, webhook attempts and decided challenges' whole
    /// numbers are kept.
    #[serde(default = "default_retention_days")]
    pub retention_days: Spanned<u64>,
}

fn default_retention_days() -> Spanned<u64> {
    Spanned::new(0..0, 90)
}

fn default_store_url() -> String {
    "sqlite://callverify.db".into()
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: default_store_url(),
            url_env: None,
            retention_days: default_retention_days(),
        }
    }
}

/// The `[api]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Where the HTTP API listens.
    #[serde(default = "default_api_listen")]
    pub listen: std::net::SocketAddr,
    /// The environment variable with the secret of poll and trusted-device tokens (at
    /// least 32 bytes; the same on every node).
    #[serde(default = "default_token_secret_env")]
    pub token_secret_env: String,
    /// The environment variable with the webhook signing secret.
    #[serde(default = "default_webhook_secret_env")]
    pub webhook_secret_env: String,
    /// Seconds a challenge may wait for its call before it expires.
    #[serde(default = "default_ttl")]
    pub challenge_ttl_s: Spanned<u64>,
    /// The longest long poll, in seconds.
    #[serde(default = "default_max_wait")]
    pub max_wait_s: u64,
    /// How long "don't ask again" trusts a device, in days.
    #[serde(default = "default_trusted_days")]
    pub trusted_device_days: Spanned<u64>,
    /// Call a user's fallback phone when the primary ends no_answer or busy.
    #[serde(default = "yes")]
    pub call_fallback: bool,
    /// Webhook attempts before giving up.
    #[serde(default = "default_webhook_attempts")]
    pub webhook_max_attempts: u32,
    /// Serve the `/demo` login page and its backend, which makes challenges with a service
    /// key of its own: anyone who reaches it can have a number called (within the policy).
    #[serde(default)]
    pub demo_page: bool,
    /// Take `http://` callback URLs too (webhooks then travel unencrypted).
    #[serde(default)]
    pub allow_http_callbacks: bool,
    /// Networks callbacks may reach although they are not public (`"10.1.0.0/16"`).
    #[serde(default = "no_networks")]
    pub callback_allow: Spanned<Vec<String>>,
    /// Seconds a client may take to send a request's headers.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_s: Spanned<u64>,
    /// Seconds a request may take to be answered (long polls and event streams excepted),
    /// and a response may wait for the client to read it.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_s: Spanned<u64>,
    /// HTTP connections open at once, at most.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<usize>,
    /// Long polls and event streams one poll token may hold open at once.
    #[serde(default = "default_streams_per_poll_token")]
    pub max_streams_per_poll_token: Spanned<u32>,
    /// Long polls and event streams one API key may hold open at once.
    #[serde(default = "default_streams_per_api_key")]
    pub max_streams_per_api_key: Spanned<u32>,
}

fn default_header_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}
fn default_request_timeout() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_max_connections() -> Spanned<usize> {
    Spanned::new(0..0, 4096)
}
fn default_streams_per_poll_token() -> Spanned<u32> {
    Spanned::new(0..0, 4)
}
fn default_streams_per_api_key() -> Spanned<u32> {
    Spanned::new(0..0, 1000)
}

fn no_networks() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

fn default_api_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_token_secret_env() -> String {
    "CALLVERIFY_TOKEN_SECRET".into()
}
fn default_webhook_secret_env() -> String {
    "CALLVERIFY_WEBHOOK_SECRET".into()
}
fn default_ttl() -> Spanned<u64> {
    Spanned::new(0..0, 300)
}
fn default_max_wait() -> u64 {
    25
}
fn default_trusted_days() -> Spanned<u64> {
    Spanned::new(0..0, 14)
}
fn default_webhook_attempts() -> u32 {
    8
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: default_api_listen(),
            token_secret_env: default_token_secret_env(),
            webhook_secret_env: default_webhook_secret_env(),
            challenge_ttl_s: default_ttl(),
            max_wait_s: default_max_wait(),
            trusted_device_days: default_trusted_days(),
            call_fallback: true,
            webhook_max_attempts: default_webhook_attempts(),
            demo_page: false,
            allow_http_callbacks: false,
            callback_allow: no_networks(),
            header_timeout_s: default_header_timeout(),
            request_timeout_s: default_request_timeout(),
            max_connections: default_max_connections(),
            max_streams_per_poll_token: default_streams_per_poll_token(),
            max_streams_per_api_key: default_streams_per_api_key(),
        }
    }
}

/// A rate limit in the file: `{ max = 5, window_s = 600 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Challenges at most…
    pub max: u32,
    /// …in this many seconds.
    pub window_s: u64,
}

/// The `[policy]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// ISO 3166 codes of the countries that may be called, or `["*"]` for every country; it
    /// must be given.
    pub allowed_countries: Option<Spanned<Vec<String>>>,
    /// The types of number that may be called (libphonenumber's: `mobile`, `fixed_line`, …);
    /// absent: mobile, fixed_line and fixed_line_or_mobile.
    pub allowed_number_types: Option<Spanned<Vec<String>>>,
    /// Per number.
    #[serde(default = "default_per_number")]
    pub per_number: Limit,
    /// Per user.
    #[serde(default = "default_per_user")]
    pub per_user: Limit,
    /// Per API key.
    #[serde(default = "default_per_key")]
    pub per_api_key: Limit,
    /// Per country, with other caps for some countries.
    #[serde(default = "default_per_country")]
    pub per_country: Spanned<CountryLimitSettings>,
    /// Challenges waiting for or in a call, at most.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_calls: u32,
    /// Hours a fraud report (0#) blocks calls for the user and the number.
    #[serde(default = "default_fraud_block_hours")]
    pub fraud_block_hours: Spanned<u64>,
}

/// The cap per country in the file: `{ max = 200, window_s = 3600, overrides = { JP = 1000 } }`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryLimitSettings {
    /// Calls to one country at most…
    pub max: u32,
    /// …in this many seconds.
    pub window_s: u64,
    /// Another cap (in the same window) for these countries.
    #[serde(default)]
    pub overrides: std::collections::BTreeMap<String, u32>,
}

fn default_per_number() -> Limit {
    Limit {
        max: 5,
        window_s: 600,
    }
}
fn default_per_user() -> Limit {
    Limit {
        max: 10,
        window_s: 600,
    }
}
fn default_per_key() -> Limit {
    Limit {
        max: 6000,
        window_s: 60,
    }
}
fn default_per_country() -> Spanned<CountryLimitSettings> {
    Spanned::new(
        0..0,
        CountryLimitSettings {
            max: 200,
            window_s: 3600,
            overrides: Default::default(),
        },
    )
}
fn default_max_concurrent() -> u32 {
    1000
}
fn default_fraud_block_hours() -> Spanned<u64> {
    Spanned::new(0..0, 24)
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            allowed_countries: None,
            allowed_number_types: None,
            per_number: default_per_number(),
            per_user: default_per_user(),
            per_api_key: default_per_key(),
            per_country: default_per_country(),
            max_concurrent_calls: default_max_concurrent(),
            fraud_block_hours: default_fraud_block_hours(),
        }
    }
}

fn is_country_code(c: &str) -> bool {
    c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())
}

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

/// The host of a domain written `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_of(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match domain.split_once(':') {
        Some((host, port)) if !port.contains(':') => host,
        _ => domain,
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
        let err = |span: Option<Range<usize>>, reason: String| ConfigError {
            path: path.to_string(),
            line: span.and_then(|s| line_of(text, &s)),
            reason,
        };
        let config: Config =
            toml::from_str(text).map_err(|e| err(e.span(), e.message().trim().to_string()))?;

        let sip = &config.sip;
        if sip.listen.get_ref().is_empty() {
            return Err(err(
                Some(sip.listen.span()),
                "sip.listen is empty: give at least one transport:address:port".into(),
            ));
        }
        if let Some(l) = sip
            .listen
            .get_ref()
            .iter()
            .find(|l| l.addr.ip().is_unspecified())
        {
            return Err(err(
                Some(sip.listen.span()),
                format!(
                    "listen address {} is unspecified: give the address peers reach (it goes into Via and Contact)",
                    l.addr
                ),
            ));
        }
        if sip.codecs.get_ref().is_empty() {
            return Err(err(
                Some(sip.codecs.span()),
                "sip.codecs is empty: offer PCMU, PCMA or both".into(),
            ));
        }
        let t = &sip.timers;
        if *t.t1_ms.get_ref() == 0 {
            return Err(err(Some(t.t1_ms.span()), "t1_ms must be above 0".into()));
        }
        if t.t2_ms.get_ref() < t.t1_ms.get_ref() {
            return Err(err(
                Some(t.t2_ms.span()),
                format!(
                    "t2_ms ({}) must be at least t1_ms ({})",
                    t.t2_ms.get_ref(),
                    t.t1_ms.get_ref()
                ),
            ));
        }
        if *t.ring_timeout_s.get_ref() == 0 {
            return Err(err(
                Some(t.ring_timeout_s.span()),
                "ring_timeout_s must be above 0".into(),
            ));
        }
        let tls_listener = sip
            .listen
            .get_ref()
            .iter()
            .any(|l| l.transport == Transport::Tls);
        if tls_listener && sip.tls.is_none() {
            return Err(err(
                Some(sip.listen.span()),
                "a tls: listener needs [sip.tls] with cert_file and key_file".into(),
            ));
        }
        if config.trunks.is_empty() {
            return Err(err(None, "no [[trunk]]: calls need at least one".into()));
        }
        let mut names = HashSet::new();
        for trunk in &config.trunks {
            if trunk.name.get_ref().is_empty() || !names.insert(trunk.name.get_ref().clone()) {
                return Err(err(
                    Some(trunk.name.span()),
                    format!(
                        "trunk name {:?} is empty or used twice",
                        trunk.name.get_ref()
                    ),
                ));
            }
            match (&trunk.username, &trunk.password_env) {
                (Some(_), Some(var)) => {
                    if env(var.get_ref()).is_none_or(|v| v.is_empty()) {
                        return Err(err(
                            Some(var.span()),
                            format!(
                                "trunk {:?}: environment variable {} is not set",
                                trunk.name.get_ref(),
                                var.get_ref()
                            ),
                        ));
                    }
                }
                (Some(u), None) => {
                    return Err(err(
                        Some(u.span()),
                        format!(
                            "trunk {:?}: username without password_env",
                            trunk.name.get_ref()
                        ),
                    ));
                }
                (None, Some(v)) => {
                    return Err(err(
                        Some(v.span()),
                        format!(
                            "trunk {:?}: password_env without username",
                            trunk.name.get_ref()
                        ),
                    ));
                }
                (None, None) => {}
            }
            let family = if trunk.address.is_ipv4() {
                "IPv4"
            } else {
                "IPv6"
            };
            let served = sip.listen.get_ref().iter().any(|l| {
                l.transport == trunk.transport && l.addr.is_ipv4() == trunk.address.is_ipv4()
            });
            if !served {
                return Err(err(
                    Some(trunk.name.span()),
                    format!(
                        "trunk {:?} uses {} over {family} but sip.listen has no such listener",
                        trunk.name.get_ref(),
                        trunk.transport.name(),
                    ),
                ));
            }
            if trunk.transport != Transport::Tls {
                let tls_only = [
                    trunk
                        .tls_server_name
                        .as_ref()
                        .map(|v| (v.span(), "tls_server_name")),
                    trunk
                        .tls_ca_file
                        .as_ref()
                        .map(|v| (v.span(), "tls_ca_file")),
                    (*trunk.srtp.get_ref() != SrtpName::Off).then(|| (trunk.srtp.span(), "srtp")),
                ];
                if let Some((span, key)) = tls_only.into_iter().flatten().next() {
                    return Err(err(
                        Some(span),
                        format!(
                            "trunk {:?}: {key} needs transport = \"tls\" (SDES keys and certificate checks are for TLS)",
                            trunk.name.get_ref()
                        ),
                    ));
                }
            }
            if trunk.register && trunk.username.is_none() {
                return Err(err(
                    Some(trunk.name.span()),
                    format!(
                        "trunk {:?}: register = true needs a username",
                        trunk.name.get_ref()
                    ),
                ));
            }
        }
        config.check_call(&err)?;
        if let Err(e) = config.tls_settings() {
            let span = sip.tls.as_ref().map(|t| t.span());
            return Err(err(span, format!("TLS: {e}")));
        }
        Ok(config)
    }

    fn check_call(
        &self,
        err: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let ports = &self.media.rtp_ports;
        let PortRange { first, last } = *ports.get_ref();
        if first < 1024 || last < first.saturating_add(1) {
            return Err(err(
                Some(ports.span()),
                format!(
                    "rtp_ports {first}-{last}: need first >= 1024 and room for at least one pair"
                ),
            ));
        }
        if *self.media.rtcp_interval_s.get_ref() == 0 {
            return Err(err(
                Some(self.media.rtcp_interval_s.span()),
                "rtcp_interval_s must be above 0".into(),
            ));
        }
        let c = &self.call;
        if c.language.get_ref().parse::<media::Language>().is_err() {
            return Err(err(
                Some(c.language.span()),
                format!(
                    "unknown language {:?}, expected en or ja",
                    c.language.get_ref()
                ),
            ));
        }
        if !(1..=10).contains(c.repeats.get_ref()) {
            return Err(err(
                Some(c.repeats.span()),
                format!("repeats must be 1 to 10, found {}", c.repeats.get_ref()),
            ));
        }
        for (v, name) in [
            (&c.first_key_timeout_s, "first_key_timeout_s"),
            (&c.digit_timeout_s, "digit_timeout_s"),
        ] {
            if *v.get_ref() == 0 {
                return Err(err(Some(v.span()), format!("{name} must be above 0")));
            }
        }
        let ring = *self.sip.timers.ring_timeout_s.get_ref();
        let call = *c.call_timeout_s.get_ref();
        if call <= ring {
            return Err(err(
                Some(c.call_timeout_s.span()),
                format!(
                    "call_timeout_s ({call}) must be longer than sip.timers.ring_timeout_s ({ring})"
                ),
            ));
        }
        if *self.api.challenge_ttl_s.get_ref() == 0 {
            return Err(err(
                Some(self.api.challenge_ttl_s.span()),
                "challenge_ttl_s must be above 0".into(),
            ));
        }
        if *self.api.trusted_device_days.get_ref() > 365 {
            return Err(err(
                Some(self.api.trusted_device_days.span()),
                "trusted_device_days must be at most 365".into(),
            ));
        }
        self.check_policy(err)?;
        self.check_demo(err)?;
        let days = &self.store.retention_days;
        if !(1..=3650).contains(days.get_ref()) {
            return Err(err(
                Some(days.span()),
                format!("retention_days must be 1 to 3650, found {}", days.get_ref()),
            ));
        }
        let a = &self.api;
        for (v, name) in [
            (&a.header_timeout_s, "header_timeout_s"),
            (&a.request_timeout_s, "request_timeout_s"),
        ] {
            if !(1..=3600).contains(v.get_ref()) {
                return Err(err(
                    Some(v.span()),
                    format!("{name} must be 1 to 3600 seconds, found {}", v.get_ref()),
                ));
            }
        }
        if !(1..=1_000_000).contains(a.max_connections.get_ref()) {
            return Err(err(
                Some(a.max_connections.span()),
                format!(
                    "max_connections must be 1 to 1000000, found {}",
                    a.max_connections.get_ref()
                ),
            ));
        }
        for (v, name) in [
            (&a.max_streams_per_poll_token, "max_streams_per_poll_token"),
            (&a.max_streams_per_api_key, "max_streams_per_api_key"),
        ] {
            if *v.get_ref() == 0 {
                return Err(err(
                    Some(v.span()),
                    format!("{name} must be at least 1 (long polls and event streams need it)"),
                ));
            }
        }
        let nets = &self.api.callback_allow;
        if let Some(Err(e)) = nets
            .get_ref()
            .iter()
            .map(|n| api::callback::parse_net(n))
            .find(Result::is_err)
        {
            return Err(err(Some(nets.span()), format!("callback_allow: {e}")));
        }
        let amd = &c.amd;
        if amd.enabled && amd.gap_ms.get_ref() >= amd.max_greeting_ms.get_ref() {
            return Err(err(
                Some(amd.gap_ms.span()),
                format!(
                    "amd.gap_ms ({}) must be shorter than amd.max_greeting_ms ({})",
                    amd.gap_ms.get_ref(),
                    amd.max_greeting_ms.get_ref()
                ),
            ));
        }
        Ok(())
    }
}

impl Config {
    fn check_policy(
        &self,
        err: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let p = &self.policy;
        let Some(list) = &p.allowed_countries else {
            return Err(err(
                None,
                "[policy] has no allowed_countries: list the countries callverify may call \
                 (ISO 3166 codes, e.g. allowed_countries = [\"JP\", \"US\"]), or write \
                 allowed_countries = [\"*\"] to call every country"
                    .into(),
            ));
        };
        let countries = list.get_ref();
        if countries.is_empty() {
            return Err(err(
                Some(list.span()),
                "allowed_countries is empty: no number could be called; list the countries \
                 (e.g. [\"JP\"]) or write [\"*\"] for every country"
                    .into(),
            ));
        }
        if countries.iter().any(|c| c == "*") && countries.len() > 1 {
            return Err(err(
                Some(list.span()),
                "allowed_countries: \"*\" (every country) goes alone".into(),
            ));
        }
        if let Some(bad) = countries
            .iter()
            .find(|c| c.as_str() != "*" && !is_country_code(c))
        {
            return Err(err(
                Some(list.span()),
                format!(
                    "allowed_countries: {bad:?} is not an ISO 3166 code such as \"JP\" (or \"*\" for every country)"
                ),
            ));
        }
        if let Some(types) = &p.allowed_number_types {
            if types.get_ref().is_empty() {
                return Err(err(
                    Some(types.span()),
                    "allowed_number_types is empty: no number could be called".into(),
                ));
            }
            if let Some(bad) = types
                .get_ref()
                .iter()
                .find(|t| api::NumberType::from_name(t).is_none())
            {
                let known: Vec<&str> = api::NumberType::ALL.iter().map(|t| t.as_str()).collect();
                return Err(err(
                    Some(types.span()),
                    format!(
                        "allowed_number_types: unknown type {bad:?}, expected some of {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        let limits = [
            ("per_number", p.per_number),
            ("per_user", p.per_user),
            ("per_api_key", p.per_api_key),
        ];
        let c = p.per_country.get_ref();
        for (name, l) in limits.into_iter().chain([(
            "per_country",
            Limit {
                max: c.max,
                window_s: c.window_s,
            },
        )]) {
            if l.window_s == 0 || l.window_s > 7 * 86_400 {
                return Err(err(
                    None,
                    format!("policy.{name}: window_s must be 1 to 604800 (a week)"),
                ));
            }
        }
        if let Some(bad) = c.overrides.keys().find(|k| !is_country_code(k)) {
            return Err(err(
                Some(p.per_country.span()),
                format!("per_country.overrides: {bad:?} is not an ISO 3166 code such as \"JP\""),
            ));
        }
        if !(1..=8760).contains(p.fraud_block_hours.get_ref()) {
            return Err(err(
                Some(p.fraud_block_hours.span()),
                "fraud_block_hours must be 1 to 8760 (a year)".into(),
            ));
        }
        Ok(())
    }

    fn check_demo(
        &self,
        err: &impl Fn(Option<Range<usize>>, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let numbers = &self.demo.numbers;
        if let Some(bad) = numbers
            .get_ref()
            .iter()
            .find(|n| store::PhoneNumber::parse(n).is_err())
        {
            return Err(err(
                Some(numbers.span()),
                format!("demo.numbers: {bad:?} is not an E.164 number such as \"+819012345678\""),
            ));
        }
        if self.api.demo_page && numbers.get_ref().is_empty() {
            return Err(err(
                None,
                "api.demo_page = true needs [demo] numbers: the only numbers the page registers \
                 (e.g. numbers = [\"+819012345678\"], a phone of the demo's)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The toll-fraud policy.
    pub fn policy(&self) -> api::Policy {
        let p = &self.policy;
        let limit = |l: Limit| api::RateLimit::new(l.max, Duration::from_secs(l.window_s));
        let c = p.per_country.get_ref();
        api::Policy {
            allowed_countries: match p.allowed_countries.as_ref().map(|l| l.get_ref()) {
                Some(l) if l.iter().any(|c| c == "*") => api::Countries::Any,
                Some(l) => api::Countries::Only(l.clone()),
                None => api::Countries::Only(Vec::new()),
            },
            allowed_number_types: match &p.allowed_number_types {
                Some(t) => t
                    .get_ref()
                    .iter()
                    .filter_map(|t| api::NumberType::from_name(t))
                    .collect(),
                None => api::NumberType::DEFAULT_ALLOWED.to_vec(),
            },
            per_number: limit(p.per_number),
            per_user: limit(p.per_user),
            per_api_key: limit(p.per_api_key),
            per_country: api::CountryLimit {
                limit: api::RateLimit::new(c.max, Duration::from_secs(c.window_s)),
                overrides: c.overrides.clone(),
            },
            max_concurrent_calls: p.max_concurrent_calls,
            fraud_block: Duration::from_secs(*p.fraud_block_hours.get_ref() * 3600),
        }
    }

    /// The media settings for calls.
    pub fn media_settings(&self) -> engine::MediaConfig {
        let PortRange { first, last } = *self.media.rtp_ports.get_ref();
        engine::MediaConfig {
            address: self
                .media
                .address
                .unwrap_or_else(|| self.sip.listen.get_ref()[0].addr.ip()),
            ports: first..=last,
            codecs: self
                .sip
                .codecs
                .get_ref()
                .iter()
                .map(|&c| c.into())
                .collect(),
            measure_pacing: false,
        }
    }

    /// The verification script's settings.
    pub fn script_settings(&self) -> engine::ScriptConfig {
        let c = &self.call;
        let ms = Duration::from_millis;
        engine::ScriptConfig {
            repeats: *c.repeats.get_ref(),
            pause: ms(c.pause_ms),
            first_key_timeout: Duration::from_secs(*c.first_key_timeout_s.get_ref()),
            digit_timeout: Duration::from_secs(*c.digit_timeout_s.get_ref()),
            call_timeout: Duration::from_secs(*c.call_timeout_s.get_ref()),
            amd: engine::call::AmdConfig {
                enabled: c.amd.enabled,
                max_greeting: ms(*c.amd.max_greeting_ms.get_ref()),
                gap: ms(*c.amd.gap_ms.get_ref()),
                window: ms(c.amd.window_ms),
            },
            latching: match self.media.latching {
                LatchingName::Strict => media::rtp::Latching::Strict,
                LatchingName::SameHost => media::rtp::Latching::SameHost,
            },
            rtcp_interval: Duration::from_secs(*self.media.rtcp_interval_s.get_ref()),
        }
    }

    /// The API's settings, with secrets read through `env`; an error names a missing or
    /// short variable (never a value).
    pub fn api_settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<api::ApiConfig, String> {
        let secret = |var: &str| match env(var) {
            Some(v) if v.len() >= 32 => Ok(v.into_bytes()),
            Some(_) => Err(format!("{var} must hold at least 32 bytes")),
            None => Err(format!("{var} is not set (api needs it)")),
        };
        let a = &self.api;
        Ok(api::ApiConfig {
            token_secret: secret(&a.token_secret_env)?,
            challenge_ttl: Duration::from_secs(*a.challenge_ttl_s.get_ref()),
            max_wait: Duration::from_secs(a.max_wait_s),
            streams: api::StreamCaps::new(
                *a.max_streams_per_poll_token.get_ref(),
                *a.max_streams_per_api_key.get_ref(),
            ),
            trusted_device_ttl: Duration::from_secs(*a.trusted_device_days.get_ref() * 86_400),
            policy: self.policy(),
            webhooks: api::webhooks::WebhookConfig {
                secret: secret(&a.webhook_secret_env)?,
                max_attempts: a.webhook_max_attempts.max(1),
                callbacks: api::callback::CallbackPolicy {
                    allow_http: a.allow_http_callbacks,
                    allow: a
                        .callback_allow
                        .get_ref()
                        .iter()
                        .map(|n| api::callback::parse_net(n))
                        .collect::<Result<_, _>>()?,
                    resolver: api::callback::Resolver::system(),
                },
                ..api::webhooks::WebhookConfig::default()
            },
            retention: Duration::from_secs(*self.store.retention_days.get_ref() * 86_400),
            // The gateway makes the demo page's key when `demo_page` is set.
            demo_page: None,
            demo_numbers: self
                .demo
                .numbers
                .get_ref()
                .iter()
                .filter_map(|n| store::PhoneNumber::parse(n).ok())
                .collect(),
        })
    }

    /// The HTTP server's limits (`[api]`).
    pub fn serve_limits(&self) -> api::ServeLimits {
        let a = &self.api;
        api::ServeLimits {
            header_timeout: Duration::from_secs(*a.header_timeout_s.get_ref()),
            request_timeout: Duration::from_secs(*a.request_timeout_s.get_ref()),
            max_connections: *a.max_connections.get_ref(),
        }
    }

    /// The store's URL (from `url_env` when set).
    pub fn store_url(&self, env: impl Fn(&str) -> Option<String>) -> Result<String, String> {
        match &self.store.url_env {
            Some(var) => env(var).ok_or_else(|| format!("{var} is not set (store.url_env)")),
            None => Ok(self.store.url.clone()),
        }
    }

    /// The default language of calls.
    pub fn language(&self) -> media::Language {
        self.call
            .language
            .get_ref()
            .parse()
            .unwrap_or(media::Language::En)
    }
    /// The TLS settings: the certificate TLS listeners present and how each TLS trunk's
    /// certificate is checked (files are read now).
    pub fn tls_settings(&self) -> Result<engine::TlsSettings, engine::TlsError> {
        let server = match &self.sip.tls {
            Some(t) => Some(engine::tls::server_config(
                &t.get_ref().cert_file,
                &t.get_ref().key_file,
            )?),
            None => None,
        };
        let mut trunks = std::collections::HashMap::new();
        for tr in self.trunks.iter().filter(|t| t.transport == Transport::Tls) {
            let name = match &tr.tls_server_name {
                Some(n) => n.get_ref().clone(),
                None => host_of(&tr.domain()).to_string(),
            };
            let ca = tr.tls_ca_file.as_ref().map(|f| f.get_ref().as_path());
            trunks.insert(tr.address, engine::TlsTrunk::new(&name, ca)?);
        }
        Ok(engine::TlsSettings { server, trunks })
    }

    /// The SIP user agent's settings and trunks, with passwords read through `env` (the
    /// file was checked by [`Config::parse`], so every named variable was set then).
    pub fn sip_settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> (sip::UaConfig, Vec<sip::TrunkConfig>) {
        let t = &self.sip.timers;
        let ua = sip::UaConfig {
            listen: self
                .sip
                .listen
                .get_ref()
                .iter()
                .map(|l| sip::Listener {
                    transport: l.transport.into(),
                    addr: l.addr,
                })
                .collect(),
            user_agent: self.sip.user_agent.clone(),
            timers: sip::Timers {
                t1: Duration::from_millis(*t.t1_ms.get_ref()),
                t2: Duration::from_millis(*t.t2_ms.get_ref()),
            },
            ring_timeout: Duration::from_secs(*t.ring_timeout_s.get_ref()),
        };
        let trunks = self
            .trunks
            .iter()
            .map(|tr| sip::TrunkConfig {
                name: tr.name.get_ref().clone(),
                address: tr.address,
                transport: tr.transport.into(),
                domain: tr.domain(),
                from_user: tr.from_user.clone(),
                credentials: tr.username.as_ref().map(|u| sip::Credentials {
                    username: u.get_ref().clone(),
                    password: tr
                        .password_env
                        .as_ref()
                        .and_then(|v| env(v.get_ref()))
                        .unwrap_or_default(),
                }),
                register: tr.register,
                options_interval: (tr.options_interval_s > 0)
                    .then(|| Duration::from_secs(tr.options_interval_s)),
                srtp: match tr.srtp.get_ref() {
                    SrtpName::Off => sip::sdp::SrtpPolicy::Off,
                    SrtpName::Optional => sip::sdp::SrtpPolicy::Optional,
                    SrtpName::Mandatory => sip::sdp::SrtpPolicy::Mandatory,
                },
                responses_from: match tr.responses_from {
                    ResponsesFromName::Address => sip::ResponsesFrom::Address,
                    ResponsesFromName::Host => sip::ResponsesFrom::Host,
                },
            })
            .collect();
        (ua, trunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../sip-config/callverify.toml"
        ))
        .unwrap()
    }

    fn env_with_password(name: &str) -> Option<String> {
        (name == "CALLVERIFY_TRUNK_LOCAL_PBX_PASSWORD").then(|| "s3cret".to_string())
    }

    #[test]
    fn the_shipped_example_loads() {
        let c = Config::parse(&shipped(), "callverify.toml", env_with_password).unwrap();
        assert_eq!(c.sip.listen.get_ref().len(), 4);
        assert_eq!(c.sip.listen.get_ref()[2], "udp:[::1]:5070".parse().unwrap());
        assert_eq!(c.trunks.len(), 2);
        assert_eq!(c.trunks[1].transport, Transport::Tcp);
        assert_eq!(*c.sip.timers.t1_ms.get_ref(), 500);
    }

    #[test]
    fn the_file_becomes_the_media_and_script_settings() {
        let c = Config::parse(&shipped(), "callverify.toml", env_with_password).unwrap();
        let m = c.media_settings();
        assert_eq!(m.address, std::net::IpAddr::from([127, 0, 0, 1]));
        assert_eq!(m.ports, 16384..=32767);
        assert_eq!(m.codecs, vec![media::Codec::Pcmu, media::Codec::Pcma]);
        let s = c.script_settings();
        assert_eq!(s.repeats, 3);
        assert_eq!(s.first_key_timeout, Duration::from_secs(40));
        assert_eq!(s.call_timeout, Duration::from_secs(120));
        assert_eq!(s.amd.max_greeting, Duration::from_millis(4000));
        assert_eq!(s.latching, media::rtp::Latching::Strict);
        assert_eq!(c.language(), media::Language::En);
    }

    #[test]
    fn the_file_becomes_the_user_agent_settings_with_the_password_from_the_environment() {
        let c = Config::parse(&shipped(), "callverify.toml", env_with_password).unwrap();
        let (ua, trunks) = c.sip_settings(env_with_password);
        assert_eq!(ua.listen.len(), 4);
        assert_eq!(ua.timers.t1, Duration::from_millis(500));
        assert_eq!(ua.ring_timeout, Duration::from_secs(45));
        let creds = trunks[0].credentials.as_ref().unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("callverify", "s3cret")
        );
        assert!(
            !format!("{:?}", trunks[0]).contains("s3cret"),
            "Debug masks the password"
        );
        assert_eq!(trunks[0].domain, "127.0.0.1");
        assert_eq!(trunks[1].domain, "[::1]:5062", "no domain: the address");
        assert_eq!(trunks[1].options_interval, Some(Duration::from_secs(30)));
        sip::UserAgent::new(ua, trunks).expect("the user agent takes it");
    }

    /// The error for `text` with `line` of the shipped file replaced.
    fn error_with(find: &str, replace: &str, env: impl Fn(&str) -> Option<String>) -> ConfigError {
        let text = shipped().replacen(find, replace, 1);
        assert_ne!(text, shipped(), "{find:?} not in the example");
        Config::parse(&text, "c.toml", env).unwrap_err()
    }

    fn line_of_text(find: &str) -> usize {
        shipped().lines().position(|l| l.contains(find)).unwrap() + 1
    }

    #[test]
    fn errors_name_the_line_and_the_reason() {
        // (text to replace, replacement, words expected, line offset from the replaced one)
        let cases: Vec<(&str, &str, &str, usize)> = vec![
            ("t1_ms = 500", "t1_ms = \"fast\"", "expected u64", 0),
            (
                "address = \"127.0.0.1:5060\"",
                "address = \"pbx.example:5060\"",
                "socket address",
                0,
            ),
            ("transport = \"udp\"", "transport = \"sctp\"", "udp", 0),
            (
                "\"tcp:127.0.0.1:5070\"",
                "\"sctp:127.0.0.1:5070\"",
                "unknown transport",
                0,
            ),
            (
                "\"tcp:127.0.0.1:5070\"",
                "\"tls:127.0.0.1:5070\"",
                "needs [sip.tls]",
                0,
            ),
            (
                "from_user = \"callverify\"",
                "from_user = \"callverify\"\nsrtp = \"mandatory\"",
                "srtp needs transport = \"tls\"",
                1,
            ),
            (
                "from_user = \"callverify\"",
                "from_user = \"callverify\"\ntls_ca_file = \"ca.pem\"",
                "tls_ca_file needs transport = \"tls\"",
                1,
            ),
            (
                "user_agent = \"callverify\"",
                "user_agent = \"callverify\"\ntls = { cert_file = \"/nonexistent/cert.pem\", key_file = \"k.pem\" }",
                "TLS: /nonexistent/cert.pem",
                1,
            ),
            (
                "codecs = [\"PCMU\", \"PCMA\"]",
                "codecs = [\"G729\"]",
                "PCMU",
                0,
            ),
            ("t2_ms = 4000", "t2_ms = 100", "at least t1_ms", 0),
            (
                "ring_timeout_s = 45",
                "ring_timeout_s = 45\nring_timout = 3",
                "unknown field",
                1,
            ),
            ("name = \"backup\"", "name = \"local-pbx\"", "used twice", 0),
            (
                "\"udp:127.0.0.1:5070\"",
                "\"udp:0.0.0.0:5070\"",
                "unspecified",
                0,
            ),
            (
                "rtp_ports = \"16384-32767\"",
                "rtp_ports = \"20000\"",
                "first-last",
                0,
            ),
            (
                "rtp_ports = \"16384-32767\"",
                "rtp_ports = \"80-90\"",
                ">= 1024",
                0,
            ),
            (
                "latching = \"strict\"",
                "latching = \"loose\"",
                "same-host",
                0,
            ),
            (
                "language = \"en\"",
                "language = \"fr\"",
                "expected en or ja",
                0,
            ),
            ("repeats = 3", "repeats = 0", "1 to 10", 0),
            (
                "first_key_timeout_s = 40",
                "first_key_timeout_s = 0",
                "above 0",
                0,
            ),
            (
                "call_timeout_s = 120",
                "call_timeout_s = 30",
                "longer than sip.timers.ring_timeout_s (45)",
                0,
            ),
            (
                "gap_ms = 600",
                "gap_ms = 5000",
                "shorter than amd.max_greeting_ms",
                0,
            ),
            (
                "allowed_countries = [\"JP\", \"US\", \"GB\"]",
                "allowed_countries = [\"JP\", \"*\"]",
                "\"*\" (every country) goes alone",
                0,
            ),
            (
                "allowed_countries = [\"JP\", \"US\", \"GB\"]",
                "allowed_countries = [\"Japan\"]",
                "not an ISO 3166 code",
                0,
            ),
            (
                "allowed_number_types = [\"mobile\", \"fixed_line\", \"fixed_line_or_mobile\"]",
                "allowed_number_types = [\"mobile\", \"premium\"]",
                "unknown type \"premium\", expected some of fixed_line, mobile",
                0,
            ),
            (
                "fraud_block_hours = 24",
                "fraud_block_hours = 0",
                "1 to 8760",
                0,
            ),
            (
                "per_country = { max = 200, window_s = 3600, overrides = { JP = 2000 } }",
                "per_country = { max = 200, window_s = 3600, overrides = { Japan = 2000 } }",
                "per_country.overrides: \"Japan\"",
                0,
            ),
            (
                "retention_days = 90",
                "retention_days = 0",
                "retention_days must be 1 to 3650",
                0,
            ),
            (
                "header_timeout_s = 10",
                "header_timeout_s = 0",
                "header_timeout_s must be 1 to 3600",
                0,
            ),
            (
                "request_timeout_s = 30",
                "request_timeout_s = 86400",
                "request_timeout_s must be 1 to 3600",
                0,
            ),
            (
                "max_connections = 4096",
                "max_connections = 0",
                "max_connections must be 1 to 1000000",
                0,
            ),
            (
                "max_streams_per_poll_token = 4",
                "max_streams_per_poll_token = 0",
                "at least 1",
                0,
            ),
            (
                "callback_allow = []",
                "callback_allow = [\"10.0.0.0/8\", \"intranet\"]",
                "callback_allow: \"intranet\" is not a network",
                0,
            ),
        ];
        for (find, replace, words, offset) in cases {
            let line = line_of_text(find) + offset;
            let e = error_with(find, replace, env_with_password);
            assert_eq!(e.line, Some(line), "{replace}: {e}");
            assert!(e.to_string().contains(words), "{replace}: {e}");
            assert!(
                e.to_string().starts_with(&format!("c.toml:{line}: ")),
                "{e}"
            );
        }
        // A trunk no listener serves: the error points at the trunk.
        let e = error_with("\"tcp:[::1]:5070\"]", "]", env_with_password);
        assert_eq!(e.line, Some(line_of_text("name = \"backup\"")), "{e}");
        assert!(
            e.to_string()
                .contains("tcp over IPv6 but sip.listen has no such listener")
        );
        let e = error_with("[sip]", "[sip", env_with_password);
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn a_missing_password_names_the_variable_not_a_value() {
        let e = Config::parse(&shipped(), "c.toml", |_| None).unwrap_err();
        assert_eq!(e.line, Some(line_of_text("password_env =")));
        assert!(
            e.to_string()
                .contains("CALLVERIFY_TRUNK_LOCAL_PBX_PASSWORD is not set"),
            "{e}"
        );
        let e = error_with(
            "password_env = \"CALLVERIFY_TRUNK_LOCAL_PBX_PASSWORD\"",
            "",
            env_with_password,
        );
        assert!(
            e.to_string().contains("username without password_env"),
            "{e}"
        );
    }

    #[test]
    fn the_docker_compose_configuration_loads() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../sip-config/docker.toml"
        ))
        .unwrap();
        let c = Config::parse(&text, "docker.toml", |_| None).unwrap();
        assert_eq!(c.trunks[0].address, "172.28.0.20:5060".parse().unwrap());
        assert_eq!(c.store.url_env.as_deref(), Some("CALLVERIFY_DATABASE_URL"));
        assert!(c.api.demo_page);
        assert_eq!(c.demo.numbers.get_ref(), &["+819012345678".to_string()]);
    }

    #[test]
    fn the_policy_must_name_the_countries_and_the_demo_its_numbers() {
        let c = Config::parse(&shipped(), "c.toml", env_with_password).unwrap();
        let p = c.policy();
        assert_eq!(
            p.allowed_countries,
            api::Countries::Only(vec!["JP".into(), "US".into(), "GB".into()])
        );
        assert_eq!(
            p.allowed_number_types,
            api::NumberType::DEFAULT_ALLOWED.to_vec()
        );
        assert_eq!(p.per_country.limit.max, 200);
        assert_eq!(p.per_country.overrides.get("JP"), Some(&2000));
        assert_eq!(p.fraud_block, Duration::from_secs(24 * 3600));
        // No allowed_countries: refused, saying what to write.
        let e = error_with(
            "allowed_countries = [\"JP\", \"US\", \"GB\"]\n",
            "",
            env_with_password,
        );
        assert_eq!(e.line, None);
        let text = e.to_string();
        assert!(
            text.contains("[policy] has no allowed_countries")
                && text.contains("allowed_countries = [\"JP\", \"US\"]")
                && text.contains("allowed_countries = [\"*\"] to call every country"),
            "{text}"
        );
        // Every country only when said.
        let text = shipped().replace(
            "allowed_countries = [\"JP\", \"US\", \"GB\"]",
            "allowed_countries = [\"*\"]",
        );
        let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
        assert_eq!(c.policy().allowed_countries, api::Countries::Any);
        let e = error_with(
            "allowed_countries = [\"JP\", \"US\", \"GB\"]",
            "allowed_countries = []",
            env_with_password,
        );
        assert!(e.to_string().contains("allowed_countries is empty"), "{e}");
        // The demo page needs its numbers.
        let e = error_with("demo_page = false", "demo_page = true", env_with_password);
        assert!(
            e.to_string()
                .contains("api.demo_page = true needs [demo] numbers"),
            "{e}"
        );
        let text = shipped()
            .replace("demo_page = false", "demo_page = true")
            .replace("# [demo]\n# numbers", "[demo]\nnumbers");
        let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
        let a = c.api_settings(|_| Some("x".repeat(32))).unwrap();
        assert_eq!(a.demo_numbers[0].as_e164(), Some("+819012345678"));
        let bad = text.replace("\"+819012345678\"]", "\"090-1234-5678\"]");
        let e = Config::parse(&bad, "c.toml", env_with_password).unwrap_err();
        assert_eq!(e.line, Some(line_of_text("# numbers = [")), "{e}");
        assert!(
            e.to_string()
                .contains("\"090-1234-5678\" is not an E.164 number"),
            "{e}"
        );
    }

    #[test]
    fn no_trunk_is_an_error() {
        let text = shipped();
        let cut = &text[..text.find("# Trunks are tried").unwrap()];
        let e = Config::parse(cut, "c.toml", env_with_password).unwrap_err();
        assert!(e.to_string().contains("no [[trunk]]"), "{e}");
    }

    #[test]
    fn the_api_settings_carry_the_callback_policy() {
        let secrets = |v: &str| {
            env_with_password(v).or_else(|| v.ends_with("_SECRET").then(|| "k".repeat(32)))
        };
        let text = shipped()
            .replace(
                "allow_http_callbacks = false",
                "allow_http_callbacks = true",
            )
            .replace(
                "callback_allow = []",
                "callback_allow = [\"10.1.2.3/16\", \"::1\"]",
            );
        let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
        let cb = c.api_settings(secrets).unwrap().webhooks.callbacks;
        assert!(cb.allow_http);
        assert_eq!(
            cb.allow,
            vec!["10.1.0.0/16".parse().unwrap(), "::1/128".parse().unwrap()]
        );
        let c = Config::parse(&shipped(), "c.toml", env_with_password).unwrap();
        let cb = c.api_settings(secrets).unwrap().webhooks.callbacks;
        assert!(!cb.allow_http && cb.allow.is_empty());
    }

    #[test]
    fn the_http_limits_come_from_the_file() {
        let text = shipped()
            .replace("header_timeout_s = 10", "header_timeout_s = 2")
            .replace(
                "max_streams_per_api_key = 1000",
                "max_streams_per_api_key = 7",
            );
        let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
        assert_eq!(
            c.serve_limits(),
            api::ServeLimits {
                header_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(30),
                max_connections: 4096,
            }
        );
        let secrets = |v: &str| v.ends_with("_SECRET").then(|| "k".repeat(32));
        let streams = c.api_settings(secrets).unwrap().streams;
        assert_eq!((streams.per_poll_token, streams.per_api_key), (4, 7));
        let c = Config::parse(
            &shipped().replace("retention_days = 90", "retention_days = 30"),
            "c.toml",
            env_with_password,
        )
        .unwrap();
        assert_eq!(
            c.api_settings(secrets).unwrap().retention,
            Duration::from_secs(30 * 86_400)
        );
        // Absent, they take their defaults.
        let bare = Config::parse(
            &shipped().replace("header_timeout_s = 10\n", ""),
            "c.toml",
            env_with_password,
        )
        .unwrap();
        assert_eq!(bare.serve_limits(), api::ServeLimits::default());
    }
}
