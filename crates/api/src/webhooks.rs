//! Webhooks and the other background work of the API: every decided challenge with a
//! `callback_url` is posted there, signed, retried with exponential backoff, every attempt
//! logged in the store; queued challenges past their expiry become `expired`; every hour
//! (and at start) what is older than the retention period is forgotten.
//!
//! The signature header is `Callverify-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">` with the webhook secret. A receiver recomputes it, compares in constant
//! time and refuses a `t` more than five minutes from its clock ([`verify_signature`]), so a
//! captured delivery cannot be replayed later; `Callverify-Delivery` (challenge id and
//! attempt) lets it drop duplicates.
//!
//! A delivery goes only where [`crate::callback`] allows, checked again at each attempt
//! with the name resolved once and the connection pinned to the checked addresses. An
//! attempt's stored error says only `refused by policy` or `no answer` (or the HTTP status
//! is kept): nothing that would tell a port that is open from one that is closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::Mac;
use store::{Webhook, WebhookAttempt, WebhookNext};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::callback::{CallbackPolicy, Pinned, refused_in};
use crate::challenges::ChallengeView;
use crate::{AppState, hex, now_ms, unhex};

/// The stored error of an attempt the callback policy stopped before anything was sent.
pub const REFUSED: &str = "refused by policy";
/// The stored error of an attempt that got no HTTP answer (refused, reset, timed out, TLS).
pub const NO_ANSWER: &str = "no answer";

/// Webhook settings.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// The signing secret.
    pub secret: Vec<u8>,
    /// Attempts before giving up.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles for each later one.
    pub first_retry: Duration,
    /// The longest wait between attempts.
    pub max_retry: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Where callbacks may go.
    pub callbacks: CallbackPolicy,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            secret: Vec::new(),
            max_attempts: 8,
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            callbacks: CallbackPolicy::default(),
        }
    }
}

/// How far a signature's time may be from the receiver's clock.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);

fn tag(secret: &[u8], t: i64, body: &[u8]) -> hmac::Hmac<sha2::Sha256> {
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Callverify-Signature` value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex(&tag(secret, t, body).finalize().into_bytes())
    )
}

/// Whether a `Callverify-Signature` value is genuine for `body` and fresh at `now` (unix
/// seconds): what a receiver checks.
pub fn verify_signature(secret: &[u8], header: &str, body: &[u8], now: i64) -> bool {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.extend(unhex(v)),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if now.abs_diff(t) > SIGNATURE_TOLERANCE.as_secs() {
        return false;
    }
    v1.iter()
        .any(|sig| tag(secret, t, body).verify_slice(sig).is_ok())
}

fn retry_delay(cfg: &WebhookConfig, attempts_made: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts_made.saturating_sub(1).min(20));
    cfg.first_retry.saturating_mul(factor).min(cfg.max_retry)
}

/// How often what is older than the retention period is looked for.
pub const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Rows a retention batch deletes or masks at most (one transaction each).
const RETENTION_BATCH: u32 = 500;

/// One retention sweep: forgets what is older than `retention` (see `store::Forgotten`).
async fn sweep(store: store::Store, retention: Duration) {
    let cutoff = now_ms().saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64);
    match store.forget_before(cutoff, RETENTION_BATCH).await {
        Ok(f) if f.is_empty() => {}
        Ok(f) => info!(
            calls = f.calls,
            refusals = f.refusals,
            events = f.events,
            webhook_attempts = f.webhook_attempts,
            webhooks = f.webhooks,
            phones = f.phones,
            trusted_devices = f.trusted_devices,
            fraud_blocks = f.fraud_blocks,
            numbers_masked = f.numbers,
            eam_nonces = f.eam_nonces,
            eam_sessions = f.eam_sessions,
            "retention: forgot what was older than {} days",
            retention.as_secs() / 86_400
        ),
        Err(e) => warn!(error = %e, "retention sweep failed (tried again next time)"),
    }
}

/// Starts the background work (webhook deliveries, expiry, pruning the rate limits' counts,
/// retention); it runs until aborted.
pub fn spawn_workers(state: AppState) -> JoinHandle<()> {
    tokio::spawn(async move {
        crate::install_crypto_provider();
        let client = match reqwest::Client::builder()
            .timeout(state.cfg.webhooks.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve and connect where the policy cannot see.
            .no_proxy()
            .dns_resolver(Arc::new(Pinned(state.cfg.webhooks.callbacks.clone())))
            .user_agent(concat!("callverify/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "no HTTP client: webhooks are not delivered");
                return;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = tokio::time::Instant::now();
        let mut next_sweep = Instant::now();
        let mut sweeping: Option<JoinHandle<()>> = None;
        loop {
            tick.tick().await;
            // In a task of its own, one at a time: a long first sweep delays no webhook.
            if Instant::now() >= next_sweep
                && sweeping
                    .as_ref()
                    .is_none_or(tokio::task::JoinHandle::is_finished)
            {
                next_sweep = Instant::now() + RETENTION_SWEEP_EVERY;
                sweeping = Some(tokio::spawn(sweep(
                    state.store.clone(),
                    state.cfg.retention,
                )));
            }
            let now = now_ms();
            // The counts of the rate limits, once older than every window (twice over).
            if pruned.elapsed() >= Duration::from_secs(60) {
                pruned = tokio::time::Instant::now();
                let keep = 2 * state.cfg.policy.longest_window().as_millis() as i64;
                if let Err(e) = state.store.prune_rate_counts(now - keep).await {
                    warn!(error = %e, "pruning the rate limits' counts failed");
                }
            }
            match state.store.expire_due(now).await {
                Ok(ids) => {
                    for id in ids {
                        info!(challenge = %id, "expired before it was called");
                    }
                }
                Err(e) => warn!(error = %e, "expiry sweep failed"),
            }
            let due = match state.store.due_webhooks(now, 64).await {
                Ok(d) => d,
                Err(e) => {
                    warn!(error = %e, "reading due webhooks failed");
                    continue;
                }
            };
            for w in due {
                // The lease: if this node dies mid-attempt, another takes it after this.
                let lease = now + (state.cfg.webhooks.timeout.as_millis() as i64) * 3;
                match state.store.claim_webhook(&w, lease).await {
                    Ok(true) => {
                        tokio::spawn(deliver(state.clone(), client.clone(), w));
                    }
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "claiming a webhook failed"),
                }
            }
        }
    })
}

async fn deliver(state: AppState, client: reqwest::Client, w: Webhook) {
    let cfg = &state.cfg.webhooks;
    let attempt = w.attempts + 1;
    let challenge = match state.store.challenge(&w.challenge_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            warn!(error = %e, "reading a challenge for its webhook failed");
            return;
        }
    };
    let body = serde_json::json!({
        "type": "challenge.decided",
        "challenge": ChallengeView::of(&challenge, None),
    })
    .to_string();
    let sent_at = now_ms();
    let started = Instant::now();
    let (status, error) = match post(&client, cfg, &w, attempt, sent_at, body).await {
        Ok(status) => (Some(status), None),
        Err(Failure::Refused(why)) => {
            warn!(challenge = %w.challenge_id, attempt, reason = %why, "webhook refused by policy");
            (None, Some(REFUSED.to_string()))
        }
        Err(Failure::NoAnswer(kind)) => {
            info!(challenge = %w.challenge_id, attempt, kind, "webhook got no answer");
            (None, Some(NO_ANSWER.to_string()))
        }
    };
    let duration_ms = Some(started.elapsed().as_millis() as i64);
    let ok = status.is_some_and(|s| (200..300).contains(&s));
    let next = if ok {
        WebhookNext::Delivered
    } else if attempt >= i64::from(cfg.max_attempts) {
        WebhookNext::GiveUp
    } else {
        WebhookNext::RetryAt(now_ms() + retry_delay(cfg, attempt as u32).as_millis() as i64)
    };
    let result = match next {
        WebhookNext::Delivered => "delivered",
        WebhookNext::RetryAt(_) => "retry",
        WebhookNext::GiveUp => "gave_up",
    };
    metrics::counter!("callverify_webhook_attempts_total", "result" => result).increment(1);
    match next {
        WebhookNext::Delivered => {
            info!(challenge = %w.challenge_id, attempt, status, "webhook delivered");
        }
        WebhookNext::RetryAt(at) => warn!(
            challenge = %w.challenge_id, attempt, status, error = error.as_deref(),
            retry_in_ms = at - now_ms(), "webhook attempt failed"
        ),
        WebhookNext::GiveUp => error!(
            challenge = %w.challenge_id, attempt, status, error = error.as_deref(),
            "webhook given up"
        ),
    }
    let logged = WebhookAttempt {
        attempt,
        at_ms: sent_at,
        status,
        error,
        duration_ms,
    };
    if let Err(e) = state
        .store
        .record_webhook_attempt(&w.challenge_id, &logged, next)
        .await
    {
        warn!(error = %e, "recording a webhook attempt failed");
    }
}

/// Why an attempt got no HTTP status.
enum Failure {
    /// The callback policy stopped it (the reason is for the log).
    Refused(String),
    /// No answer; the kind of failure is for the log, never the URL (it may carry a secret).
    NoAnswer(&'static str),
}

/// One attempt: the URL checked again, then the POST; the answer's status.
async fn post(
    client: &reqwest::Client,
    cfg: &WebhookConfig,
    w: &Webhook,
    attempt: i64,
    sent_at: i64,
    body: String,
) -> Result<i64, Failure> {
    cfg.callbacks
        .check_before_sending(&w.url)
        .map_err(|r| Failure::Refused(r.0))?;
    let sent = client
        .post(&w.url)
        .header("content-type", "application/json")
        .header(
            "callverify-signature",
            signature(&cfg.secret, sent_at / 1000, body.as_bytes()),
        )
        .header(
            "callverify-delivery",
            format!("{}/{attempt}", w.challenge_id),
        )
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) => Ok(i64::from(r.status().as_u16())),
        Err(e) => Err(match refused_in(&e) {
            Some(r) => Failure::Refused(r.0.clone()),
            None => Failure::NoAnswer(if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "request failed"
            }),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_fresh_and_unaltered() {
        let s = signature(b"k", 1_000_000, b"{\"a\":1}");
        assert!(verify_signature(b"k", &s, b"{\"a\":1}", 1_000_000));
        assert!(verify_signature(b"k", &s, b"{\"a\":1}", 1_000_300));
        assert!(
            !verify_signature(b"k", &s, b"{\"a\":1}", 1_000_301),
            "too old"
        );
        assert!(
            !verify_signature(b"k", &s, b"{\"a\":2}", 1_000_000),
            "altered"
        );
        assert!(
            !verify_signature(b"x", &s, b"{\"a\":1}", 1_000_000),
            "other key"
        );
        let moved = s.replace("t=1000000", "t=1000100");
        assert!(
            !verify_signature(b"k", &moved, b"{\"a\":1}", 1_000_100),
            "time changed"
        );
        assert!(!verify_signature(b"k", "garbage", b"", 0));
        // A time at the end of the range: too old, not an overflow.
        assert!(!verify_signature(
            b"k",
            "t=-9223372036854775808,v1=00",
            b"",
            1_000_000
        ));
        assert!(!verify_signature(
            b"k",
            "t=9223372036854775807,v1=00",
            b"",
            -1_000_000
        ));
    }

    #[test]
    fn retries_back_off_to_a_ceiling() {
        let cfg = WebhookConfig::default();
        let d: Vec<u64> = (1..=10).map(|n| retry_delay(&cfg, n).as_secs()).collect();
        assert_eq!(d, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600]);
    }
}
