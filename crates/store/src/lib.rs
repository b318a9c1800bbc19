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
//!
//! A module for each kind of record: `challenges.rs` (made, moved, read, counted, expired),
//! `claims.rs` (which node calls which challenge), `backup.rs` (a copy of a SQLite store), `codes.rs` (the confirmation modes' codes), `call_log.rs`, `api_keys.rs`, `users.rs`
//! (phones, trusted devices, fraud blocks), `eam.rs` (what the Entra EAM provider keeps), `webhooks.rs`, `limits.rs` (the rate limits'
//! counts), `retention.rs`; `migrate.rs` the schema, `cache.rs` a node's copy of the
//! challenges it reads.

mod api_keys;
mod backup;
mod cache;
mod call_log;
mod challenges;
mod claims;
mod codes;
mod eam;
pub mod fault;
mod limits;
mod log;
mod migrate;
mod retention;
pub mod types;
mod users;
mod webhooks;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

pub use api_keys::{ApiKey, ApiKeyEntry, KeyKind, Revocation};
pub use backup::{backup_sqlite, sqlite_path};
pub use call_log::{CallEnd, CallEntry, CallFilter, CallStep, KeyRecord, NewCall, OutcomeFilter};
pub use challenges::{Challenge, NewChallenge, Scope, StateChange};
pub use claims::MAX_CLAIM;
pub use codes::{
    CodeCheck, Confirmation, MAX_CODE_ATTEMPTS, code_hash, draw_display_code, draw_spoken_code,
};
pub use dtmf::Digit;
pub use eam::{EamSession, Imported, NewEamSession, StoredEamKey};
pub use limits::{Admission, CountScope, Counter, Refused};
pub use log::{CallStats, LogEntry, LogKind, NewRefusal};
pub use retention::Forgotten;
pub use types::{
    BadNumber, CallId, ChallengeId, ChallengeState, KeySource, Origin, PhoneNumber, PhoneRole,
    Purpose, StepKind, hex, new_id, now_ms,
};
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
    /// A cursor for [`Store::calls`] that no page of the call log gave.
    #[error("cursor {0:?} is not one the call log gave")]
    BadCursor(String),
    /// The store cannot be shared as asked.
    #[error("{0}")]
    InUse(#[from] std::io::Error),
    /// A newer callverify migrated the store past what this one knows.
    #[error(
        "the store's schema is at version {found}, newer than this callverify's {known}: \
         run the newer callverify (a downgrade needs the backup taken before the upgrade)"
    )]
    NewerSchema {
        /// The store's version.
        found: i64,
        /// The newest this build has.
        known: i64,
    },
    /// A backup cannot be taken as asked.
    #[error("{0}")]
    Backup(String),
}

/// A result of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
    pub id: ChallengeId,
    /// Its new state.
    pub state: ChallengeState,
}

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

    /// Tells the subscribers that `id` is now in `state`, and drops the copy of it.
    /// Drops this node's copy of a challenge whose columns changed without a new state.
    fn forget_cached(&self, id: &ChallengeId) {
        if let Some(cache) = &self.cache {
            cache.forget(id.as_str());
        }
    }

    fn announce(&self, id: &ChallengeId, state: ChallengeState) {
        if let Some(cache) = &self.cache {
            cache.forget(id.as_str());
        }
        let _ = self.changes.send(Change {
            id: id.clone(),
            state,
        });
    }
}
