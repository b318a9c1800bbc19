//! Limits checked and counted where they are enforced: in the transaction that makes a
//! challenge (or admits a second call of it). On SQLite the transaction's first statement is
//! a write, so it holds the database's one writer lock throughout; on PostgreSQL every
//! admission takes one transaction-scoped advisory lock before it counts, so that two nodes
//! admitting at once are admitted one after the other. A limit's calls are counted in buckets
//! of a sixtieth of its window: a check sums at most 61 rows, and counts every call of the
//! last window (and at most a bucket's worth before it), so the limit is never exceeded.
//!
//! What is counted and how much is allowed is the policy's to say (`callverify-policy`); the
//! store only keeps the counts and applies them.

use sqlx::{AssertSqlSafe, Row};

use crate::types::undecided_sql;
use crate::{Backend, PhoneNumber, Result, Store};

/// What a limit counts calls of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CountScope {
    /// One number.
    Phone,
    /// One user.
    User,
    /// One API key.
    ApiKey,
    /// One country (ISO 3166 code).
    Country,
}

impl CountScope {
    /// Its name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CountScope::Phone => "phone",
            CountScope::User => "user",
            CountScope::ApiKey => "api_key",
            CountScope::Country => "country",
        }
    }
}

/// One limit a call must stay within, and is counted against when admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// What it counts.
    pub scope: CountScope,
    /// Which one (the E.164 number, the user id, the key's id, the country code).
    pub key: String,
    /// At most this many calls…
    pub max: u32,
    /// …in this many milliseconds.
    pub window_ms: i64,
}

impl Counter {
    fn bucket_ms(&self) -> i64 {
        (self.window_ms / 60).max(1)
    }
}

/// What admitting a call checks: the limits it is counted against, the cap on challenges
/// waiting for or in a call, and whether fraud blocks refuse it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Checked, and counted when admitted.
    pub counters: Vec<Counter>,
    /// Challenges waiting for or in a call, at most (the new one included).
    pub max_active: Option<u32>,
    /// Refused while a fraud block holds for the user or the number.
    pub blocks: bool,
}

impl Admission {
    fn is_empty(&self) -> bool {
        self.counters.is_empty() && self.max_active.is_none() && !self.blocks
    }
}

/// Why a call was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// A limit is reached: `count` calls in the window already.
    Limit {
        /// Which limit.
        counter: Counter,
        /// The calls counted before this one.
        count: i64,
    },
    /// `active` challenges wait for or are in a call (this one included); the cap is `cap`.
    TooManyCalls {
        /// How many.
        active: i64,
        /// The cap.
        cap: u32,
    },
    /// A fraud report blocks the user or the number until this time (ms since the epoch).
    FraudBlock {
        /// When the block lifts.
        until_ms: i64,
    },
}

/// An arbitrary constant: the key of the advisory lock every admission takes on PostgreSQL.
const ADMISSION_LOCK: i64 = 0x0063_7661_646d_6974; // "cvadmit"

/// In `tx`: counts the call against `a`'s limits and checks them, the cap and the blocks of
/// `user` and `phone` at `now_ms`. On `Err(refused)` the caller must roll the transaction
/// back (nothing it wrote may stay, the counts included).
pub(crate) async fn admit(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    a: &Admission,
    user: Option<&str>,
    phone: &PhoneNumber,
    now_ms: i64,
) -> Result<std::result::Result<(), Refused>> {
    if a.is_empty() {
        return Ok(Ok(()));
    }
    if backend == Backend::Postgres {
        // One lock for every admission: the counts and the cap read below include every
        // call admitted before, on any node. (The function returns void, which the Any
        // driver cannot decode: hence the count.)
        sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l")
            .bind(ADMISSION_LOCK)
            .fetch_one(&mut **tx)
            .await?;
    }
    // Counted first (on SQLite the write that takes the lock, when the caller has not
    // written yet), then checked with this call included.
    count(tx, a, now_ms).await?;
    check(tx, a, user, phone, now_ms).await
}

/// In `tx`: adds the call to the bucket of now of each of `a`'s limits.
async fn count(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    a: &Admission,
    now_ms: i64,
) -> Result<()> {
    if !a.counters.is_empty() {
        let values: Vec<String> = (0..a.counters.len())
            .map(|i| format!("(${}, ${}, ${}, 1)", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO rate_counts (scope, key, bucket, n) VALUES {} \
             ON CONFLICT (scope, key, bucket) DO UPDATE SET n = rate_counts.n + 1",
            values.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for c in &a.counters {
            let g = c.bucket_ms();
            q = q
                .bind(c.scope.as_str())
                .bind(c.key.as_str())
                .bind(now_ms - now_ms.rem_euclid(g));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// In `tx`, in one statement: whether a fraud block holds for `user` or `phone`, a limit of
/// `a` is passed (this call counted), or the cap on challenges waiting for or in a call.
async fn check(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    a: &Admission,
    user: Option<&str>,
    phone: &PhoneNumber,
    now_ms: i64,
) -> Result<std::result::Result<(), Refused>> {
    let mut parts = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    for (i, _) in a.counters.iter().enumerate() {
        parts.push(format!(
            "(SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM rate_counts \
             WHERE scope = {} AND key = {} AND bucket > {}) AS c{i}",
            next(),
            next(),
            next()
        ));
    }
    parts.push(format!(
        "(SELECT COUNT(*) FROM challenges WHERE state IN ({})) AS active",
        undecided_sql()
    ));
    parts.push(format!(
        "(SELECT MAX(until) FROM fraud_blocks WHERE lifted_at IS NULL AND until > {} \
         AND (user_id = {} OR phone = {})) AS blocked",
        next(),
        next(),
        next()
    ));
    let sql = format!("SELECT {}", parts.join(", "));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for c in &a.counters {
        q = q
            .bind(c.scope.as_str())
            .bind(c.key.as_str())
            .bind(now_ms - c.window_ms - c.bucket_ms());
    }
    let row = q
        .bind(now_ms)
        .bind(user)
        .bind(phone.as_e164())
        .fetch_one(&mut **tx)
        .await?;
    if a.blocks
        && let Some(until_ms) = row.try_get::<Option<i64>, _>("blocked")?
    {
        return Ok(Err(Refused::FraudBlock { until_ms }));
    }
    for (i, c) in a.counters.iter().enumerate() {
        let with_this: i64 = row.try_get(format!("c{i}").as_str())?;
        if with_this > i64::from(c.max) {
            return Ok(Err(Refused::Limit {
                counter: c.clone(),
                count: with_this - 1,
            }));
        }
    }
    if let Some(cap) = a.max_active {
        let active: i64 = row.try_get("active")?;
        if active > i64::from(cap) {
            return Ok(Err(Refused::TooManyCalls { active, cap }));
        }
    }
    Ok(Ok(()))
}

impl Store {
    /// Admits one more call of a challenge (a second phone it calls) to `phone` of `user`
    /// within `admission`, counted as it is checked, in one transaction.
    pub async fn admit_call(
        &self,
        user: Option<&str>,
        phone: &PhoneNumber,
        admission: &Admission,
        now_ms: i64,
    ) -> Result<std::result::Result<(), Refused>> {
        let mut tx = self.pool.begin().await?;
        let admitted = admit(&mut tx, self.backend, admission, user, phone, now_ms).await?;
        if admitted.is_ok() {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(admitted)
    }

    /// Forgets the counts of calls older than `before_ms` (older than every limit's window).
    pub async fn prune_rate_counts(&self, before_ms: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM rate_counts WHERE bucket < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}
