//! Claims: which node calls a challenge, and until when its claim holds unless renewed. A
//! challenge in a call whose claim lapsed, or that was in a call when the gateway stopped,
//! becomes `interrupted` and is never called again.

use sqlx::AssertSqlSafe;

use crate::challenges::insert_events;
use crate::types::in_call_sql;
use crate::{Backend, ChallengeId, ChallengeState, Result, Store};

/// The most challenges one claim takes.
pub const MAX_CLAIM: usize = 64;

impl Store {
    /// Claims the queued challenge `id` for this node until `lease_until_ms` (it becomes
    /// `calling`); `false` when it was not queued (another node has it, or it was decided).
    pub async fn claim(&self, id: &ChallengeId, at_ms: i64, lease_until_ms: i64) -> Result<bool> {
        self.transition_claiming(
            id,
            ChallengeState::Calling,
            at_ms,
            None,
            None,
            Some(lease_until_ms),
            None,
        )
        .await
    }

    /// Claims up to `max` (at most [`MAX_CLAIM`]) of the oldest queued challenges that have
    /// not expired, in one transaction (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
    /// that nodes claiming at once take different ones): the dispatcher of a node with room
    /// for many calls takes them in one round of statements, not one round each. Oldest
    /// first.
    pub async fn claim_oldest(
        &self,
        at_ms: i64,
        lease_until_ms: i64,
        max: usize,
    ) -> Result<Vec<ChallengeId>> {
        let max = max.clamp(1, MAX_CLAIM);
        // One statement, the transaction's first: on SQLite it takes the write lock (no
        // stale read to upgrade), on PostgreSQL it skips rows other nodes are claiming. On
        // PostgreSQL the rows are picked in a CTE, which is evaluated once: a `LIMIT … FOR
        // UPDATE SKIP LOCKED` subquery under `IN` may be run again for rows of the outer
        // UPDATE and take more than its limit.
        let sql = match self.backend {
            Backend::Postgres => {
                "WITH picked AS (SELECT id FROM challenges WHERE state = 'queued' \
                 AND expires_at > $1 ORDER BY created_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 UPDATE challenges SET state = 'calling', updated_at = $1, claimed_by = $2, \
                 lease_until = $3 FROM picked WHERE challenges.id = picked.id \
                 AND challenges.state = 'queued' RETURNING challenges.id, challenges.created_at"
            }
            Backend::Sqlite => {
                "UPDATE challenges SET state = 'calling', updated_at = $1, claimed_by = $2, \
                 lease_until = $3 WHERE state = 'queued' AND id IN (SELECT id FROM challenges \
                 WHERE state = 'queued' AND expires_at > $1 ORDER BY created_at LIMIT $4) \
                 RETURNING id, created_at"
            }
        };
        let mut tx = self.pool.begin().await?;
        let mut claimed: Vec<(i64, String)> = sqlx::query_as(sql)
            .bind(at_ms)
            .bind(self.node())
            .bind(lease_until_ms)
            .bind(max as i64)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|(id, created): (String, i64)| (created, id))
            .collect();
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        // RETURNING follows no order: the oldest first, as the dispatcher calls them.
        claimed.sort();
        let ids: Vec<ChallengeId> = claimed
            .into_iter()
            .map(|(_, id)| ChallengeId::from_stored(id))
            .collect();
        insert_events(&mut tx, &ids, ChallengeState::Calling, at_ms).await?;
        tx.commit().await?;
        for id in &ids {
            self.announce(id, ChallengeState::Calling);
        }
        Ok(ids)
    }

    /// Extends this node's claims on the challenges it is calling to `lease_until_ms`;
    /// returns the ones it still holds.
    pub async fn renew_claims(&self, lease_until_ms: i64) -> Result<Vec<ChallengeId>> {
        let sql = format!(
            "UPDATE challenges SET lease_until = $1 WHERE claimed_by = $2 \
             AND state IN ({}) RETURNING id",
            in_call_sql()
        );
        let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(lease_until_ms)
            .bind(self.node())
            .fetch_all(&self.pool)
            .await?;
        Ok(ids.into_iter().map(ChallengeId::from_stored).collect())
    }

    /// Challenges in a call whose node's claim lapsed before `now_ms` become `interrupted`,
    /// and so do their calls; returns their ids. They are never called again.
    pub async fn interrupt_lapsed(&self, now_ms: i64) -> Result<Vec<ChallengeId>> {
        let sql = format!(
            "SELECT id FROM challenges WHERE state IN ({}) AND COALESCE(lease_until, 0) < $1",
            in_call_sql()
        );
        let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(now_ms)
            .fetch_all(&self.pool)
            .await?;
        let mut done = Vec::new();
        for id in ids.into_iter().map(ChallengeId::from_stored) {
            if self
                .transition(
                    &id,
                    ChallengeState::Interrupted,
                    now_ms,
                    Some("the node calling it stopped (its claim lapsed)"),
                    None,
                )
                .await?
            {
                sqlx::query(
                    "UPDATE calls SET outcome = 'interrupted', ended_at = $1, \
                     detail = 'the node calling it stopped' \
                     WHERE challenge_id = $2 AND ended_at IS NULL",
                )
                .bind(now_ms)
                .bind(id.as_str())
                .execute(&self.pool)
                .await?;
                done.push(id);
            }
        }
        Ok(done)
    }

    /// At start: challenges whose call was in progress when the gateway stopped become
    /// `interrupted` (with an event), and so do their calls. Returns how many challenges.
    pub async fn interrupt_unfinished(&self, now_ms: i64) -> Result<u64> {
        let sql = format!(
            "SELECT id FROM challenges WHERE state IN ({})",
            in_call_sql()
        );
        let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for id in ids.into_iter().map(ChallengeId::from_stored) {
            if self
                .transition(
                    &id,
                    ChallengeState::Interrupted,
                    now_ms,
                    Some("the gateway stopped during the call"),
                    None,
                )
                .await?
            {
                n += 1;
            }
        }
        sqlx::query(
            "UPDATE calls SET outcome = 'interrupted', ended_at = $1 WHERE ended_at IS NULL",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(n)
    }
}
