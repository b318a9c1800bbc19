//! Several nodes on one database: claims of queued challenges (each claimed once, oldest
//! first; renewed by their node only; a lapsed claim makes its challenge and call
//! `interrupted`, never claimed again), and on PostgreSQL each node's copy of the challenges
//! following the others' changes through the notifications.

use std::time::Duration;

use callverify_e2e::Postgres;
use store::ChallengeState::{self, *};
use store::{ChallengeId, NewCall, Store};

use crate::common::{Db, call_id, request, until};

on_both!(
    each_queued_challenge_is_claimed_once_oldest_first,
    each_node_renews_its_own_claims,
    a_lapsed_claim_is_interrupted_with_its_call_and_never_claimed_again,
    a_decided_challenge_is_no_longer_renewed_or_interrupted,
    many_queued_challenges_are_claimed_at_once_oldest_first,
    nodes_claiming_many_at_once_never_take_the_same_one,
);

const T: i64 = 10_000_000;

/// Challenges `a` makes, one made at each time of `at`, in that order.
async fn queued(a: &Store, hash: &str, at: impl IntoIterator<Item = i64>) -> Vec<ChallengeId> {
    let mut ids = Vec::new();
    for t in at {
        let (c, _) = a.create_challenge(&request(None, hash, t)).await.unwrap();
        ids.push(c.id);
    }
    ids
}

/// Three queued challenges: node A claims the first, B the second and, by name, the third.
async fn claimed(a: &Store, b: &Store) -> Vec<ChallengeId> {
    assert_ne!(a.node(), b.node());
    let ids = queued(a, "claim", (0..3).map(|i| T + i)).await;
    assert_eq!(
        a.claim_oldest(T + 10, T + 5_000, 1).await.unwrap(),
        ids[..1]
    );
    assert_eq!(
        b.claim_oldest(T + 10, T + 5_000, 1).await.unwrap(),
        ids[1..2]
    );
    assert!(b.claim(&ids[2], T + 11, T + 5_000).await.unwrap());
    ids
}

/// Sorted.
fn sorted(mut ids: Vec<ChallengeId>) -> Vec<ChallengeId> {
    ids.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    ids
}

/// A named claim of a challenge already claimed fails; none is left to claim; a claim moves
/// its challenge to `calling`.
async fn each_queued_challenge_is_claimed_once_oldest_first(db: Db) {
    let (a, b) = (&db.store, &db.another().await);
    let ids = claimed(a, b).await;
    assert!(!b.claim(&ids[0], T + 11, T + 5_000).await.unwrap());
    assert!(
        a.claim_oldest(T + 12, T + 5_000, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(a.challenge(&ids[0]).await.unwrap().unwrap().state, Calling);
    let events: Vec<_> = a
        .events(&ids[0])
        .await
        .unwrap()
        .iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(events, vec![Queued, Calling]);
}

async fn each_node_renews_its_own_claims(db: Db) {
    let (a, b) = (&db.store, &db.another().await);
    let ids = claimed(a, b).await;
    assert_eq!(
        a.renew_claims(T + 9_000).await.unwrap(),
        vec![ids[0].clone()]
    );
    let held = b.renew_claims(T + 6_000).await.unwrap();
    assert_eq!(sorted(held), sorted(vec![ids[1].clone(), ids[2].clone()]));
}

/// B stops renewing: at T + 7,000 its two claims have lapsed, A's has not.
async fn a_lapsed_claim_is_interrupted_with_its_call_and_never_claimed_again(db: Db) {
    let (a, b) = (&db.store, &db.another().await);
    let ids = claimed(a, b).await;
    a.renew_claims(T + 9_000).await.unwrap();
    b.renew_claims(T + 6_000).await.unwrap();
    a.start_call(&NewCall {
        id: call_id("call_claimed_by_b"),
        challenge_id: ids[1].clone(),
        phone_masked: "+81 ** **** **78".into(),
        started_at_ms: T + 20,
    })
    .await
    .unwrap();
    let lapsed = a.interrupt_lapsed(T + 7_000).await.unwrap();
    assert_eq!(sorted(lapsed), sorted(vec![ids[1].clone(), ids[2].clone()]));
    let state = |id: ChallengeId| async move { a.challenge(&id).await.unwrap().unwrap().state };
    assert_eq!(state(ids[1].clone()).await, Interrupted);
    assert_eq!(state(ids[0].clone()).await, Calling);
    let call = a
        .call(&call_id("call_claimed_by_b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(call.end.unwrap().outcome.as_str(), "interrupted");
    // B's renewal no longer holds them; nothing is claimable again.
    assert_eq!(
        b.renew_claims(T + 8_000).await.unwrap(),
        Vec::<ChallengeId>::new()
    );
    assert!(
        b.claim_oldest(T + 7_001, T + 9_000, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(a.interrupt_lapsed(T + 7_001).await.unwrap().is_empty());
}

/// One claim takes up to its count of the oldest, each with its `calling` event; the next
/// takes the rest; no more than [`store::MAX_CLAIM`] at once.
async fn many_queued_challenges_are_claimed_at_once_oldest_first(db: Db) {
    let (a, b) = (&db.store, &db.another().await);
    let mut ids = queued(a, "many", (0..5).map(|i| T + 10 - 2 * i)).await;
    ids.reverse(); // oldest first
    assert_eq!(
        a.claim_oldest(T + 20, T + 5_000, 3).await.unwrap(),
        ids[..3]
    );
    assert_eq!(
        b.claim_oldest(T + 20, T + 5_000, 64).await.unwrap(),
        ids[3..]
    );
    assert!(
        a.claim_oldest(T + 21, T + 5_000, 64)
            .await
            .unwrap()
            .is_empty()
    );
    for (i, id) in ids.iter().enumerate() {
        let events: Vec<_> = a
            .events(id)
            .await
            .unwrap()
            .iter()
            .map(|e| e.state)
            .collect();
        assert_eq!(events, vec![Queued, Calling], "{id}");
        // Read by the node that claimed it (on SQLite a node's copy hears only its own).
        let by = if i < 3 { a } else { b };
        assert_eq!(by.challenge(id).await.unwrap().unwrap().state, Calling);
    }
    assert_eq!(a.renew_claims(T + 6_000).await.unwrap().len(), 3);
    assert_eq!(b.renew_claims(T + 6_000).await.unwrap().len(), 2);

    queued(
        a,
        "cap",
        (0..store::MAX_CLAIM as i64 + 6).map(|i| T + 100 + i),
    )
    .await;
    let first = a.claim_oldest(T + 200, T + 5_000, 10_000).await.unwrap();
    assert_eq!(first.len(), store::MAX_CLAIM);
    assert_eq!(
        a.claim_oldest(T + 200, T + 5_000, 10_000)
            .await
            .unwrap()
            .len(),
        6
    );
}

/// Two nodes claim 64 at a time, at once, until none is left: each of 300 challenges is
/// claimed by exactly one.
async fn nodes_claiming_many_at_once_never_take_the_same_one(db: Db) {
    let (a, b) = (&db.store, &db.another().await);
    let made = queued(a, "race", (0..300).map(|i| T + i)).await;
    let mut taken = Vec::new();
    loop {
        let (x, y) = tokio::join!(
            a.claim_oldest(T + 400, T + 5_000, 64),
            b.claim_oldest(T + 400, T + 5_000, 64)
        );
        let (x, y) = (x.unwrap(), y.unwrap());
        if x.is_empty() && y.is_empty() {
            break;
        }
        taken.extend(x);
        taken.extend(y);
    }
    assert_eq!(taken.len(), 300);
    assert_eq!(sorted(taken), sorted(made));
}

/// A decides its own: no longer renewed or interrupted.
async fn a_decided_challenge_is_no_longer_renewed_or_interrupted(db: Db) {
    let a = &db.store;
    let (c, _) = a
        .create_challenge(&request(None, "claim", T))
        .await
        .unwrap();
    assert_eq!(
        a.claim_oldest(T + 10, T + 5_000, 1).await.unwrap(),
        std::slice::from_ref(&c.id)
    );
    assert_eq!(a.renew_claims(T + 9_000).await.unwrap(), vec![c.id.clone()]);
    assert!(
        a.transition(&c.id, Approved, T + 7_100, None, None)
            .await
            .unwrap()
    );
    assert!(a.renew_claims(T + 20_000).await.unwrap().is_empty());
    assert!(a.interrupt_lapsed(T + 30_000).await.unwrap().is_empty());
}

/// Two nodes' stores on one PostgreSQL server of their own, as `serve` opens them, once both
/// follow the notifications; a challenge A made, read by both (and so in both copies).
async fn two_nodes(name: &str) -> (Postgres, Store, Store, ChallengeId) {
    let pg = Postgres::start(name);
    let a = Store::open(&pg.url).await.unwrap().cached().unwrap();
    let b = Store::open(&pg.url).await.unwrap().cached().unwrap();
    until(
        || std::future::ready(a.cache_live() && b.cache_live()),
        "both nodes live",
    )
    .await;
    let (c, _) = a.create_challenge(&request(None, "n", 1000)).await.unwrap();
    for node in [&a, &b] {
        assert_eq!(node.challenge(&c.id).await.unwrap().unwrap().state, Queued);
    }
    (pg, a, b, c.id)
}

async fn moved(node: &Store, id: &ChallengeId, to: ChallengeState, at: i64) {
    assert!(node.transition(id, to, at, None, None).await.unwrap());
}

/// Waits (bounded) until `node` reads challenge `id` in `state`.
async fn sees(node: &Store, id: &ChallengeId, state: ChallengeState, what: &str) {
    until(
        || async { node.challenge(id).await.unwrap().unwrap().state == state },
        what,
    )
    .await;
}

/// B moves the challenge on; A's copy and A's subscribers follow.
#[tokio::test]
async fn a_nodes_copy_follows_another_nodes_change() {
    let (_pg, a, b, id) = two_nodes("store-nodes-change").await;
    let mut changes = a.subscribe();
    moved(&b, &id, Calling, 1001).await;
    sees(&a, &id, Calling, "A to see B's change").await;
    let seen = tokio::time::timeout(Duration::from_secs(5), changes.recv())
        .await
        .expect("announced")
        .unwrap();
    assert_eq!((seen.id.as_str(), seen.state), (id.as_str(), Calling));
}

/// A change by hand in SQL is followed too.
#[tokio::test]
async fn a_nodes_copy_follows_a_change_made_in_sql() {
    let (pg, a, _b, id) = two_nodes("store-nodes-sql").await;
    let direct = sqlx::PgPool::connect(&pg.url).await.unwrap();
    sqlx::query("UPDATE challenges SET state = 'ringing' WHERE id = $1")
        .bind(id.as_str())
        .execute(&direct)
        .await
        .unwrap();
    sees(&a, &id, Ringing, "A to see a change made in SQL").await;
}

/// A's notification connection is cut: its copy is bypassed until it listens again, so B's
/// next change is read at once, and A's copy comes back.
#[tokio::test]
async fn a_node_cut_from_its_notifications_reads_the_database_until_it_listens_again() {
    let (pg, a, b, id) = two_nodes("store-nodes-cut").await;
    moved(&b, &id, Calling, 1001).await;
    sees(&a, &id, Calling, "A to see B's change").await;
    let direct = sqlx::PgPool::connect(&pg.url).await.unwrap();
    assert!(a.cache_live());
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
    )
    .execute(&direct)
    .await
    .unwrap();
    until(
        || std::future::ready(!a.cache_live()),
        "A to notice the cut",
    )
    .await;
    moved(&b, &id, Answered, 1003).await;
    assert_eq!(
        a.challenge(&id).await.unwrap().unwrap().state,
        Answered,
        "read from the database while the copy is bypassed"
    );
    until(|| std::future::ready(a.cache_live()), "A to listen again").await;
    moved(&b, &id, Approved, 1004).await;
    sees(&a, &id, Approved, "A to see the decision").await;
}
