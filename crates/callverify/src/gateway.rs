//! The gateway assembled: store, SIP endpoint, call runner, HTTP API with `/metrics`, and the
//! background work; used by `callverify serve` and `callverify demo`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use engine::Runner;
use media::Language;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use store::{KeyKind, Store, now_ms};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::Config;

/// The name of the service key the /demo page's backend acts as.
const DEMO_KEY: &str = "demo page";
const RADIUS_KEY: &str = "radius";

/// A running gateway.
pub struct Gateway {
    /// Where the HTTP API listens.
    pub api_addr: SocketAddr,
    /// Its store.
    pub store: Store,
    runner: Arc<Runner>,
    server: JoinHandle<std::io::Result<()>>,
    stop: Arc<tokio::sync::Notify>,
    workers: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    radius: Option<JoinHandle<std::io::Error>>,
    readiness: api::Readiness,
}

/// The Prometheus recorder of the process (installed once; later calls give the same).
pub fn metrics() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let seconds = [
        0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 45.0, 60.0, 120.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("callverify_post_dial_delay_seconds".into()),
            &seconds,
        )?
        .set_buckets_for_metric(
            Matcher::Full("callverify_time_to_verdict_seconds".into()),
            &seconds,
        )?
        .install_recorder()?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// The metrics' help texts, and the counters the alert rules (packaging/prometheus) watch
/// made at zero: an increase is seen from the first one (a series that appears with its
/// first event has no earlier sample for `increase()` to compare with).
fn describe() {
    use metrics::{counter, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("callverify_calls_total", "Calls placed, by outcome");
    describe_gauge!("callverify_active_calls", "Challenges being called now");
    describe_gauge!("callverify_trunk_up", "1 while a trunk answers OPTIONS");
    describe_gauge!(
        "callverify_trunk_registered",
        "1 while a trunk that registers has a registration it accepted"
    );
    describe_gauge!(
        "callverify_ready",
        "1 while every core task runs (as /readyz), 0 once one has ended"
    );
    describe_histogram!(
        "callverify_post_dial_delay_seconds",
        "From the INVITE to the first ringing or answer"
    );
    describe_histogram!(
        "callverify_time_to_verdict_seconds",
        "From the INVITE to the verdict"
    );
    describe_counter!(
        "callverify_challenges_total",
        "Challenges created, by purpose"
    );
    describe_counter!(
        "callverify_refusals_total",
        "Challenges refused by the call policy, by reason"
    );
    describe_counter!(
        "callverify_webhook_attempts_total",
        "Webhook deliveries tried, by result (delivered, retry, gave_up)"
    );
    describe_counter!(
        "callverify_sip_dropped_total",
        "SIP messages or connections dropped before parsing, by reason"
    );
    describe_counter!(
        "callverify_sip_tls_failures_total",
        "SIP TLS handshakes that failed"
    );
    describe_counter!(
        "callverify_radius_dropped_total",
        "RADIUS packets dropped unanswered, by reason"
    );
    describe_counter!(
        "callverify_radius_requests_total",
        "RADIUS Access-Requests answered, by answer (accept, reject, challenge)"
    );
    describe_counter!(
        "callverify_radius_retransmissions_total",
        "NAS retransmissions recognised (answered from the kept answer, or waiting for it)"
    );
    describe_counter!(
        "callverify_radius_upstream_total",
        "First-factor answers from the upstream RADIUS server, by answer"
    );
    describe_gauge!("callverify_http_connections", "HTTP connections open");
    describe_counter!(
        "callverify_http_connections_refused_total",
        "HTTP connections refused at the connection cap"
    );
    describe_counter!(
        "callverify_http_timeouts_total",
        "HTTP connections closed by a timeout, by kind (header, request)"
    );
    for outcome in engine::Outcome::NAMES {
        counter!("callverify_calls_total", "outcome" => outcome).increment(0);
    }
    for purpose in ["sign_in", "enroll"] {
        counter!("callverify_challenges_total", "purpose" => purpose).increment(0);
    }
    for kind in api::RefusalKind::ALL {
        counter!("callverify_refusals_total", "reason" => kind.metric()).increment(0);
    }
    for result in ["delivered", "retry", "gave_up"] {
        counter!("callverify_webhook_attempts_total", "result" => result).increment(0);
    }
    for reason in engine::sip_driver::DROP_REASONS {
        counter!("callverify_sip_dropped_total", "reason" => reason).increment(0);
    }
    counter!("callverify_sip_tls_failures_total").increment(0);
    for reason in api::radius::DROP_REASONS {
        counter!("callverify_radius_dropped_total", "reason" => reason).increment(0);
    }
    for answer in api::radius::ANSWERS {
        counter!("callverify_radius_requests_total", "answer" => answer).increment(0);
    }
    counter!("callverify_radius_retransmissions_total").increment(0);
    for answer in api::radius::UPSTREAM_ANSWERS {
        counter!("callverify_radius_upstream_total", "answer" => answer).increment(0);
    }
    counter!("callverify_http_connections_refused_total").increment(0);
    for kind in ["header", "request"] {
        counter!("callverify_http_timeouts_total", "kind" => kind).increment(0);
    }
}

/// Opens the store with this node's copy of the challenges. On SQLite this process is the
/// only node (it holds the lock file): what a previous run left in a call is interrupted
/// now. On PostgreSQL other nodes may be calling: only lapsed claims are interrupted (the
/// dispatcher does it every second).
async fn open_store(store_url: &str) -> anyhow::Result<Store> {
    let store = Store::open(store_url)
        .await
        .and_then(Store::cached)
        .with_context(|| format!("opening the store {}", shown_url(store_url)))?;
    if store.backend() == store::Backend::Sqlite {
        let interrupted = store.interrupt_unfinished(now_ms()).await?;
        if interrupted > 0 {
            warn!(
                interrupted,
                "challenges left in a call by the previous run are now interrupted"
            );
        }
    }
    Ok(store)
}

/// The prompts of every language the library has, loaded once.
fn load_prompts(cfg: &Config) -> anyhow::Result<HashMap<Language, engine::Prompts>> {
    let library = media::PromptLibrary::load(&cfg.call.prompts, &Language::ALL)
        .with_context(|| format!("loading the prompts in {}", cfg.call.prompts.display()))?;
    Ok(Language::ALL
        .into_iter()
        .filter_map(|lang| engine::Prompts::from_library(&library, lang).map(|p| (lang, p)))
        .collect())
}

/// Starts the SIP endpoint with the configured listeners and trunks, and a task that logs
/// each trunk going up or down and its registrations, and keeps their gauges
/// (`callverify_trunk_up`, `callverify_trunk_registered`).
async fn start_sip(cfg: &Config) -> anyhow::Result<engine::SipEndpoint> {
    let env = |v: &str| std::env::var(v).ok();
    let (ua, trunks) = cfg.sip_settings(env);
    let tls = cfg.tls_settings()?;
    for l in &ua.listen {
        if let Some(public) = l.advertise {
            info!(listener = %l.addr, transport = %l.transport, %public, "SIP listener advertised (Via, Contact)");
        }
    }
    if let Some(public) = cfg.media_settings().public_address {
        info!(%public, "media advertised (SDP)");
    }
    for t in &trunks {
        metrics::gauge!("callverify_trunk_up", "trunk" => t.name.clone()).set(1.0);
        if t.register {
            metrics::gauge!("callverify_trunk_registered", "trunk" => t.name.clone()).set(0.0);
        }
    }
    let (endpoint, mut events) = engine::SipEndpoint::start_tls(ua, trunks, tls).await?;
    tokio::spawn(async move {
        // Whether each trunk's last registration was accepted: a refresh is not news.
        let mut registered: HashMap<String, bool> = HashMap::new();
        while let Some(e) = events.recv().await {
            let Some((gauge, trunk, value)) = trunk_gauge(&e) else {
                continue;
            };
            metrics::gauge!(gauge, "trunk" => trunk.to_string()).set(value);
            match &e {
                sip::Event::Trunk { trunk, up: true } => info!(%trunk, "trunk up"),
                sip::Event::Trunk { trunk, up: false } => {
                    warn!(%trunk, "trunk down: it stopped answering OPTIONS");
                }
                sip::Event::Registration { trunk, state } => {
                    let ok = matches!(state, sip::Registration::Registered { .. });
                    if registered.insert(trunk.clone(), ok) == Some(ok) {
                        continue;
                    }
                    match state {
                        sip::Registration::Registered { expires } => {
                            info!(%trunk, expires, "trunk registered");
                        }
                        sip::Registration::Failed {
                            status: Some(status),
                        } => {
                            warn!(%trunk, status, "trunk registration refused; tried again in a minute");
                        }
                        sip::Registration::Failed { status: None } => {
                            warn!(%trunk, "trunk registration unanswered; tried again in a minute");
                        }
                    }
                }
                sip::Event::Call(..) | sip::Event::Discarded { .. } => {}
            }
        }
    });
    Ok(endpoint)
}

/// The gauge a trunk's event sets (its name, the trunk, the value): `callverify_trunk_up`
/// for a keep-alive's news, `callverify_trunk_registered` for a registration's.
fn trunk_gauge(e: &sip::Event) -> Option<(&'static str, &str, f64)> {
    match e {
        sip::Event::Trunk { trunk, up } => {
            Some(("callverify_trunk_up", trunk, f64::from(u8::from(*up))))
        }
        sip::Event::Registration { trunk, state } => {
            let value = match state {
                sip::Registration::Registered { .. } => 1.0,
                sip::Registration::Failed { .. } => 0.0,
            };
            Some(("callverify_trunk_registered", trunk, value))
        }
        sip::Event::Call(..) | sip::Event::Discarded { .. } => None,
    }
}

/// The `/demo` page's key, made at the first start (its secret is never used: the page's
/// backend acts as this key).
/// The service key `name` of a front end of the gateway's own (the demo page, the EAM
/// provider, the RADIUS server), made at the first start.
pub(crate) async fn service_key(store: &Store, name: &str) -> anyhow::Result<store::ApiKey> {
    Ok(match store.api_key_named(name, KeyKind::Service).await? {
        Some(key) => key,
        None => {
            store
                .create_api_key(name, KeyKind::Service, now_ms())
                .await?
                .0
        }
    })
}

impl Gateway {
    /// Opens the store (unfinished calls of a previous run become `interrupted`), starts SIP,
    /// the runner, the API on `cfg.api.listen` (or `listen` when given) and the background
    /// work, and calls the challenges a previous run left queued.
    pub async fn start(
        cfg: &Config,
        mut api_cfg: api::ApiConfig,
        store_url: &str,
        listen: Option<SocketAddr>,
    ) -> anyhow::Result<Gateway> {
        let metrics = metrics()?;
        api::Policy::warm_up();
        reserve_descriptors(cfg);
        let store = open_store(store_url).await?;
        let prompts = load_prompts(cfg)?;
        let endpoint = start_sip(cfg).await?;
        let runner = Arc::new(
            Runner::new(
                store.clone(),
                Arc::new(endpoint),
                cfg.media_settings(),
                cfg.script_settings(),
                prompts,
            )
            .with_fallback(cfg.api.call_fallback)
            .with_policy(Arc::new(api_cfg.policy.clone()))
            .with_capacity(cfg.call.max_calls)
            .with_lease(Duration::from_secs(cfg.call.claim_lease_s))
            .with_code_key(&api_cfg.token_secret),
        );
        if cfg.api.demo_page {
            warn!("the /demo page is on: whoever reaches it can have the [demo] numbers called");
            api_cfg.demo_page = Some(service_key(&store, DEMO_KEY).await?);
        }
        let env = |v: &str| std::env::var(v).ok();
        if let Some(eam) = cfg.eam_settings(env).map_err(|e| anyhow::anyhow!(e))? {
            let provider = crate::eam::provider(&eam, &store, &api_cfg.token_secret).await?;
            api_cfg.eam = Some(Arc::new(provider));
        }
        let radius = match cfg.radius_settings(env).map_err(|e| anyhow::anyhow!(e))? {
            Some(settings) => {
                let server = api::radius::Server::bind(settings)
                    .await
                    .context("binding the RADIUS server")?;
                info!(radius = %server.local_addr()?, "the RADIUS server is listening");
                Some((server, service_key(&store, RADIUS_KEY).await?))
            }
            None => None,
        };
        let readiness = api::Readiness::default();
        let state = api::AppState {
            store: store.clone(),
            runner: Some(runner.clone()),
            readiness: readiness.clone(),
            cfg: Arc::new(api_cfg),
        };
        let workers = api::webhooks::spawn_workers(state.clone());
        let radius = radius.map(|(server, key)| tokio::spawn(server.run(state.clone(), key)));
        // Queued challenges (left by a previous run, or beyond another node's capacity) are
        // claimed and called here as capacity allows.
        let dispatcher = runner.dispatch();
        let app = api::router(state.clone()).route(
            "/metrics",
            axum::routing::get(move || {
                let ready = state.failure().is_none();
                metrics::gauge!("callverify_ready").set(if ready { 1.0 } else { 0.0 });
                let m = metrics.clone();
                async move { m.render() }
            }),
        );
        let addr = listen.unwrap_or(cfg.api.listen);
        let lis = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the API to {addr}"))?;
        let api_addr = lis.local_addr()?;
        let stop = Arc::new(tokio::sync::Notify::new());
        let server = tokio::spawn({
            let stop = stop.clone();
            let limits = cfg.serve_limits();
            async move { api::serve(lis, app, limits, async move { stop.notified().await }).await }
        });
        info!(api = %api_addr, "callverify is serving");
        Ok(Gateway {
            api_addr,
            store,
            runner,
            server,
            stop,
            workers,
            dispatcher,
            radius,
            readiness,
        })
    }

    /// Why the gateway cannot go on, if one of its core tasks has ended: the HTTP server,
    /// the background work (webhooks, expiry, retention), the dispatcher, a call's task
    /// (its RTP and script), the SIP endpoint, the store's change notifications, the RADIUS
    /// server where `[radius]` is configured. None ends
    /// but at [`Gateway::shutdown`] or by a bug.
    pub fn failure(&self) -> Option<String> {
        let ended = |done: bool, what: &str| done.then(|| format!("{what} ended"));
        ended(self.server.is_finished(), "the HTTP server")
            .or_else(|| ended(self.workers.is_finished(), "the background work"))
            .or_else(|| ended(self.dispatcher.is_finished(), "the dispatcher"))
            .or_else(|| {
                let done = self
                    .radius
                    .as_ref()
                    .is_some_and(tokio::task::JoinHandle::is_finished);
                ended(done, "the RADIUS server")
            })
            .or_else(|| self.runner.failure())
            .or_else(|| self.store.failure().map(str::to_string))
    }

    /// Resolves, with the reason, once a core task has ended (checked ten times a second);
    /// `/readyz` answers 503 from then on. `serve` then exits at once with status 70, for a
    /// supervisor to restart it: what was in a call becomes `interrupted`.
    pub async fn failed(&self) -> String {
        loop {
            if let Some(why) = self.failure() {
                self.readiness.fail(&why);
                return why;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops taking requests, lets the calls in progress finish for up to `grace`, then
    /// stops (calls still running then are marked `interrupted` at the next start).
    pub async fn shutdown(self, grace: Duration) {
        // No new calls: queued challenges are left to the other nodes or the next start.
        self.runner.drain();
        self.stop.notify_one();
        let _ = tokio::time::timeout(grace, self.server).await;
        let started = Instant::now();
        while self.runner.active_calls() > 0 && started.elapsed() < grace {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let left = self.runner.active_calls();
        if left > 0 {
            warn!(
                calls = left,
                "stopping with calls in progress: they will be interrupted"
            );
        }
        self.dispatcher.abort();
        self.workers.abort();
    }
}

/// A database URL for logs: without a password.
pub fn shown_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Grows the descriptor table before any call, to what the calls (two sockets each), the
/// HTTP connections and some room for the rest need (see [`engine::descriptors`]); warns
/// when the open-file limit is lower.
fn reserve_descriptors(cfg: &Config) {
    let calls = u64::try_from(cfg.call.max_calls).unwrap_or(u64::MAX);
    let http = u64::try_from(*cfg.api.max_connections.get_ref()).unwrap_or(u64::MAX);
    let wanted = calls
        .saturating_mul(2)
        .saturating_add(http)
        .saturating_add(256);
    match engine::descriptors::reserve(wanted) {
        Ok(r) if r.is_enough() => {
            info!(
                descriptors = r.table,
                limit = r.limit,
                "descriptor table reserved"
            );
        }
        Ok(r) => warn!(
            wanted = r.wanted,
            limit = r.limit,
            "the open-file limit is below what [call] max_calls and [api] max_connections need: \
             calls beyond it fail for want of RTP ports (raise LimitNOFILE)"
        ),
        Err(e) => warn!(error = %e, "the descriptor table could not be reserved"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn registrations_and_keep_alives_set_their_trunks_gauges() {
        use sip::{Event, Registration};
        let registration = |state| Event::Registration {
            trunk: "kamailio".into(),
            state,
        };
        assert_eq!(
            super::trunk_gauge(&registration(Registration::Registered { expires: 600 })),
            Some(("callverify_trunk_registered", "kamailio", 1.0))
        );
        assert_eq!(
            super::trunk_gauge(&registration(Registration::Failed { status: Some(401) })),
            Some(("callverify_trunk_registered", "kamailio", 0.0))
        );
        let down = Event::Trunk {
            trunk: "pbx".into(),
            up: false,
        };
        assert_eq!(
            super::trunk_gauge(&down),
            Some(("callverify_trunk_up", "pbx", 0.0))
        );
        let discarded = Event::Discarded {
            from: "127.0.0.1:5060".parse().unwrap(),
            reason: "x".into(),
        };
        assert_eq!(super::trunk_gauge(&discarded), None);
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            super::shown_url("postgres://cv:s3cret@db:5432/cv"),
            "postgres://cv:****@db:5432/cv"
        );
        assert_eq!(
            super::shown_url("postgres://cv@db/cv"),
            "postgres://cv@db/cv"
        );
        assert_eq!(
            super::shown_url("sqlite://callverify.db"),
            "sqlite://callverify.db"
        );
    }
}
