//! Retention: what is older than the retention period is forgotten, in batches of a bounded
//! size, each in a transaction of its own (so neither a lock nor a transaction grows with
//! the backlog). The call log (calls with their keys and steps, and refused attempts), the
//! challenges' state changes, webhook attempts and deliveries, removed and never-verified
//! registrations and long-expired trusted devices are deleted (and, a day past their
//! expiry, the EAM provider's nonces and sign-ins); a decided challenge keeps its row (the
//! API still reads it) with only the masked form of its number and without its callback
//! URL.
//! Users' registered phones are kept: sign-ins call them.

use sqlx::{AssertSqlSafe, Row};

use crate::{PhoneNumber, Result, Store, StoreError};

/// What one sweep forgot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Calls deleted (with their keys and steps).
    pub calls: u64,
    /// Refused attempts deleted (by when they last happened).
    pub refusals: u64,
    /// State changes deleted.
    pub events: u64,
    /// Webhook attempts deleted.
    pub webhook_attempts: u64,
    /// Webhook deliveries deleted.
    pub webhooks: u64,
    /// Registrations deleted (removed, or never verified).
    pub phones: u64,
    /// Trusted devices deleted.
    pub trusted_devices: u64,
    /// Fraud blocks deleted (they name a user and a number: kept while in force, then for
    /// the retention period).
    pub fraud_blocks: u64,
    /// Challenges whose number is now kept masked only.
    pub numbers: u64,
    /// EAM nonces deleted (a day past their expiry, whatever the retention period).
    pub eam_nonces: u64,
    /// EAM sign-ins deleted (a day past their expiry, whatever the retention period).
    pub eam_sessions: u64,
}

impl Forgotten {
    /// Whether nothing was forgotten.
    pub fn is_empty(&self) -> bool {
        *self == Forgotten::default()
    }
}

/// Deletes with `sql` (`$1` the cutoff, `$2` the batch size) until a batch deletes fewer
/// than `batch` rows; returns how many in all.
async fn delete_in_batches(
    store: &Store,
    sql: &'static str,
    cutoff: i64,
    batch: i64,
) -> Result<u64> {
    let mut n = 0;
    loop {
        let done = sqlx::query(sql)
            .bind(cutoff)
            .bind(batch)
            .execute(&store.pool)
            .await?
            .rows_affected();
        n += done;
        if done < batch as u64 {
            return Ok(n);
        }
    }
}

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Forgets what is older than `cutoff_ms` (ms since the epoch), at most `batch` rows a
    /// transaction. Running it again, or on two nodes at once, is harmless.
    pub async fn forget_before(&self, cutoff_ms: i64, batch: u32) -> Result<Forgotten> {
        let batch = i64::from(batch.max(1));
        let mut f = Forgotten {
            calls: self.forget_calls(cutoff_ms, batch).await?,
            ..Forgotten::default()
        };
        f.refusals = delete_in_batches(
            self,
            "DELETE FROM refusals WHERE id IN \
             (SELECT id FROM refusals WHERE at < $1 AND last_at < $1 ORDER BY at LIMIT $2)",
            cutoff_ms,
            batch,
        )
        .await?;
        f.events = delete_in_batches(
            self,
            "DELETE FROM challenge_events WHERE id IN \
             (SELECT id FROM challenge_events WHERE at < $1 ORDER BY at LIMIT $2)",
            cutoff_ms,
            batch,
        )
        .await?;
        f.webhook_attempts = delete_in_batches(
            self,
            "DELETE FROM webhook_attempts WHERE id IN \
             (SELECT id FROM webhook_attempts WHERE at < $1 ORDER BY at LIMIT $2)",
            cutoff_ms,
            batch,
        )
        .await?;
        // A delivery's next attempt time is that of its last attempt (or the lease of it).
        f.webhooks = delete_in_batches(
            self,
            "DELETE FROM webhooks WHERE challenge_id IN (SELECT challenge_id FROM webhooks \
             WHERE next_attempt_at < $1 AND COALESCE(delivered_at, gave_up_at, next_attempt_at) < $1 \
             ORDER BY next_attempt_at LIMIT $2)",
            cutoff_ms,
            batch,
        )
        .await?;
        f.phones = delete_in_batches(
            self,
            "DELETE FROM phones WHERE id IN (SELECT id FROM phones \
             WHERE removed_at IS NOT NULL AND removed_at < $1 ORDER BY removed_at LIMIT $2)",
            cutoff_ms,
            batch,
        )
        .await?;
        // A registration whose enrolment call never approved it (long decided by now).
        f.phones += delete_in_batches(
            self,
            "DELETE FROM phones WHERE id IN (SELECT id FROM phones \
             WHERE verified_at IS NULL AND created_at < $1 ORDER BY created_at LIMIT $2)",
            cutoff_ms,
            batch,
        )
        .await?;
        f.trusted_devices = delete_in_batches(
            self,
            "DELETE FROM trusted_devices WHERE id IN \
             (SELECT id FROM trusted_devices WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
            cutoff_ms,
            batch,
        )
        .await?;
        f.fraud_blocks = delete_in_batches(
            self,
            "DELETE FROM fraud_blocks WHERE id IN (SELECT id FROM fraud_blocks \
             WHERE COALESCE(lifted_at, until) < $1 AND until < $1 ORDER BY until LIMIT $2)",
            cutoff_ms,
            batch,
        )
        .await?;
        f.numbers = self.redact_numbers(cutoff_ms, batch).await?;
        (f.eam_nonces, f.eam_sessions) = self
            .forget_expired_eam(crate::now_ms(), batch.try_into().unwrap_or(u32::MAX))
            .await?;
        Ok(f)
    }

    /// Deletes the EAM nonces and sign-ins that expired more than a day before `now_ms`
    /// (a replayed request that old is refused for its age already), at most `batch` rows a
    /// transaction; returns how many nonces and how many sign-ins.
    pub async fn forget_expired_eam(&self, now_ms: i64, batch: u32) -> Result<(u64, u64)> {
        const DAY_MS: i64 = 86_400_000;
        let (cutoff, batch) = (now_ms.saturating_sub(DAY_MS), i64::from(batch.max(1)));
        let nonces = delete_in_batches(
            self,
            "DELETE FROM eam_nonces WHERE nonce_hash IN (SELECT nonce_hash FROM eam_nonces \
             WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
            cutoff,
            batch,
        )
        .await?;
        let sessions = delete_in_batches(
            self,
            "DELETE FROM eam_sessions WHERE id IN (SELECT id FROM eam_sessions \
             WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)",
            cutoff,
            batch,
        )
        .await?;
        Ok((nonces, sessions))
    }

    /// Calls started before the cutoff, with their keys and steps.
    async fn forget_calls(&self, cutoff_ms: i64, batch: i64) -> Result<u64> {
        let mut n = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM calls WHERE started_at < $1 ORDER BY started_at, id LIMIT $2",
            )
            .bind(cutoff_ms)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            if ids.is_empty() {
                return Ok(n);
            }
            let list = placeholders(1, ids.len());
            let sql = format!("DELETE FROM call_steps WHERE call_id IN ({list})");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in &ids {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
            let sql = format!("DELETE FROM calls WHERE id IN ({list})");
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for id in &ids {
                q = q.bind(id);
            }
            n += q.execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            if (ids.len() as i64) < batch {
                return Ok(n);
            }
        }
    }

    /// Challenges decided before the cutoff keep only the masked form of their number, and
    /// lose their callback URL (it may carry a secret).
    async fn redact_numbers(&self, cutoff_ms: i64, batch: i64) -> Result<u64> {
        let mut n = 0;
        loop {
            let mut tx = self.pool.begin().await?;
            let rows = sqlx::query(
                "SELECT id, phone FROM challenges WHERE redacted_at IS NULL \
                 AND decided_at IS NOT NULL AND decided_at < $1 ORDER BY decided_at LIMIT $2",
            )
            .bind(cutoff_ms)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            let mut ids = Vec::with_capacity(rows.len());
            for r in &rows {
                let id: String = r.try_get("id")?;
                let phone: String = r.try_get("phone")?;
                let masked = PhoneNumber::from_stored(&phone)
                    .map_err(|_| StoreError::Corrupt(phone))?
                    .redacted();
                sqlx::query(
                    "UPDATE challenges SET phone = $1, callback_url = NULL, redacted_at = $2 \
                     WHERE id = $3 AND redacted_at IS NULL",
                )
                .bind(masked.stored())
                .bind(crate::now_ms())
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                ids.push(id);
            }
            tx.commit().await?;
            // This node's copy must not serve the whole number again (other nodes drop
            // theirs on the database's change notification).
            if let Some(cache) = &self.cache {
                for id in &ids {
                    cache.forget(id);
                }
            }
            n += ids.len() as u64;
            if (ids.len() as i64) < batch {
                return Ok(n);
            }
        }
    }
}
