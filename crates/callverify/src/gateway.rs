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
    metrics::describe_counter!("callverify_calls_total", "Calls placed, by outcome");
    metrics::describe_gauge!("callverify_active_calls", "Challenges being called now");
    metrics::describe_gauge!("callverify_trunk_up", "1 while a trunk answers OPTIONS");
    metrics::describe_histogram!(
        "callverify_post_dial_delay_seconds",
        "From the INVITE to the first ringing or answer"
    );
    metrics::describe_histogram!(
        "callverify_time_to_verdict_seconds",
        "From the INVITE to the verdict"
    );
    Ok(HANDLE.get_or_init(|| handle).clone())
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
/// each trunk going up or down and keeps its `callverify_trunk_up` gauge.
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
    }
    let (endpoint, mut events) = engine::SipEndpoint::start_tls(ua, trunks, tls).await?;
    tokio::spawn(async move {
        while let Some(e) = events.recv().await {
            if let sip::Event::Trunk { trunk, up } = e {
                if up {
                    info!(%trunk, "trunk up");
                } else {
                    warn!(%trunk, "trunk down: it stopped answering OPTIONS");
                }
                metrics::gauge!("callverify_trunk_up", "trunk" => trunk).set(if up {
                    1.0
                } else {
                    0.0
                });
            }
        }
    });
    Ok(endpoint)
}

/// The `/demo` page's key, made at the first start (its secret is never used: the page's
/// backend acts as this key).
async fn demo_key(store: &Store) -> anyhow::Result<store::ApiKey> {
    Ok(
        match store.api_key_named(DEMO_KEY, KeyKind::Service).await? {
            Some(key) => key,
            None => {
                store
                    .create_api_key(DEMO_KEY, KeyKind::Service, now_ms())
                    .await?
                    .0
            }
        },
    )
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
            api_cfg.demo_page = Some(demo_key(&store).await?);
        }
        let env = |v: &str| std::env::var(v).ok();
        if let Some(eam) = cfg.eam_settings(env).map_err(|e| anyhow::anyhow!(e))? {
            let provider = crate::eam::provider(&eam, &store, &api_cfg.token_secret).await?;
            api_cfg.eam = Some(Arc::new(provider));
        }
        let readiness = api::Readiness::default();
        let state = api::AppState {
            store: store.clone(),
            runner: Some(runner.clone()),
            readiness: readiness.clone(),
            cfg: Arc::new(api_cfg),
        };
        let workers = api::webhooks::spawn_workers(state.clone());
        // Queued challenges (left by a previous run, or beyond another node's capacity) are
        // claimed and called here as capacity allows.
        let dispatcher = runner.dispatch();
        let app = api::router(state).route(
            "/metrics",
            axum::routing::get(move || {
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
            readiness,
        })
    }

    /// Why the gateway cannot go on, if one of its core tasks has ended: the HTTP server,
    /// the background work (webhooks, expiry, retention), the dispatcher, a call's task
    /// (its RTP and script), the SIP endpoint, the store's change notifications. None ends
    /// but at [`Gateway::shutdown`] or by a bug.
    pub fn failure(&self) -> Option<String> {
        let ended = |done: bool, what: &str| done.then(|| format!("{what} ended"));
        ended(self.server.is_finished(), "the HTTP server")
            .or_else(|| ended(self.workers.is_finished(), "the background work"))
            .or_else(|| ended(self.dispatcher.is_finished(), "the dispatcher"))
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

#[cfg(test)]
mod tests {
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
