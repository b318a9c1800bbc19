//! What the store's tests share: a store of a test's own on each backend, the challenges
//! they make, and moving one on as a call does.

use std::future::Future;
use std::time::Duration;

use callverify_e2e::{Postgres, scratch};
use store::{
    Backend, CallId, ChallengeId, ChallengeState, NewChallenge, PhoneNumber, PhoneRole, Purpose,
    Store,
};

/// A call id as a test writes it (`call_01`), kept as the store keeps what it reads back.
pub fn call_id(s: &str) -> CallId {
    CallId::from_stored(s.into())
}

/// A challenge id as a test writes it (`ch_unknown`), kept as the store keeps what it reads
/// back.
pub fn challenge_id(s: &str) -> ChallengeId {
    ChallengeId::from_stored(s.into())
}

/// A store of a test's own, as `serve` opens it (with the copy of the challenges read), and
/// where it is.
pub struct Db {
    pub store: Store,
    /// Its URL, to open the same database again (another node, a restart).
    pub url: String,
    /// The directory of its SQLite file.
    pub dir: Option<std::path::PathBuf>,
    /// The server, stopped when the test ends.
    _server: Option<Postgres>,
}

impl Db {
    /// On a SQLite file (WAL mode) in the scratch directory `name`.
    pub async fn sqlite(name: &str) -> Db {
        let dir = scratch(name);
        let url = format!("sqlite://{}", dir.join("callverify.db").display());
        let store = Store::open(&url).await.unwrap().cached().unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        assert!(store.cache_live());
        Db {
            store,
            url,
            dir: Some(dir),
            _server: None,
        }
    }

    /// On a PostgreSQL server of its own, once its copy follows the server's notifications.
    pub async fn postgresql(name: &str) -> Db {
        let pg = Postgres::start(name);
        let store = Store::open(&pg.url).await.unwrap().cached().unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        until(|| std::future::ready(store.cache_live()), "notifications").await;
        Db {
            store,
            url: pg.url.clone(),
            dir: None,
            _server: Some(pg),
        }
    }

    /// The same database opened again (by another node: without the copy).
    pub async fn another(&self) -> Store {
        Store::open(&self.url).await.unwrap()
    }
}

/// A short name for the test at `module_path` (`store::concern::behaviour`): its concern and
/// a hash of the rest, so that the path of PostgreSQL's socket in its scratch directory stays
/// within the 107 bytes a Unix socket's path may have.
pub fn short_name(module_path: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut parts = module_path.split("::").skip(1);
    let concern = parts.next().unwrap_or_default();
    let mut h = std::hash::DefaultHasher::new();
    parts.collect::<Vec<_>>().hash(&mut h);
    format!("store-{concern}-{:08x}", h.finish() as u32)
}

/// A sign-in of service key `key_service` to +819012345678 with a callback URL, made at
/// `now` (the request's hash `hash`, its Idempotency-Key `key`).
pub fn request(key: Option<&str>, hash: &str, now: i64) -> NewChallenge {
    NewChallenge {
        api_key_id: "key_service".into(),
        idempotency_key: key.map(str::to_string),
        request_hash: hash.into(),
        user_id: None,
        phone: PhoneNumber::parse("+819012345678").unwrap(),
        language: "ja".into(),
        purpose: Purpose::SignIn,
        callback_url: Some("https://idp.example/hook".into()),
        enrol: None,
        remember_device_ms: 0,
        fraud_block_ms: 86_400_000,
        confirm_primary: false,
        origin: store::Origin::Api,
        origin_ref: None,
        confirmation: Default::default(),
        now_ms: now,
        expires_at_ms: now + 300_000,
    }
}

/// An enrolment of `number` as `user`'s phone in `role`, made at `now`.
pub fn enrolment(user: &str, number: &str, role: PhoneRole, now: i64) -> NewChallenge {
    NewChallenge {
        user_id: Some(user.into()),
        phone: PhoneNumber::parse(number).unwrap(),
        purpose: Purpose::Enroll,
        enrol: Some(role),
        callback_url: None,
        ..request(None, "e", now)
    }
}

/// A sign-in of `user` made at `now`, remembering the device for `remember` ms if approved.
pub fn sign_in(user: &str, now: i64, remember: i64) -> NewChallenge {
    NewChallenge {
        user_id: Some(user.into()),
        remember_device_ms: remember,
        ..request(None, "s", now)
    }
}

/// Moves challenge `id` to `calling`, then to `to` at `at`.
pub async fn decide(store: &Store, id: &ChallengeId, to: ChallengeState, at: i64) {
    assert!(
        store
            .transition(id, ChallengeState::Calling, at - 2, None, None)
            .await
            .unwrap()
    );
    assert!(store.transition(id, to, at, None, None).await.unwrap());
}

/// Makes `new` and decides it `to` at `at`: its id.
pub async fn decided(
    store: &Store,
    new: &NewChallenge,
    to: ChallengeState,
    at: i64,
) -> ChallengeId {
    let (c, _) = store.create_challenge(new).await.unwrap();
    decide(store, &c.id, to, at).await;
    c.id
}

/// A sign-in of u-9 to +819077770010 made at `now`, remembering the device for `remember`
/// ms if approved.
pub fn u9_sign_in(now: i64, remember: i64) -> NewChallenge {
    NewChallenge {
        phone: PhoneNumber::parse("+819077770010").unwrap(),
        ..sign_in("u-9", now, remember)
    }
}

/// When the tests of fraud reports and admissions happen (ms since the epoch).
pub const T: i64 = 200_000_000;

/// u-9's enrolment of +819077770010 approved, then a sign-in of u-9 that asked to remember
/// the device approved: its id.
pub async fn u9_trusted(store: &Store) -> ChallengeId {
    let primary = enrolment("u-9", "+819077770010", PhoneRole::Primary, T);
    decided(store, &primary, ChallengeState::Approved, T + 1).await;
    decided(
        store,
        &u9_sign_in(T + 2, 1_000_000),
        ChallengeState::Approved,
        T + 3,
    )
    .await
}

/// A fraud report on a sign-in of u-9 (blocks of an hour) whose call went to +819077770011
/// at T + 20: its id.
pub async fn u9_reported(store: &Store) -> ChallengeId {
    let (f, _) = store
        .create_challenge(&NewChallenge {
            fraud_block_ms: 3_600_000,
            ..u9_sign_in(T + 10, 0)
        })
        .await
        .unwrap();
    for st in [ChallengeState::Calling, ChallengeState::Answered] {
        assert!(
            store
                .transition(&f.id, st, T + 11, None, None)
                .await
                .unwrap()
        );
    }
    let called = PhoneNumber::parse("+819077770011").unwrap();
    assert!(
        store
            .transition_called(
                &f.id,
                ChallengeState::FraudReported,
                T + 20,
                None,
                None,
                &called
            )
            .await
            .unwrap()
    );
    f.id
}

/// Waits (10 s at most) until `f` holds.
pub async fn until<F: Future<Output = bool>>(mut f: impl FnMut() -> F, what: &str) {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(tokio::time::Instant::now() < end, "waited 10 s for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
