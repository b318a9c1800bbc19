//! API keys: found by their secret (kept as its SHA-256) until revoked, by name the oldest
//! of a kind not revoked, and the `phone_admin` mark kept for service keys only.

use store::{KeyKind, Revocation};

use crate::common::{Db, T};

on_both!(
    an_api_key_is_found_by_its_secret_until_it_is_revoked,
    a_name_finds_the_oldest_key_of_its_kind_not_revoked,
    phone_admin_is_kept_for_service_keys_only,
    keys_are_listed_and_revoked_by_id,
);

async fn an_api_key_is_found_by_its_secret_until_it_is_revoked(db: Db) {
    let store = &db.store;
    let (k, secret) = store
        .create_api_key("idp", KeyKind::Service, 1)
        .await
        .unwrap();
    assert!(secret.starts_with("cvk_"));
    assert_eq!(store.api_key(&secret).await.unwrap(), Some(k.clone()));
    assert_eq!(store.api_key("cvk_wrong").await.unwrap(), None);
    let (op, op_secret) = store
        .create_api_key("ops", KeyKind::Operator, 1)
        .await
        .unwrap();
    assert_eq!(
        store.api_key(&op_secret).await.unwrap().unwrap().kind,
        KeyKind::Operator
    );
    assert!(store.revoke_api_key(&k.id, 2).await.unwrap());
    assert_eq!(store.api_key(&secret).await.unwrap(), None, "revoked");
    assert!(!store.revoke_api_key(&k.id, 3).await.unwrap());
    assert_eq!(op.name, "ops");
}

/// By name: the oldest key of that kind not revoked.
async fn a_name_finds_the_oldest_key_of_its_kind_not_revoked(db: Db) {
    let store = &db.store;
    let (k, _) = store
        .create_api_key("idp", KeyKind::Service, 1)
        .await
        .unwrap();
    let (op, _) = store
        .create_api_key("ops", KeyKind::Operator, 1)
        .await
        .unwrap();
    assert!(store.revoke_api_key(&k.id, 2).await.unwrap());
    let named = |name, kind| store.api_key_named(name, kind);
    assert_eq!(named("idp", KeyKind::Service).await.unwrap(), None);
    assert_eq!(named("ops", KeyKind::Service).await.unwrap(), None);
    assert_eq!(
        named("ops", KeyKind::Operator).await.unwrap(),
        Some(op.clone())
    );
    store
        .create_api_key("ops", KeyKind::Operator, 5)
        .await
        .unwrap();
    assert_eq!(named("ops", KeyKind::Operator).await.unwrap(), Some(op));
}

async fn phone_admin_is_kept_for_service_keys_only(db: Db) {
    let store = &db.store;
    store
        .create_api_key("idp-9", KeyKind::Service, T)
        .await
        .unwrap();
    let (admin, secret) = store
        .create_api_key_with("admin", KeyKind::Service, true, T)
        .await
        .unwrap();
    assert!(admin.phone_admin);
    assert_eq!(store.api_key(&secret).await.unwrap(), Some(admin));
    let (op, _) = store
        .create_api_key_with("ops-9", KeyKind::Operator, true, T)
        .await
        .unwrap();
    assert!(!op.phone_admin);
    assert!(
        !store
            .api_key_named("idp-9", KeyKind::Service)
            .await
            .unwrap()
            .unwrap()
            .phone_admin
    );
}

/// The list: every key oldest first, revoked ones with their time, last used from the
/// newest challenge or refused attempt kept; revoking tells an unknown id and a second
/// revocation apart.
async fn keys_are_listed_and_revoked_by_id(db: Db) {
    let store = &db.store;
    let (k, secret) = store
        .create_api_key_with("idp", KeyKind::Service, true, 1)
        .await
        .unwrap();
    let (op, _) = store
        .create_api_key("ops", KeyKind::Operator, 2)
        .await
        .unwrap();
    let c = store::NewChallenge {
        api_key_id: k.id.clone(),
        ..crate::common::request(None, "h", T)
    };
    store.create_challenge(&c).await.unwrap();
    let list = store.api_keys().await.unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0].key, k);
    assert_eq!(list[0].created_at_ms, 1);
    assert_eq!(list[0].last_used_ms, Some(T));
    assert_eq!(list[0].revoked_at_ms, None);
    assert_eq!(list[1].key, op);
    assert_eq!(list[1].last_used_ms, None);
    assert!(store.api_key_live(&k.id).await.unwrap());

    match store.revoke_api_key_by_id(&k.id, 7).await.unwrap() {
        Revocation::Revoked(e) => assert_eq!(e.revoked_at_ms, Some(7)),
        other => panic!("{other:?}"),
    }
    assert!(!store.api_key_live(&k.id).await.unwrap());
    assert_eq!(store.api_key(&secret).await.unwrap(), None);
    match store.revoke_api_key_by_id(&k.id, 9).await.unwrap() {
        Revocation::AlreadyRevoked(e) => assert_eq!(e.revoked_at_ms, Some(7)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.revoke_api_key_by_id("key_unknown", 9).await.unwrap(),
        Revocation::Unknown
    );
    assert!(!store.api_key_live("key_unknown").await.unwrap());
    let list = store.api_keys().await.unwrap();
    assert_eq!(list[0].revoked_at_ms, Some(7));
}
