//! callverify's store: challenges, every state change with its time, the calls with their
//! keys and RTP figures, on SQLite (the embedded default, in WAL mode) or PostgreSQL, with
//! the same queries through sqlx's `Any` driver.
//!
//! The rules that keep the record trustworthy live here, in the SQL: a challenge moves only
//! forward, a decided challenge never changes (the update names the states it may come
//! from), each change is written with its event in one transaction, an idempotency key
//! gives back the challenge it made, and unfinished calls of a previous run become
//! `interrupted` at start. No HTTP and no SIP here.

pub mod types;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

pub use types::{BadNumber, ChallengeState, PhoneNumber, Purpose, new_id};

/// Which database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (`sqlite://path`).
    Sqlite,
    /// PostgreSQL (`postgres://…`).
    Postgres,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no supported database.
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://…")]
    Url(String),
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The same idempotency key came with a different request.
    #[error("idempotency key {0:?} was used for a different request")]
    IdempotencyConflict(String),
    /// A stored value that this version does not know.
    #[error("stored value {0:?} is not understood")]
    Corrupt(String),
}

/// A result of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A challenge to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewChallenge {
    /// The API key that asks.
    pub api_key_id: String,
    /// Its `Idempotency-Key`, if any.
    pub idempotency_key: Option<String>,
    /// A digest of the request, to tell a replay from a different request with the same key.
    pub request_hash: String,
    /// The user, when the challenge targets a registered user.
    pub user_id: Option<String>,
    /// The number to call.
    pub phone: PhoneNumber,
    /// Prompt language code.
    pub language: String,
    /// Sign-in or enrolment.
    pub purpose: Purpose,
    /// Where the decision is posted.
    pub callback_url: Option<String>,
    /// Now, in ms since the epoch.
    pub now_ms: i64,
    /// When it expires, in ms since the epoch.
    pub expires_at_ms: i64,
}

/// A stored challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Its id.
    pub id: String,
    /// The API key that made it.
    pub api_key_id: String,
    /// The user, if any.
    pub user_id: Option<String>,
    /// The number.
    pub phone: PhoneNumber,
    /// Prompt language code.
    pub language: String,
    /// Sign-in or enrolment.
    pub purpose: Purpose,
    /// Where the decision is posted.
    pub callback_url: Option<String>,
    /// Where it is.
    pub state: ChallengeState,
    /// Why it ended (a failure's detail), if it did.
    pub reason: Option<String>,
    /// The SIP status of a failure.
    pub sip_status: Option<i64>,
    /// Created, ms since the epoch.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
    /// Expiry.
    pub expires_at_ms: i64,
    /// When decided.
    pub decided_at_ms: Option<i64>,
}

/// One state change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The new state.
    pub state: ChallengeState,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Why, if said.
    pub detail: Option<String>,
}

/// The store.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

const MIGRATIONS_SQLITE: &[(i64, &str)] = &[(
    1,
    include_str!("../migrations/sqlite/0001_challenges_and_calls.sql"),
)];
const MIGRATIONS_POSTGRES: &[(i64, &str)] = &[(
    1,
    include_str!("../migrations/postgres/0001_challenges_and_calls.sql"),
)];

const CHALLENGE_COLUMNS: &str = "id, api_key_id, user_id, phone, language, purpose, callback_url, \
     state, reason, sip_status, created_at, updated_at, expires_at, decided_at";

impl Store {
    /// Connects (creating a SQLite file if needed) and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Url(url.to_string()));
        };
        let mut opts =
            AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 16 });
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers (polls) run beside the writer; a writer waits for
                    // another instead of failing at once.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 5000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let pool = opts.connect(&url).await?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// The database in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> Result<()> {
        self.pool
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations \
                 (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
        let migrations = match self.backend {
            Backend::Sqlite => MIGRATIONS_SQLITE,
            Backend::Postgres => MIGRATIONS_POSTGRES,
        };
        for &(version, sql) in migrations {
            let mut tx = self.pool.begin().await?;
            if self.backend == Backend::Postgres {
                // Two nodes starting together: one migrates, the other waits here.
                tx.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                    .await?;
            }
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            for stmt in sql
                .split(';')
                .map(str::trim)
                .filter(|s| !strip_comments(s).is_empty())
            {
                tx.execute(AssertSqlSafe(stmt.to_string())).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(0i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Creates a challenge in `queued` (with its first event), or, when the same API key
    /// sent the same idempotency key before, returns the challenge that request made
    /// (`true`: a replay). The same key with a different request is an error.
    pub async fn create_challenge(&self, c: &NewChallenge) -> Result<(Challenge, bool)> {
        if let Some(key) = &c.idempotency_key
            && let Some(found) = self.by_idempotency_key(&c.api_key_id, key).await?
        {
            return self.replay(found, key, &c.request_hash);
        }
        let id = new_id("ch");
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO challenges (id, api_key_id, idempotency_key, request_hash, user_id, \
             phone, language, purpose, callback_url, state, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10, $11)",
        )
        .bind(&id)
        .bind(&c.api_key_id)
        .bind(c.idempotency_key.as_deref())
        .bind(&c.request_hash)
        .bind(c.user_id.as_deref())
        .bind(c.phone.as_e164())
        .bind(&c.language)
        .bind(c.purpose.as_str())
        .bind(c.callback_url.as_deref())
        .bind(c.now_ms)
        .bind(c.expires_at_ms)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            drop(tx);
            // Two requests with one key at once: the loser finds the winner's row.
            if let Some(key) = &c.idempotency_key
                && let Some(found) = self.by_idempotency_key(&c.api_key_id, key).await?
            {
                return self.replay(found, key, &c.request_hash);
            }
            return Err(e.into());
        }
        insert_event(&mut tx, &id, ChallengeState::Queued, c.now_ms, None).await?;
        tx.commit().await?;
        let created = self
            .challenge(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("challenge {id} vanished")))?;
        Ok((created, false))
    }

    fn replay(
        &self,
        found: (Challenge, String),
        key: &str,
        hash: &str,
    ) -> Result<(Challenge, bool)> {
        if found.1 == hash {
            Ok((found.0, true))
        } else {
            Err(StoreError::IdempotencyConflict(key.to_string()))
        }
    }

    async fn by_idempotency_key(
        &self,
        api_key_id: &str,
        key: &str,
    ) -> Result<Option<(Challenge, String)>> {
        let sql = format!(
            "SELECT {CHALLENGE_COLUMNS}, request_hash FROM challenges \
             WHERE api_key_id = $1 AND idempotency_key = $2"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(api_key_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let hash: Option<String> = r.try_get("request_hash")?;
            Ok((challenge_from(&r)?, hash.unwrap_or_default()))
        })
        .transpose()
    }

    /// The challenge with this id.
    pub async fn challenge(&self, id: &str) -> Result<Option<Challenge>> {
        let sql = format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(challenge_from).transpose()
    }

    /// Moves a challenge to `to` at `at_ms` and records the change, only from an earlier
    /// undecided state; `false` when it was not moved (already there or beyond, decided, or
    /// unknown). For a decision, `reason` and `sip_status` are kept with it.
    pub async fn transition(
        &self,
        id: &str,
        to: ChallengeState,
        at_ms: i64,
        reason: Option<&str>,
        sip_status: Option<i64>,
    ) -> Result<bool> {
        let from = to.predecessors();
        if from.is_empty() {
            return Ok(false);
        }
        let list: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let decided = if to.is_terminal() { "$2" } else { "NULL" };
        let sql = format!(
            "UPDATE challenges SET state = $1, updated_at = $2, decided_at = {decided}, \
             reason = COALESCE($3, reason), sip_status = COALESCE($4, sip_status) \
             WHERE id = $5 AND state IN ({})",
            list.join(", ")
        );
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(at_ms)
            .bind(reason)
            .bind(sip_status)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_event(&mut tx, id, to, at_ms, reason).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Every state change of a challenge, in order.
    pub async fn events(&self, id: &str) -> Result<Vec<StateChange>> {
        let rows = sqlx::query(
            "SELECT state, at, detail FROM challenge_events WHERE challenge_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                Ok(StateChange {
                    state: ChallengeState::from_name(&state).ok_or(StoreError::Corrupt(state))?,
                    at_ms: r.try_get("at")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// At start: challenges whose call was in progress when the gateway stopped become
    /// `interrupted` (with an event), and so do their calls. Returns how many challenges.
    pub async fn interrupt_unfinished(&self, now_ms: i64) -> Result<u64> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM challenges WHERE state IN ('calling', 'ringing', 'answered')",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut n = 0;
        for id in ids {
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

fn strip_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    state: ChallengeState,
    at_ms: i64,
    detail: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO challenge_events (challenge_id, state, at, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(at_ms)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn challenge_from(r: &AnyRow) -> Result<Challenge> {
    let state: String = r.try_get("state")?;
    let purpose: String = r.try_get("purpose")?;
    let phone: String = r.try_get("phone")?;
    Ok(Challenge {
        id: r.try_get("id")?,
        api_key_id: r.try_get("api_key_id")?,
        user_id: r.try_get("user_id")?,
        phone: PhoneNumber::parse(&phone).map_err(|_| StoreError::Corrupt(phone))?,
        language: r.try_get("language")?,
        purpose: Purpose::from_name(&purpose).ok_or(StoreError::Corrupt(purpose))?,
        callback_url: r.try_get("callback_url")?,
        state: ChallengeState::from_name(&state).ok_or(StoreError::Corrupt(state))?,
        reason: r.try_get("reason")?,
        sip_status: r.try_get("sip_status")?,
        created_at_ms: r.try_get("created_at")?,
        updated_at_ms: r.try_get("updated_at")?,
        expires_at_ms: r.try_get("expires_at")?,
        decided_at_ms: r.try_get("decided_at")?,
    })
}
