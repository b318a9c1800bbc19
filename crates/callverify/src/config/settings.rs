//! What the file becomes for the other crates: the SIP user agent's and the trunks'
//! settings, TLS, the calls' media and script, the API's settings and limits, the policy.

use std::time::Duration;

use super::{
    CodecName, Config, LatchingName, Limit, PortRange, ResponsesFromName, SrtpName, Transport,
    Trunk,
};

impl From<Transport> for sip::Transport {
    fn from(t: Transport) -> Self {
        match t {
            Transport::Udp => sip::Transport::Udp,
            Transport::Tcp => sip::Transport::Tcp,
            Transport::Tls => sip::Transport::Tls,
        }
    }
}

impl From<CodecName> for media::Codec {
    fn from(c: CodecName) -> Self {
        match c {
            CodecName::Pcmu => media::Codec::Pcmu,
            CodecName::Pcma => media::Codec::Pcma,
        }
    }
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

impl Config {
    /// The toll-fraud policy.
    pub fn policy(&self) -> api::Policy {
        let p = &self.policy;
        let limit = |l: Limit| api::RateLimit::new(l.max, Duration::from_secs(l.window_s));
        let c = p.per_country.get_ref();
        api::Policy {
            allowed_countries: match p.allowed_countries.as_ref().map(toml::Spanned::get_ref) {
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
            public_address: self.media.public_address.as_ref().map(|a| *a.get_ref()),
            ports: first..=last,
            codecs: self
                .sip
                .codecs
                .get_ref()
                .iter()
                .map(|&c| c.into())
                .collect(),
            on_send: None,
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
            language: self.language(),
            // The gateway makes the EAM provider when `[eam]` is set (it needs the store).
            eam: None,
            confirmation: self.confirmation(),
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

    /// How challenges are confirmed when neither the request nor its key says.
    pub fn confirmation(&self) -> store::Confirmation {
        store::Confirmation::from_name(self.call.confirmation.get_ref()).unwrap_or_default()
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
                    advertise: self
                        .sip
                        .advertise
                        .get_ref()
                        .get(l)
                        .map(|a| a.get_ref().for_listener(l.addr)),
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

/// What `[eam]` becomes: the Entra external authentication provider's settings, as checked
/// (the provider turns them into its own types).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EamSettings {
    /// The issuer URL, as written (no trailing '/').
    pub issuer: String,
    /// The Entra applications that may ask.
    pub client_ids: Vec<String>,
    /// The tenants whose users may sign in, in lowercase.
    pub tenants: Vec<String>,
    /// Where answers may go.
    pub redirect_uris: Vec<String>,
    /// Entra's OpenID configuration.
    pub entra_discovery_url: String,
    /// How old an id_token_hint may be.
    pub hint_max_age: Duration,
    /// How long a new signing key is published before it signs.
    pub key_publish: Duration,
    /// The signing keys in this file instead of the store.
    pub key_file: Option<std::path::PathBuf>,
    /// The hint's claim that names the user: `oid` or `preferred_username`.
    pub user_id_claim: String,
    /// Whom a user without a phone should ask.
    pub help: Option<String>,
    /// Users' phones looked up in Microsoft Graph.
    pub graph: Option<GraphSettings>,
}

/// What `[eam.graph]` becomes, with the client secret read from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct GraphSettings {
    /// The Graph application's client id.
    pub client_id: String,
    /// Its client secret (never shown by `Debug`).
    pub client_secret: String,
    /// Where its token is asked for.
    pub login_url: String,
    /// Microsoft Graph.
    pub base_url: String,
}

impl std::fmt::Debug for GraphSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("login_url", &self.login_url)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl Config {
    /// The EAM provider's settings (`None`: no `[eam]`, the provider is off), with the Graph
    /// client secret read through `env`; an error names a variable that is not set (never a
    /// value).
    pub fn eam_settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<EamSettings>, String> {
        let Some(e) = self.eam.as_ref().map(toml::Spanned::get_ref) else {
            return Ok(None);
        };
        let graph = match e.graph.as_ref().map(toml::Spanned::get_ref) {
            Some(g) => Some(graph_settings(g, &env)?),
            None => None,
        };
        Ok(Some(EamSettings {
            issuer: e.issuer.get_ref().clone(),
            client_ids: e.client_ids.get_ref().clone(),
            tenants: e
                .tenants
                .get_ref()
                .iter()
                .map(|t| t.to_ascii_lowercase())
                .collect(),
            redirect_uris: e.redirect_uris.get_ref().clone(),
            entra_discovery_url: e.entra_discovery_url.get_ref().clone(),
            hint_max_age: Duration::from_secs(*e.hint_max_age_s.get_ref()),
            key_publish: Duration::from_secs(*e.key_publish_hours.get_ref() * 3600),
            key_file: e.key_file.as_ref().map(|f| f.get_ref().clone()),
            user_id_claim: e.user_id_claim.get_ref().clone(),
            help: e.help.as_ref().map(|h| h.get_ref().clone()),
            graph,
        }))
    }
}

/// `[eam.graph]` with its secret from `env`.
fn graph_settings(
    g: &super::EamGraph,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<GraphSettings, String> {
    let var = g.client_secret_env.get_ref();
    let client_secret = env(var)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{var} is not set ([eam.graph] needs it)"))?;
    Ok(GraphSettings {
        client_id: g.client_id.get_ref().clone(),
        client_secret,
        login_url: g.login_url.get_ref().clone(),
        base_url: g.base_url.get_ref().clone(),
    })
}

impl Config {
    /// The RADIUS front end's settings (`None`: no `[radius]`), with the secrets read
    /// through `env`; an error names a variable that is not set (never a value).
    pub fn radius_settings(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<api::radius::Settings>, String> {
        let Some(r) = self.radius.as_ref().map(toml::Spanned::get_ref) else {
            return Ok(None);
        };
        let secret = |var: &toml::Spanned<String>| {
            env(var.get_ref())
                .filter(|v| !v.is_empty())
                .map(radius::sign::Secret::new)
                .ok_or_else(|| format!("{} is not set ([radius] needs it)", var.get_ref()))
        };
        let mut clients = Vec::new();
        for c in &r.clients {
            let c = c.get_ref();
            clients.push(api::radius::Client {
                name: c.name.get_ref().clone(),
                network: super::check::radius_network(c.address.get_ref()).ok_or_else(|| {
                    format!("{:?} is no address nor network", c.address.get_ref())
                })?,
                secret: secret(&c.secret_env)?,
            });
        }
        let upstream = match r.upstream.as_ref().map(toml::Spanned::get_ref) {
            Some(u) => Some(api::radius::Upstream {
                address: *u.address.get_ref(),
                secret: secret(&u.secret_env)?,
                timeout: Duration::from_millis(*u.timeout_ms.get_ref()),
                retries: u32::try_from(*u.retries.get_ref()).unwrap_or(10),
                require_message_authenticator: u.require_message_authenticator,
            }),
            None => None,
        };
        Ok(Some(api::radius::Settings {
            listen: *r.listen.get_ref(),
            clients,
            upstream,
            user_id: r.user_id.get_ref().clone(),
            strip_realm: r.strip_realm,
            language: r
                .language
                .as_ref()
                .and_then(|l| l.get_ref().parse().ok())
                .unwrap_or_else(|| self.language()),
            max_pending_per_client: usize::try_from(*r.max_pending_per_client.get_ref())
                .unwrap_or(100),
            keep_answers: Duration::from_secs(30),
        }))
    }
}
