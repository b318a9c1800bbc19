//! callverify's store: challenges, every state change with its time, the calls with their
//! keys and RTP figures, on SQLite (the embedded default, in WAL mode) or PostgreSQL, with
//! the same queries through sqlx's `Any` driver.
//!
//! The rules that keep the record trustworthy live here, in the SQL: a challenge moves only
//! forward, a decided challenge never changes (the update names the states it may come
//! from), each change is written with its event in one transaction, an idempotency key
//! gives back the challenge it made, and unfinished calls of a previous run become
//! `interrupted` at start. What is older than the retention period is forgotten in batches
//! (`retention.rs`). No HTTP and no SIP here.

mod cache;
pub mod fault;
mod limits;
mod retention;
pub mod types;
mod users;
mod webhooks;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

pub use limits::{Admission, CountScope, Counter, Refused};
pub use retention::Forgotten;
pub use types::{BadNumber, ChallengeState, PhoneNumber, PhoneRole, Purpose, new_id, now_ms};
pub use users::{FraudBlock, Phone, PhoneState, TrustedDevice};
pub use webhooks::{Webhook, WebhookAttempt, WebhookNext};

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
    /// The store cannot be shared as asked.
    #[error("{0}")]
    InUse(#[from] std::io::Error),
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
    /// For an enrolment: the phone is registered (pending) in this role with the challenge,
    /// and verified when it is approved.
    pub enrol: Option<PhoneRole>,
    /// How long an approved sign-in trusts the device (0: no trusted-device token).
    pub remember_device_ms: i64,
    /// How long a fraud report on it blocks the user and the numbers called (0: no block).
    pub fraud_block_ms: i64,
    /// An enrolment that must first be approved on the user's current primary phone (the
    /// runner calls that phone first, and the new one only if it approves).
    pub confirm_primary: bool,
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
    /// How long an approval trusts the device (0: not asked).
    pub remember_device_ms: i64,
    /// An enrolment to be approved on the user's current primary phone first.
    pub confirm_primary: bool,
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

/// A call being placed for a challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCall {
    /// Its id (`call_…`).
    pub id: String,
    /// The challenge it serves.
    pub challenge_id: String,
    /// The number, masked: the call log never holds a whole number.
    pub phone_masked: String,
    /// When the INVITE went out, ms since the epoch.
    pub started_at_ms: i64,
}

/// A key pressed during a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key.
    pub digit: String,
    /// `in_band` or `rfc4733`.
    pub source: String,
    /// Milliseconds since the INVITE.
    pub at_ms: i64,
}

/// One step of a call, for the operator's timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallStep {
    /// Milliseconds since the INVITE.
    pub at_ms: i64,
    /// `invite`, `sip` (a response), `prompt`, `key`, `verdict` or `end`.
    pub kind: String,
    /// What: the trunk, `180 Ringing`, the prompt's name, `# (in_band)`, the outcome…
    pub detail: String,
}

/// How a call ended, with what the call log keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallEnd {
    /// The outcome's name (`approved`, `busy`, …).
    pub outcome: String,
    /// The SIP status of a failure.
    pub sip_status: Option<i64>,
    /// Why, in words.
    pub detail: Option<String>,
    /// The trunk used.
    pub trunk: Option<String>,
    /// When it ended, ms since the epoch.
    pub ended_at_ms: i64,
    /// INVITE to ringing.
    pub post_dial_delay_ms: Option<i64>,
    /// INVITE to answer.
    pub time_to_answer_ms: Option<i64>,
    /// Answer to the first key.
    pub time_to_key_ms: Option<i64>,
    /// INVITE to the verdict.
    pub time_to_verdict_ms: Option<i64>,
    /// RTP packets sent.
    pub packets_sent: i64,
    /// RTP packets accepted.
    pub packets_received: i64,
    /// RTP packets lost.
    pub packets_lost: i64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Packets from other sources or SSRCs (or SRTP packets that did not authenticate).
    pub packets_rejected: i64,
    /// Whether the media was SRTP.
    pub srtp: bool,
    /// The keys, in order.
    pub keys: Vec<KeyRecord>,
    /// What happened, in order.
    pub steps: Vec<CallStep>,
}

/// One call in the call log.
#[derive(Clone, Debug, PartialEq)]
pub struct CallEntry {
    /// Its id.
    pub id: String,
    /// The challenge.
    pub challenge_id: String,
    /// The masked number.
    pub phone_masked: String,
    /// Started, ms since the epoch.
    pub started_at_ms: i64,
    /// The end, once the call is over.
    pub end: Option<CallEnd>,
}

/// Which calls to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallFilter {
    /// Only this outcome (`in_progress` for calls not ended).
    pub outcome: Option<String>,
    /// Started at or after (ms since the epoch).
    pub from_ms: Option<i64>,
    /// Started before.
    pub to_ms: Option<i64>,
    /// Only this masked number.
    pub phone_masked: Option<String>,
    /// Only this trunk.
    pub trunk: Option<String>,
}

/// The store.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    url: std::sync::Arc<str>,
    changes: tokio::sync::broadcast::Sender<Change>,
    cache: Option<cache::Shared>,
    /// This process's name in claims (`node_…`, new at each start).
    node: std::sync::Arc<str>,
}

/// A state change: made through this store (this process), or, on a [`Store::cached`]
/// PostgreSQL store, by anyone (announced by the database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The challenge.
    pub id: String,
    /// Its new state.
    pub state: ChallengeState,
}

const MIGRATIONS_SQLITE: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_challenges_and_calls.sql"),
    ),
    (2, include_str!("../migrations/sqlite/0002_api_keys.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_users_trust_webhooks.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_call_steps.sql")),
    (6, include_str!("../migrations/sqlite/0006_claims.sql")),
    (7, include_str!("../migrations/sqlite/0007_call_srtp.sql")),
    (
        8,
        include_str!("../migrations/sqlite/0008_limits_blocks_scopes.sql"),
    ),
    (9, include_str!("../migrations/sqlite/0009_retention.sql")),
];
const MIGRATIONS_POSTGRES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/postgres/0001_challenges_and_calls.sql"),
    ),
    (2, include_str!("../migrations/postgres/0002_api_keys.sql")),
    (
        3,
        include_str!("../migrations/postgres/0003_users_trust_webhooks.sql"),
    ),
    (
        4,
        include_str!("../migrations/postgres/0004_change_notifications.sql"),
    ),
    (
        5,
        include_str!("../migrations/postgres/0005_call_steps.sql"),
    ),
    (6, include_str!("../migrations/postgres/0006_claims.sql")),
    (7, include_str!("../migrations/postgres/0007_call_srtp.sql")),
    (
        8,
        include_str!("../migrations/postgres/0008_limits_blocks_scopes.sql"),
    ),
    (9, include_str!("../migrations/postgres/0009_retention.sql")),
];

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Identity services: create and read challenges.
    Service,
    /// Operators: read the call log.
    Operator,
}

impl KeyKind {
    /// Its name (`service`, `operator`), as stored and as `create-api-key --kind` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Service => "service",
            KeyKind::Operator => "operator",
        }
    }

    /// The kind named `name`.
    pub fn from_name(name: &str) -> Option<KeyKind> {
        [KeyKind::Service, KeyKind::Operator]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// A stored API key (never its secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// Its id (`key_…`).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// What it may do.
    pub kind: KeyKind,
    /// A service key that may replace users' verified phones without the old phone's
    /// approval, and remove verified phones.
    pub phone_admin: bool,
}

fn secret_hash(secret: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const CHALLENGE_COLUMNS: &str = "id, api_key_id, user_id, phone, language, purpose, callback_url, \
     state, reason, sip_status, created_at, updated_at, expires_at, decided_at, remember_device_ms, \
     confirm_primary";

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
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let store = Store {
            pool,
            backend,
            url: url.into(),
            changes,
            cache: None,
            node: new_id("node").into(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The same store, keeping a copy of the challenges it reads (see `cache.rs`): on
    /// PostgreSQL kept current by the database's change notifications, bypassed while those
    /// are not known to arrive; on SQLite kept current by this process, which therefore holds
    /// the lock file `<database>.node-lock` (a second cached store on the file is refused).
    pub fn cached(mut self) -> Result<Store> {
        if self.cache.is_some() {
            return Ok(self);
        }
        let cache = match self.backend {
            Backend::Sqlite => {
                std::sync::Arc::new(cache::Cache::new(true, cache::sqlite_lock(&self.url)?))
            }
            Backend::Postgres => {
                let cache = std::sync::Arc::new(cache::Cache::new(false, None));
                cache::follow_postgres(
                    self.url.to_string(),
                    self.pool.clone(),
                    std::sync::Arc::downgrade(&cache),
                    self.changes.clone(),
                );
                cache
            }
        };
        self.cache = Some(cache);
        Ok(self)
    }

    /// Why this store cannot go on, if it cannot: on a cached PostgreSQL store, the task
    /// that follows the database's change notifications has ended (it ends only with the
    /// store, or by a bug). The gateway then stops so that a supervisor restarts it.
    pub fn failure(&self) -> Option<&'static str> {
        self.cache
            .as_ref()
            .is_some_and(|c| c.follower_ended())
            .then_some("the store's change notification task ended")
    }

    /// Whether reads are served from the copy now (a cached store whose copy is current).
    pub fn cache_live(&self) -> bool {
        self.cache.as_ref().is_some_and(|c| c.is_live())
    }

    /// This process's name in the claims it makes.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The database in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// State changes made through this store from now on (a receiver that lags is told so
    /// and should read the store again).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
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
            for stmt in statements(sql)
                .iter()
                .map(|s| s.trim())
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
    /// (`true`: a replay). The same key with a different request is an error. No limit is
    /// checked (see [`Store::create_admitted`]).
    pub async fn create_challenge(&self, c: &NewChallenge) -> Result<(Challenge, bool)> {
        match self.create_admitted(c, &Admission::default()).await? {
            Ok(made) => Ok(made),
            Err(r) => Err(StoreError::Corrupt(format!(
                "a challenge with no limits was refused: {r:?}"
            ))),
        }
    }

    /// [`Store::create_challenge`] within the limits of `admission`, checked and counted in
    /// the transaction that inserts the challenge: `Ok(Err(refused))` when they refuse it
    /// (then nothing is written, and nothing counted). A replay of an idempotency key is
    /// answered whatever the limits.
    pub async fn create_admitted(
        &self,
        c: &NewChallenge,
        admission: &Admission,
    ) -> Result<std::result::Result<(Challenge, bool), Refused>> {
        if let Some(key) = &c.idempotency_key
            && let Some(found) = self.by_idempotency_key(&c.api_key_id, key).await?
        {
            return self.replay(found, key, &c.request_hash).map(Ok);
        }
        let id = new_id("ch");
        let mut tx = self.pool.begin().await?;
        // The first statement is a write: on SQLite the transaction holds the writer lock
        // from here, so the limits below are read and counted with no other admission
        // between.
        let inserted = sqlx::query(
            "INSERT INTO challenges (id, api_key_id, idempotency_key, request_hash, user_id, \
             phone, language, purpose, callback_url, state, created_at, updated_at, expires_at, \
             remember_device_ms, fraud_block_ms, confirm_primary) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $10, $11, $12, $13, $14)",
        )
        .bind(&id)
        .bind(&c.api_key_id)
        .bind(c.idempotency_key.as_deref())
        .bind(&c.request_hash)
        .bind(c.user_id.as_deref())
        .bind(c.phone.stored())
        .bind(&c.language)
        .bind(c.purpose.as_str())
        .bind(c.callback_url.as_deref())
        .bind(c.now_ms)
        .bind(c.expires_at_ms)
        .bind(c.remember_device_ms)
        .bind(c.fraud_block_ms.max(0))
        .bind(i64::from(c.confirm_primary))
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            drop(tx);
            // Two requests with one key at once: the loser finds the winner's row.
            if let Some(key) = &c.idempotency_key
                && let Some(found) = self.by_idempotency_key(&c.api_key_id, key).await?
            {
                return self.replay(found, key, &c.request_hash).map(Ok);
            }
            return Err(e.into());
        }
        insert_event(&mut tx, &id, ChallengeState::Queued, c.now_ms, None).await?;
        if let Some(role) = c.enrol {
            let user = c
                .user_id
                .as_deref()
                .ok_or_else(|| StoreError::Corrupt("an enrolment challenge needs a user".into()))?;
            users::insert_phone(&mut tx, user, &c.phone, role, &c.language, &id, c.now_ms).await?;
        }
        if let Err(refused) = limits::admit(
            &mut tx,
            self.backend,
            admission,
            c.user_id.as_deref(),
            &c.phone,
            c.now_ms,
        )
        .await?
        {
            tx.rollback().await?;
            return Ok(Err(refused));
        }
        tx.commit().await?;
        let created = self
            .challenge(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("challenge {id} vanished")))?;
        Ok(Ok((created, false)))
    }

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
        let admitted = limits::admit(&mut tx, self.backend, admission, user, phone, now_ms).await?;
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

    /// The challenge an earlier request with this API key and idempotency key made, if
    /// any (an error if that request's digest was not `hash`).
    pub async fn idempotent(
        &self,
        api_key_id: &str,
        key: &str,
        hash: &str,
    ) -> Result<Option<Challenge>> {
        match self.by_idempotency_key(api_key_id, key).await? {
            Some(found) => Ok(Some(self.replay(found, key, hash)?.0)),
            None => Ok(None),
        }
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

    /// The challenge with this id (from the copy on a cached store).
    pub async fn challenge(&self, id: &str) -> Result<Option<Challenge>> {
        let Some(cache) = &self.cache else {
            return self.read_challenge(id).await;
        };
        if let Some(c) = cache.get(id) {
            return Ok(Some(c));
        }
        let generation = cache.generation(id);
        let c = self.read_challenge(id).await?;
        if let (Some(c), Some(g)) = (&c, generation) {
            cache.put(c, g);
        }
        Ok(c)
    }

    async fn read_challenge(&self, id: &str) -> Result<Option<Challenge>> {
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
        self.transition_claiming(id, to, at_ms, reason, sip_status, None, None)
            .await
    }

    /// [`Store::transition`] by a call to `called`: a fraud report (0#) then blocks that
    /// number too, besides the challenge's user and number.
    pub async fn transition_called(
        &self,
        id: &str,
        to: ChallengeState,
        at_ms: i64,
        reason: Option<&str>,
        sip_status: Option<i64>,
        called: &PhoneNumber,
    ) -> Result<bool> {
        self.transition_claiming(id, to, at_ms, reason, sip_status, None, Some(called))
            .await
    }

    /// Claims the queued challenge `id` for this node until `lease_until_ms` (it becomes
    /// `calling`); `false` when it was not queued (another node has it, or it was decided).
    pub async fn claim(&self, id: &str, at_ms: i64, lease_until_ms: i64) -> Result<bool> {
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

    /// Claims the oldest queued challenge that has not expired, if any (on PostgreSQL with
    /// `FOR UPDATE SKIP LOCKED`, so that nodes claiming at once take different ones).
    pub async fn claim_next(&self, at_ms: i64, lease_until_ms: i64) -> Result<Option<String>> {
        let skip_locked = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // One statement, the transaction's first: on SQLite it takes the write lock (no
        // stale read to upgrade), on PostgreSQL it skips rows other nodes are claiming.
        let sql = format!(
            "UPDATE challenges SET state = 'calling', updated_at = $1, claimed_by = $2, \
             lease_until = $3 WHERE state = 'queued' AND id = (SELECT id FROM challenges \
             WHERE state = 'queued' AND expires_at > $1 ORDER BY created_at LIMIT 1{skip_locked}) \
             RETURNING id"
        );
        let mut tx = self.pool.begin().await?;
        let Some(id): Option<String> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(at_ms)
            .bind(self.node())
            .bind(lease_until_ms)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        insert_event(&mut tx, &id, ChallengeState::Calling, at_ms, None).await?;
        tx.commit().await?;
        self.announce(&id, ChallengeState::Calling);
        Ok(Some(id))
    }

    /// Extends this node's claims on the challenges it is calling to `lease_until_ms`;
    /// returns the ones it still holds.
    pub async fn renew_claims(&self, lease_until_ms: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE challenges SET lease_until = $1 WHERE claimed_by = $2 \
             AND state IN ('calling', 'ringing', 'answered') RETURNING id",
        )
        .bind(lease_until_ms)
        .bind(self.node())
        .fetch_all(&self.pool)
        .await?)
    }

    /// Challenges in a call whose node's claim lapsed before `now_ms` become `interrupted`,
    /// and so do their calls; returns their ids. They are never called again.
    pub async fn interrupt_lapsed(&self, now_ms: i64) -> Result<Vec<String>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM challenges WHERE state IN ('calling', 'ringing', 'answered') \
             AND COALESCE(lease_until, 0) < $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut done = Vec::new();
        for id in ids {
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
                .bind(&id)
                .execute(&self.pool)
                .await?;
                done.push(id);
            }
        }
        Ok(done)
    }

    fn announce(&self, id: &str, state: ChallengeState) {
        if let Some(cache) = &self.cache {
            cache.forget(id);
        }
        let _ = self.changes.send(Change {
            id: id.to_string(),
            state,
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn transition_claiming(
        &self,
        id: &str,
        to: ChallengeState,
        at_ms: i64,
        reason: Option<&str>,
        sip_status: Option<i64>,
        lease_until_ms: Option<i64>,
        called: Option<&PhoneNumber>,
    ) -> Result<bool> {
        let from = to.predecessors();
        if from.is_empty() {
            return Ok(false);
        }
        let list: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let decided = if to.is_terminal() { "$2" } else { "NULL" };
        let claim = match lease_until_ms {
            Some(_) => ", claimed_by = $6, lease_until = $7",
            None => "",
        };
        let sql = format!(
            "UPDATE challenges SET state = $1, updated_at = $2, decided_at = {decided}, \
             reason = COALESCE($3, reason), sip_status = COALESCE($4, sip_status){claim} \
             WHERE id = $5 AND state IN ({})",
            list.join(", ")
        );
        let mut tx = self.pool.begin().await?;
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(to.as_str())
            .bind(at_ms)
            .bind(reason)
            .bind(sip_status)
            .bind(id);
        if let Some(until) = lease_until_ms {
            q = q.bind(self.node()).bind(until);
        }
        let done = q.execute(&mut *tx).await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_event(&mut tx, id, to, at_ms, reason).await?;
        if to == ChallengeState::Approved {
            users::on_approved(&mut tx, id, at_ms).await?;
        }
        if to == ChallengeState::FraudReported {
            users::on_fraud_reported(&mut tx, id, at_ms, called).await?;
        }
        if to.is_terminal() {
            webhooks::on_decided(&mut tx, id, at_ms).await?;
        }
        tx.commit().await?;
        self.announce(id, to);
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

impl Store {
    /// Makes an API key; returns it and its secret (`cvk_…`), which is shown once: only
    /// its SHA-256 is stored.
    pub async fn create_api_key(
        &self,
        name: &str,
        kind: KeyKind,
        now_ms: i64,
    ) -> Result<(ApiKey, String)> {
        self.create_api_key_with(name, kind, false, now_ms).await
    }

    /// [`Store::create_api_key`], a service key with `phone_admin` if asked (ignored for
    /// other kinds).
    pub async fn create_api_key_with(
        &self,
        name: &str,
        kind: KeyKind,
        phone_admin: bool,
        now_ms: i64,
    ) -> Result<(ApiKey, String)> {
        let id = new_id("key");
        let secret = new_id("cvk");
        let phone_admin = phone_admin && kind == KeyKind::Service;
        sqlx::query(
            "INSERT INTO api_keys (id, name, kind, secret_hash, created_at, phone_admin) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(kind.as_str())
        .bind(secret_hash(&secret))
        .bind(now_ms)
        .bind(i64::from(phone_admin))
        .execute(&self.pool)
        .await?;
        Ok((
            ApiKey {
                id,
                name: name.into(),
                kind,
                phone_admin,
            },
            secret,
        ))
    }

    /// The key whose secret this is, unless unknown or revoked.
    pub async fn api_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, name, kind, phone_admin FROM api_keys \
             WHERE secret_hash = $1 AND revoked_at IS NULL",
        )
        .bind(secret_hash(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(ApiKey {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                kind: KeyKind::from_name(&kind).ok_or(StoreError::Corrupt(kind))?,
                phone_admin: r.try_get::<i64, _>("phone_admin")? != 0,
            })
        })
        .transpose()
    }

    /// The oldest key of `kind` named `name` that is not revoked, if any (for a key the
    /// gateway makes for itself, such as the demo page's, to be made once, not per start).
    pub async fn api_key_named(&self, name: &str, kind: KeyKind) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, phone_admin FROM api_keys WHERE name = $1 AND kind = $2 \
             AND revoked_at IS NULL ORDER BY created_at, id LIMIT 1",
        )
        .bind(name)
        .bind(kind.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ApiKey {
                id: r.try_get("id")?,
                name: name.into(),
                kind,
                phone_admin: r.try_get::<i64, _>("phone_admin")? != 0,
            })
        })
        .transpose()
    }

    /// Revokes a key: its secret stops working.
    pub async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool> {
        let r =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// What a rate limit counts challenges of.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// One number.
    Phone(&'a PhoneNumber),
    /// One user.
    User(&'a str),
    /// One API key.
    ApiKey(&'a str),
}

impl Store {
    /// How many challenges were created for `scope` since `since_ms`.
    pub async fn count_challenges(&self, scope: Scope<'_>, since_ms: i64) -> Result<i64> {
        let (sql, value) = match scope {
            Scope::Phone(p) => (
                "SELECT COUNT(*) FROM challenges WHERE phone = $1 AND created_at >= $2",
                p.stored(),
            ),
            Scope::User(u) => (
                "SELECT COUNT(*) FROM challenges WHERE user_id = $1 AND created_at >= $2",
                u,
            ),
            Scope::ApiKey(k) => (
                "SELECT COUNT(*) FROM challenges WHERE api_key_id = $1 AND created_at >= $2",
                k,
            ),
        };
        Ok(sqlx::query_scalar(sql)
            .bind(value)
            .bind(since_ms)
            .fetch_one(&self.pool)
            .await?)
    }

    /// How many challenges are waiting for or in a call.
    pub async fn active_challenges(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM challenges \
             WHERE state IN ('queued', 'calling', 'ringing', 'answered')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Challenges still queued after their expiry become `expired`; returns their ids.
    /// (A call in progress is bounded by its own timeouts and decides itself.)
    pub async fn expire_due(&self, now_ms: i64) -> Result<Vec<String>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM challenges WHERE state = 'queued' AND expires_at <= $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut expired = Vec::new();
        for id in ids {
            if self
                .transition(
                    &id,
                    ChallengeState::Expired,
                    now_ms,
                    Some("not called before its expiry"),
                    None,
                )
                .await?
            {
                expired.push(id);
            }
        }
        Ok(expired)
    }
}

const CALL_COLUMNS: &str = "id, challenge_id, phone_masked, started_at, trunk, outcome, \
     sip_status, detail, ended_at, post_dial_delay_ms, time_to_answer_ms, time_to_key_ms, \
     time_to_verdict_ms, packets_sent, packets_received, packets_lost, jitter_ms, packets_rejected, \
     srtp";

impl Store {
    /// Records a call as it starts.
    pub async fn start_call(&self, c: &NewCall) -> Result<()> {
        sqlx::query(
            "INSERT INTO calls (id, challenge_id, phone_masked, started_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&c.id)
        .bind(&c.challenge_id)
        .bind(&c.phone_masked)
        .bind(c.started_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records how a call ended, with its keys, once; `false` if it had already ended (or
    /// is unknown).
    pub async fn finish_call(&self, id: &str, e: &CallEnd) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE calls SET outcome = $1, sip_status = $2, detail = $3, trunk = $4, \
             ended_at = $5, post_dial_delay_ms = $6, time_to_answer_ms = $7, time_to_key_ms = $8, \
             time_to_verdict_ms = $9, packets_sent = $10, packets_received = $11, \
             packets_lost = $12, jitter_ms = $13, packets_rejected = $14, srtp = $15 \
             WHERE id = $16 AND ended_at IS NULL",
        )
        .bind(&e.outcome)
        .bind(e.sip_status)
        .bind(e.detail.as_deref())
        .bind(e.trunk.as_deref())
        .bind(e.ended_at_ms)
        .bind(e.post_dial_delay_ms)
        .bind(e.time_to_answer_ms)
        .bind(e.time_to_key_ms)
        .bind(e.time_to_verdict_ms)
        .bind(e.packets_sent)
        .bind(e.packets_received)
        .bind(e.packets_lost)
        .bind(e.jitter_ms)
        .bind(e.packets_rejected)
        .bind(i64::from(e.srtp))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for (seq, k) in e.keys.iter().enumerate() {
            sqlx::query(
                "INSERT INTO call_keys (call_id, seq, digit, source, at_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(seq as i64)
            .bind(&k.digit)
            .bind(&k.source)
            .bind(k.at_ms)
            .execute(&mut *tx)
            .await?;
        }
        for (seq, st) in e.steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO call_steps (call_id, seq, at_ms, kind, detail) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(seq as i64)
            .bind(st.at_ms)
            .bind(&st.kind)
            .bind(&st.detail)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Adds `note` to the detail of a call in the log (after what it says already), e.g.
    /// why the phone to call next was refused.
    pub async fn note_call(&self, id: &str, note: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE calls SET detail = CASE WHEN detail IS NULL THEN $1 \
             ELSE detail || '; ' || $1 END WHERE id = $2",
        )
        .bind(note)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The rows `sql` (with the call's id as `$1`) selects, each made into a `T`.
    async fn rows_of_call<T>(
        &self,
        sql: &'static str,
        id: &str,
        f: impl Fn(&AnyRow) -> Result<T>,
    ) -> Result<Vec<T>> {
        sqlx::query(sql)
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(f)
            .collect()
    }

    /// One call with its keys and steps.
    pub async fn call(&self, id: &str) -> Result<Option<CallEntry>> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE id = $1");
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let mut entry = call_from(&row)?;
        if let Some(end) = &mut entry.end {
            end.keys = self
                .rows_of_call(
                    "SELECT digit, source, at_ms FROM call_keys WHERE call_id = $1 ORDER BY seq",
                    id,
                    |k| {
                        Ok(KeyRecord {
                            digit: k.try_get("digit")?,
                            source: k.try_get("source")?,
                            at_ms: k.try_get("at_ms")?,
                        })
                    },
                )
                .await?;
            end.steps = self
                .rows_of_call(
                    "SELECT at_ms, kind, detail FROM call_steps WHERE call_id = $1 ORDER BY seq",
                    id,
                    |r| {
                        Ok(CallStep {
                            at_ms: r.try_get("at_ms")?,
                            kind: r.try_get("kind")?,
                            detail: r.try_get("detail")?,
                        })
                    },
                )
                .await?;
        }
        Ok(Some(entry))
    }

    /// The call log, newest first: up to `limit` calls matching `filter`, after `cursor`
    /// (from the previous page), and the cursor of the next page if there is one. Keys are
    /// not loaded here (see [`Store::call`]).
    pub async fn calls(
        &self,
        filter: &CallFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<CallEntry>, Option<String>)> {
        enum Param {
            Text(String),
            Int(i64),
        }
        let limit = limit.clamp(1, 500);
        let mut params: Vec<Param> = Vec::new();
        // Adds a value and gives its placeholder.
        let mut bind = |p: Param| {
            params.push(p);
            format!("${}", params.len())
        };
        let mut conds: Vec<String> = Vec::new();
        match filter.outcome.as_deref() {
            Some("in_progress") => conds.push("ended_at IS NULL".into()),
            Some(o) => conds.push(format!("outcome = {}", bind(Param::Text(o.into())))),
            None => {}
        }
        if let Some(p) = &filter.phone_masked {
            conds.push(format!("phone_masked = {}", bind(Param::Text(p.clone()))));
        }
        if let Some(t) = &filter.trunk {
            conds.push(format!("trunk = {}", bind(Param::Text(t.clone()))));
        }
        if let Some(f) = filter.from_ms {
            conds.push(format!("started_at >= {}", bind(Param::Int(f))));
        }
        if let Some(t) = filter.to_ms {
            conds.push(format!("started_at < {}", bind(Param::Int(t))));
        }
        if let Some(c) = cursor {
            // Keyset pagination on (started_at, id), newest first.
            let (at, id) = c
                .split_once('~')
                .and_then(|(a, i)| a.parse::<i64>().ok().map(|a| (a, i.to_string())))
                .ok_or_else(|| StoreError::Corrupt(format!("cursor {c:?}")))?;
            let at = bind(Param::Int(at));
            let id = bind(Param::Text(id));
            conds.push(format!(
                "(started_at < {at} OR (started_at = {at} AND id < {id}))"
            ));
        }
        let wher = if conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conds.join(" AND "))
        };
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls {wher} ORDER BY started_at DESC, id DESC LIMIT {}",
            limit + 1
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for p in params {
            q = match p {
                Param::Text(t) => q.bind(t),
                Param::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut entries: Vec<CallEntry> = rows.iter().map(call_from).collect::<Result<_>>()?;
        let next = if entries.len() > limit as usize {
            entries.truncate(limit as usize);
            entries
                .last()
                .map(|e| format!("{}~{}", e.started_at_ms, e.id))
        } else {
            None
        };
        Ok((entries, next))
    }
}

fn call_from(r: &AnyRow) -> Result<CallEntry> {
    let ended: Option<i64> = r.try_get("ended_at")?;
    let end = match ended {
        None => None,
        Some(ended_at_ms) => Some(CallEnd {
            outcome: r
                .try_get::<Option<String>, _>("outcome")?
                .unwrap_or_default(),
            sip_status: r.try_get("sip_status")?,
            detail: r.try_get("detail")?,
            trunk: r.try_get("trunk")?,
            ended_at_ms,
            post_dial_delay_ms: r.try_get("post_dial_delay_ms")?,
            time_to_answer_ms: r.try_get("time_to_answer_ms")?,
            time_to_key_ms: r.try_get("time_to_key_ms")?,
            time_to_verdict_ms: r.try_get("time_to_verdict_ms")?,
            packets_sent: r.try_get::<Option<i64>, _>("packets_sent")?.unwrap_or(0),
            packets_received: r
                .try_get::<Option<i64>, _>("packets_received")?
                .unwrap_or(0),
            packets_lost: r.try_get::<Option<i64>, _>("packets_lost")?.unwrap_or(0),
            jitter_ms: r.try_get::<Option<f64>, _>("jitter_ms")?.unwrap_or(0.0),
            packets_rejected: r
                .try_get::<Option<i64>, _>("packets_rejected")?
                .unwrap_or(0),
            srtp: r.try_get::<Option<i64>, _>("srtp")?.unwrap_or(0) != 0,
            keys: Vec::new(),
            steps: Vec::new(),
        }),
    };
    Ok(CallEntry {
        id: r.try_get("id")?,
        challenge_id: r.try_get("challenge_id")?,
        phone_masked: r.try_get("phone_masked")?,
        started_at_ms: r.try_get("started_at")?,
        end,
    })
}

/// A migration's statements: split at `;`, except inside a `$$ … $$` body.
fn statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"$$") {
            quoted = !quoted;
            i += 2;
            continue;
        }
        if b[i] == b';' && !quoted {
            out.push(&sql[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    out.push(&sql[start..]);
    out
}

fn strip_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

pub(crate) async fn insert_event(
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
        phone: PhoneNumber::from_stored(&phone).map_err(|_| StoreError::Corrupt(phone))?,
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
        remember_device_ms: r.try_get("remember_device_ms")?,
        confirm_primary: r.try_get::<i64, _>("confirm_primary")? != 0,
    })
}
