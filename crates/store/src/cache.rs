//! A node's copy of the challenges it has read, so that the login pages' polls do not each
//! go to the database.
//!
//! The copy is kept current by the changes this process makes and, on PostgreSQL, by the
//! notification a trigger sends for every change (migration 0004), so changes made by
//! other nodes (or by hand in SQL) are seen too. The notification connection proves itself
//! with a ping every second; while it has not (starting, lost, a ping unanswered for two
//! seconds) the copy is bypassed and emptied. On SQLite the copy is only right while this
//! process is the only one changing challenges, so a cached SQLite store holds a lock file
//! beside the database and a second one is refused.
//!
//! A read that misses notes its shard's generation before going to the database and keeps
//! what it read only if no change was announced for that shard meanwhile: a read that
//! raced with a change can never put the old state back.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use crate::{Challenge, ChallengeId, ChallengeState, Change};

const SHARDS: usize = 16;
/// Challenges kept at most (a shard that fills up is emptied: polls read it back).
const CAPACITY: usize = 65_536;
/// The PostgreSQL channel the trigger notifies: payload `<id> <state>`.
pub(crate) const CHANNEL: &str = "callverify_challenges";
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Shard {
    map: HashMap<String, Challenge>,
    generation: u64,
}

/// Recently read challenges.
pub(crate) struct Cache {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    live: AtomicBool,
    /// The task following PostgreSQL's notifications ended while the cache was in use.
    follower_ended: AtomicBool,
    /// The lock file that keeps a second process off a cached SQLite store.
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Cache {
    pub(crate) fn new(live: bool, lock: Option<std::fs::File>) -> Cache {
        Cache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            live: AtomicBool::new(live),
            follower_ended: AtomicBool::new(false),
            _lock: lock,
        }
    }

    /// Whether the task following PostgreSQL's notifications has ended (by a panic: it
    /// runs as long as the cache is in use).
    pub(crate) fn follower_ended(&self) -> bool {
        self.follower_ended.load(Ordering::Acquire)
    }

    fn shard(&self, id: &str) -> std::sync::MutexGuard<'_, Shard> {
        let i = self.hasher.hash_one(id) as usize % SHARDS;
        // A panic while holding a shard leaves plain data behind: keep using it.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the copy may be used now.
    pub(crate) fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The copy of `id`, if there is one and the copy may be used.
    pub(crate) fn get(&self, id: &str) -> Option<Challenge> {
        if !self.is_live() {
            return None;
        }
        self.shard(id).map.get(id).cloned()
    }

    /// Before reading `id` from the database: the generation to give back to [`Cache::put`]
    /// (`None`: do not keep what is read).
    pub(crate) fn generation(&self, id: &str) -> Option<u64> {
        self.is_live().then(|| self.shard(id).generation)
    }

    /// Keeps `c`, read from the database after [`Cache::generation`] gave `generation`,
    /// unless a change was announced in between.
    pub(crate) fn put(&self, c: &Challenge, generation: u64) {
        let mut shard = self.shard(c.id.as_str());
        if shard.generation != generation || !self.is_live() {
            return;
        }
        if shard.map.len() >= CAPACITY / SHARDS {
            shard.map.clear();
        }
        shard.map.insert(c.id.as_str().to_string(), c.clone());
    }

    /// `id` changed: drop its copy, and fail the reads of its shard now in flight.
    pub(crate) fn forget(&self, id: &str) {
        let mut shard = self.shard(id);
        shard.map.remove(id);
        shard.generation += 1;
    }

    fn forget_all(&self) {
        for s in &self.shards {
            let mut s = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            s.map.clear();
            s.generation += 1;
        }
    }

    fn set_live(&self, live: bool) {
        if live {
            // Whatever was kept before the notifications were known to arrive is suspect.
            self.forget_all();
            self.live.store(true, Ordering::Release);
        } else {
            self.live.store(false, Ordering::Release);
            self.forget_all();
        }
    }
}

/// On SQLite: the lock file beside the database at `url` (none for an in-memory one); an
/// error naming the file when another process holds it.
pub(crate) fn sqlite_lock(url: &str) -> std::io::Result<Option<std::fs::File>> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.starts_with(":memory:") {
        return Ok(None);
    }
    let lock_path = format!("{path}.node-lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::new(
            std::io::ErrorKind::WouldBlock,
            format!(
                "{lock_path} is held by another callverify process: a SQLite store serves one \
                 node (use PostgreSQL for several)"
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// On PostgreSQL: follows the trigger's notifications for as long as the cache is in use,
/// forgetting changed challenges and announcing them to this process's subscribers.
pub(crate) fn follow_postgres(
    url: String,
    pool: sqlx::AnyPool,
    cache: Weak<Cache>,
    changes: broadcast::Sender<Change>,
) {
    /// Marks the follower ended when its task ends however it ends (a panic included).
    struct Ended(Weak<Cache>);
    impl Drop for Ended {
        fn drop(&mut self) {
            if let Some(c) = self.0.upgrade() {
                c.set_live(false);
                c.follower_ended.store(true, Ordering::Release);
            }
        }
    }
    tokio::spawn(async move {
        let _ended = Ended(cache.clone());
        let mut f = Follower {
            node: crate::new_id("node"),
            seq: 0,
            failures: 0,
            pool,
            cache,
            changes,
        };
        loop {
            let Some(c) = f.cache.upgrade() else { return };
            c.set_live(false);
            drop(c);
            let (tx, mut rx) = mpsc::channel::<Option<(String, String)>>(1024);
            let reader = match listen(&url, tx).await {
                Ok(r) => r,
                Err(e) => {
                    f.failures += 1;
                    if f.failures == 1 || f.failures.is_multiple_of(60) {
                        warn!(error = %e, "challenge notifications: cannot listen; polls read the database");
                    }
                    tokio::time::sleep(PING_EVERY).await;
                    continue;
                }
            };
            let lost = f.follow(&mut rx).await;
            reader.abort();
            if lost.is_break() {
                return;
            }
            f.failures += 1;
            if let Some(c) = f.cache.upgrade() {
                c.set_live(false);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// The notification follower's state, kept across its connections.
struct Follower {
    /// This node's name in its pings.
    node: String,
    /// The last ping's number.
    seq: u64,
    /// Connections lost or refused since the follower was last live.
    failures: u32,
    pool: sqlx::AnyPool,
    cache: Weak<Cache>,
    changes: broadcast::Sender<Change>,
}

impl Follower {
    /// Follows one listening connection: pings through the pool, pongs through the listener
    /// (live once the first returns), and forgets and announces each change notified.
    /// `Continue` when the connection is lost or a ping goes unanswered, `Break` when the
    /// cache is no longer used.
    async fn follow(
        &mut self,
        rx: &mut mpsc::Receiver<Option<(String, String)>>,
    ) -> ControlFlow<()> {
        let mut pending: Option<(String, tokio::time::Instant)> = None;
        let mut next_ping = tokio::time::Instant::now();
        loop {
            if self.cache.strong_count() == 0 {
                return ControlFlow::Break(());
            }
            if pending.is_none() && tokio::time::Instant::now() >= next_ping {
                self.seq += 1;
                let token = format!("ping {} {}", self.node, self.seq);
                let sent = sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(&token)
                    .execute(&self.pool)
                    .await;
                if sent.is_err() {
                    return ControlFlow::Continue(());
                }
                pending = Some((token, tokio::time::Instant::now() + PING_TIMEOUT));
            }
            let wake = pending.as_ref().map_or(next_ping, |p| p.1);
            let got = tokio::time::timeout_at(wake, rx.recv()).await;
            let Some(c) = self.cache.upgrade() else {
                return ControlFlow::Break(());
            };
            match got {
                Err(_) if pending.is_some() => {
                    if c.is_live() {
                        warn!(
                            "challenge notifications: a ping went unanswered; polls read the database"
                        );
                    }
                    return ControlFlow::Continue(());
                }
                Err(_) => {}
                Ok(None | Some(None)) => return ControlFlow::Continue(()),
                Ok(Some(Some((channel, payload)))) if channel == CHANNEL => {
                    if pending.as_ref().is_some_and(|p| p.0 == payload) {
                        pending = None;
                        next_ping = tokio::time::Instant::now() + PING_EVERY;
                        if !c.is_live() {
                            c.set_live(true);
                            if self.failures > 0 {
                                info!("challenge notifications: listening again");
                            }
                            self.failures = 0;
                        }
                    } else {
                        self.changed(&c, &payload);
                    }
                }
                Ok(Some(Some(_))) => {}
            }
        }
    }

    /// A change notified (`<id> <state>`): the copy forgets the challenge and this process's
    /// subscribers hear of it.
    fn changed(&self, c: &Cache, payload: &str) {
        if let Some((id, state)) = payload.split_once(' ')
            && let Some(state) = ChallengeState::from_name(state)
        {
            crate::fault::point("store");
            c.forget(id);
            let _ = self.changes.send(Change {
                // The database's trigger names a stored challenge.
                id: ChallengeId::from_stored(id.to_string()),
                state,
            });
        }
    }
}

/// Connects a listener and hands its notifications to `tx` from a task of its own (so
/// that no read is ever cut short); `None` when the connection is lost.
async fn listen(
    url: &str,
    tx: mpsc::Sender<Option<(String, String)>>,
) -> Result<tokio::task::JoinHandle<()>, sqlx::Error> {
    let mut l = sqlx::postgres::PgListener::connect(url).await?;
    l.eager_reconnect(false);
    l.listen(CHANNEL).await?;
    Ok(tokio::spawn(async move {
        loop {
            match l.try_recv().await {
                Ok(Some(n)) => {
                    let msg = Some((n.channel().to_string(), n.payload().to_string()));
                    if tx.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(None) | Err(_) => {
                    let _ = tx.send(None).await;
                    return;
                }
            }
        }
    }))
}

/// Shared handle, for the store.
pub(crate) type Shared = Arc<Cache>;
