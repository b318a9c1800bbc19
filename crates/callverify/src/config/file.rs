//! The file's tables as they are deserialised, each with its defaults: what is written, not
//! yet checked (`check.rs`) nor made into the crates' settings (`settings.rs`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

/// A SIP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
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

/// A listening socket, written `transport:address:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
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

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.transport.name(), self.addr)
    }
}

/// An advertised address, written `address:port` or `address` (the listener's port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertise {
    /// The address peers reach.
    pub ip: IpAddr,
    /// Its port, when written.
    pub port: Option<u16>,
}

impl Advertise {
    /// The address and port for a listener at `listen`.
    pub fn for_listener(self, listen: SocketAddr) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(listen.port()))
    }
}

impl<'de> Deserialize<'de> for Advertise {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Advertise {
                ip: a.ip(),
                port: Some(a.port()),
            });
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => Ok(Advertise { ip, port: None }),
            Err(_) => Err(serde::de::Error::custom(format!(
                "advertised address {s:?} is not address or address:port (IPv6 in brackets with a port)"
            ))),
        }
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
    /// Behind a NAT: per listener (written as in `listen`), the public address peers reach
    /// it at, named in Via and Contact instead of the listener's.
    #[serde(default = "no_advertise")]
    pub advertise: Spanned<BTreeMap<Listen, Spanned<Advertise>>>,
}

fn no_advertise() -> Spanned<BTreeMap<Listen, Spanned<Advertise>>> {
    Spanned::new(0..0, BTreeMap::new())
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
    /// Behind a NAT: the public address the SDP names (o=, c=) instead of `address`, with
    /// `rtp_ports` forwarded to it.
    pub public_address: Option<Spanned<IpAddr>>,
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
            public_address: None,
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
    /// How a challenge is confirmed when neither its request nor its API key says:
    /// `pound`, `keypad_code` (number matching) or `spoken_code`.
    #[serde(default = "default_confirmation")]
    pub confirmation: Spanned<String>,
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
fn default_confirmation() -> Spanned<String> {
    Spanned::new(0..0, "pound".into())
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
            confirmation: default_confirmation(),
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
    /// Microsoft Entra's external authentication (EAM): absent, the provider is off.
    pub eam: Option<Spanned<Eam>>,
    /// The RADIUS front end for VPNs and network gear: absent, it is off.
    pub radius: Option<Spanned<Radius>>,
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

/// The `[eam]` table: callverify as an external authentication method of Microsoft Entra ID
/// (an OpenID Connect provider Entra sends the browser to for the second factor).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eam {
    /// The provider's issuer URL (https; http only on a loopback host).
    pub issuer: Spanned<String>,
    /// The Entra applications (client ids) that may ask.
    pub client_ids: Spanned<Vec<String>>,
    /// The Entra tenants (GUIDs) whose users may sign in.
    pub tenants: Spanned<Vec<String>>,
    /// Where answers may go (default: Microsoft's three clouds' federation endpoints).
    #[serde(default = "default_redirect_uris")]
    pub redirect_uris: Spanned<Vec<String>>,
    /// Entra's OpenID configuration, for the keys its id_token_hint is signed with.
    #[serde(default = "default_entra_discovery_url")]
    pub entra_discovery_url: Spanned<String>,
    /// How old an id_token_hint may be, seconds (60 to 3600).
    #[serde(default = "default_hint_max_age")]
    pub hint_max_age_s: Spanned<u64>,
    /// How long a new signing key is published before it signs, hours (0 to 720).
    #[serde(default = "default_key_publish_hours")]
    pub key_publish_hours: Spanned<u64>,
    /// The signing keys in this file instead of the store.
    pub key_file: Option<Spanned<PathBuf>>,
    /// The hint's claim that names the user: `oid` or `preferred_username`.
    #[serde(default = "default_user_id_claim")]
    pub user_id_claim: Spanned<String>,
    /// Whom a user without a phone should ask (at most 200 characters).
    pub help: Option<Spanned<String>>,
    /// Users' phones looked up in Microsoft Graph.
    pub graph: Option<Spanned<EamGraph>>,
}

/// The `[eam.graph]` table: an application of the tenant that reads users' phones.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EamGraph {
    /// Its client id.
    pub client_id: Spanned<String>,
    /// The environment variable holding its client secret.
    #[serde(default = "default_graph_secret_env")]
    pub client_secret_env: Spanned<String>,
    /// Where its token is asked for.
    #[serde(default = "default_graph_login_url")]
    pub login_url: Spanned<String>,
    /// Microsoft Graph.
    #[serde(default = "default_graph_base_url")]
    pub base_url: Spanned<String>,
}

/// Microsoft's federation endpoints an EAM answers to, one per cloud (public, US
/// government, China).
pub const ENTRA_REDIRECT_URIS: [&str; 3] = [
    "https://login.microsoftonline.com/common/federation/externalauthprovider",
    "https://login.microsoftonline.us/common/federation/externalauthprovider",
    "https://login.partner.microsoftonline.cn/common/federation/externalauthprovider",
];

fn default_redirect_uris() -> Spanned<Vec<String>> {
    Spanned::new(0..0, ENTRA_REDIRECT_URIS.map(String::from).to_vec())
}
fn default_entra_discovery_url() -> Spanned<String> {
    Spanned::new(
        0..0,
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration".into(),
    )
}
fn default_hint_max_age() -> Spanned<u64> {
    Spanned::new(0..0, 600)
}
fn default_key_publish_hours() -> Spanned<u64> {
    Spanned::new(0..0, 48)
}
fn default_user_id_claim() -> Spanned<String> {
    Spanned::new(0..0, "oid".into())
}
fn default_graph_secret_env() -> Spanned<String> {
    Spanned::new(0..0, "CALLVERIFY_EAM_GRAPH_SECRET".into())
}
fn default_graph_login_url() -> Spanned<String> {
    Spanned::new(0..0, "https://login.microsoftonline.com".into())
}
fn default_graph_base_url() -> Spanned<String> {
    Spanned::new(0..0, "https://graph.microsoft.com/v1.0".into())
}

/// The `[radius]` table: the RADIUS front end (RFC 2865 over UDP) for VPNs and network gear.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Radius {
    /// Where it listens (UDP), e.g. `127.0.0.1:1812`.
    pub listen: Spanned<SocketAddr>,
    /// The user id a User-Name maps to: `{user}` (without its realm), `{realm}`, `{name}`.
    #[serde(default = "default_radius_user_id")]
    pub user_id: Spanned<String>,
    /// Whether `user@realm` and `REALM\user` lose their realm in `{user}`.
    #[serde(default = "default_true")]
    pub strip_realm: bool,
    /// The prompts' language (default: `[call] language`).
    pub language: Option<Spanned<String>>,
    /// Requests one NAS address may have in progress at once (1 to 10000).
    #[serde(default = "default_radius_pending")]
    pub max_pending_per_client: Spanned<u64>,
    /// The NAS that may ask, each `[[radius.client]]`.
    #[serde(rename = "client", default)]
    pub clients: Vec<Spanned<RadiusClient>>,
    /// The RADIUS server that checks passwords first: absent, the NAS checked them.
    pub upstream: Option<Spanned<RadiusUpstream>>,
}

/// A `[[radius.client]]`: a NAS by address or network, and its shared secret.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusClient {
    /// Its name (in the call log and the logs).
    pub name: Spanned<String>,
    /// Its address (`192.0.2.10`) or network (`10.1.0.0/16`).
    pub address: Spanned<String>,
    /// The environment variable holding its shared secret.
    pub secret_env: Spanned<String>,
}

/// The `[radius.upstream]` table: the first factor's RADIUS server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusUpstream {
    /// Its address and port.
    pub address: Spanned<SocketAddr>,
    /// The environment variable holding the secret shared with it.
    pub secret_env: Spanned<String>,
    /// Milliseconds to wait for each try (100 to 30000).
    #[serde(default = "default_upstream_timeout_ms")]
    pub timeout_ms: Spanned<u64>,
    /// Tries after the first (0 to 10).
    #[serde(default = "default_upstream_retries")]
    pub retries: Spanned<u64>,
    /// Refuse its answers without a Message-Authenticator (turn off only for a server
    /// without the BlastRADIUS fixes, on a network nobody else reaches).
    #[serde(default = "default_true")]
    pub require_message_authenticator: bool,
}

fn default_radius_user_id() -> Spanned<String> {
    Spanned::new(0..0, "{user}".into())
}
fn default_true() -> bool {
    true
}
fn default_radius_pending() -> Spanned<u64> {
    Spanned::new(0..0, 100)
}
fn default_upstream_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 3000)
}
fn default_upstream_retries() -> Spanned<u64> {
    Spanned::new(0..0, 2)
}
