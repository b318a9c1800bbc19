//! Webhook deliveries: the row is written in the transaction that decides the challenge, so a
//! decision is never without its delivery; attempts are claimed (so that two nodes do not
//! post the same one at once), recorded, and rescheduled until delivered or given up.

use sqlx::Row;

use crate::{ChallengeId, Result, Store};

/// A delivery that is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// The decided challenge.
    pub challenge_id: ChallengeId,
    /// Where to post.
    pub url: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// When it was due.
    pub next_attempt_at_ms: i64,
}

/// One attempt, as logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAttempt {
    /// 1, 2, …
    pub attempt: i64,
    /// When it was made, ms since the epoch.
    pub at_ms: i64,
    /// The HTTP status, if an answer came.
    pub status: Option<i64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: Option<i64>,
}

/// What follows an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookNext {
    /// Delivered (a 2xx).
    Delivered,
    /// Try again at this time (ms since the epoch).
    RetryAt(i64),
    /// No more attempts.
    GiveUp,
}

pub(crate) async fn on_decided(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhooks (challenge_id, url, next_attempt_at) \
         SELECT id, callback_url, $1 FROM challenges WHERE id = $2 AND callback_url IS NOT NULL",
    )
    .bind(at_ms)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Deliveries due at `now_ms`, oldest first.
    pub async fn due_webhooks(&self, now_ms: i64, limit: i64) -> Result<Vec<Webhook>> {
        let rows = sqlx::query(
            "SELECT challenge_id, url, attempts, next_attempt_at FROM webhooks \
             WHERE next_attempt_at <= $1 AND delivered_at IS NULL AND gave_up_at IS NULL \
             ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Webhook {
                    challenge_id: ChallengeId::from_stored(r.try_get("challenge_id")?),
                    url: r.try_get("url")?,
                    attempts: r.try_get("attempts")?,
                    next_attempt_at_ms: r.try_get("next_attempt_at")?,
                })
            })
            .collect()
    }

    /// Takes a due delivery for one attempt: moves its next attempt to `lease_until_ms`
    /// (when another node may take it if this one dies mid-attempt) unless someone else
    /// took it first (`false`).
    pub async fn claim_webhook(&self, w: &Webhook, lease_until_ms: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE webhooks SET next_attempt_at = $1 WHERE challenge_id = $2 \
             AND next_attempt_at = $3 AND attempts = $4 AND delivered_at IS NULL \
             AND gave_up_at IS NULL",
        )
        .bind(lease_until_ms)
        .bind(w.challenge_id.as_str())
        .bind(w.next_attempt_at_ms)
        .bind(w.attempts)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Logs an attempt and what follows it, in one transaction.
    pub async fn record_webhook_attempt(
        &self,
        challenge_id: &ChallengeId,
        attempt: &WebhookAttempt,
        next: WebhookNext,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (challenge_id, attempt, at, status, error, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(challenge_id.as_str())
        .bind(attempt.attempt)
        .bind(attempt.at_ms)
        .bind(attempt.status)
        .bind(attempt.error.as_deref())
        .bind(attempt.duration_ms)
        .execute(&mut *tx)
        .await?;
        let (sql, at) = match next {
            WebhookNext::Delivered => (
                "UPDATE webhooks SET attempts = $1, delivered_at = $2 WHERE challenge_id = $3",
                attempt.at_ms,
            ),
            WebhookNext::RetryAt(t) => (
                "UPDATE webhooks SET attempts = $1, next_attempt_at = $2 WHERE challenge_id = $3",
                t,
            ),
            WebhookNext::GiveUp => (
                "UPDATE webhooks SET attempts = $1, gave_up_at = $2 WHERE challenge_id = $3",
                attempt.at_ms,
            ),
        };
        sqlx::query(sql)
            .bind(attempt.attempt)
            .bind(at)
            .bind(challenge_id.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every attempt for a challenge, in order.
    pub async fn webhook_attempts(
        &self,
        challenge_id: &ChallengeId,
    ) -> Result<Vec<WebhookAttempt>> {
        let rows = sqlx::query(
            "SELECT attempt, at, status, error, duration_ms FROM webhook_attempts \
             WHERE challenge_id = $1 ORDER BY id",
        )
        .bind(challenge_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(WebhookAttempt {
                    attempt: r.try_get("attempt")?,
                    at_ms: r.try_get("at")?,
                    status: r.try_get("status")?,
                    error: r.try_get("error")?,
                    duration_ms: r.try_get("duration_ms")?,
                })
            })
            .collect()
    }
}
