//! The policy on `POST /v1/challenges`: countries, number types, rate limits (per number,
//! user, API key and country) and the cap on calls waiting, each refusal with its reason;
//! and bursts of requests at once held to them exactly, on one SQLite node and on two nodes
//! sharing PostgreSQL.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use api::ApiConfig;
use callverify_e2e::{Postgres, sign_in};
use store::{KeyKind, Store, now_ms};

use crate::common::{
    Api, BODY, Reply, auth, config, decided, http, keys, kind_of, post_json, serve, sqlite, state,
};

/// The policy of the first tests: Japan only, two calls a number and one a user in 10
/// minutes, four calls waiting at most.
fn japan_only() -> ApiConfig {
    let mut cfg = config();
    cfg.policy.allowed_countries = api::Countries::Only(vec!["JP".into()]);
    cfg.policy.per_number = api::RateLimit::new(2, Duration::from_secs(600));
    cfg.policy.per_user = api::RateLimit::new(1, Duration::from_secs(600));
    cfg.policy.max_concurrent_calls = 4;
    cfg
}

#[tokio::test]
async fn other_countries_and_invalid_numbers_are_refused() {
    let Api { addr, service, .. } = Api::start("api-countries", japan_only()).await;
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"phone_number":"+442071838750"}"#,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/country-not-allowed")
    );
    assert!(r.json()["detail"].as_str().unwrap().contains("GB"));
    let r = post_json(
        addr,
        "/v1/challenges",
        &service,
        r#"{"phone_number":"+8190123456"}"#,
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/invalid-number")
    );
}

#[tokio::test]
async fn calls_to_one_number_are_limited() {
    let Api { addr, service, .. } = Api::start("api-per-number", japan_only()).await;
    assert_eq!(
        post_json(addr, "/v1/challenges", &service, BODY)
            .await
            .status,
        201
    );
    assert_eq!(
        post_json(addr, "/v1/challenges", &service, BODY)
            .await
            .status,
        201
    );
    let r = post_json(addr, "/v1/challenges", &service, BODY).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("+81 ** **** **78 had 2 calls")
    );
    assert_eq!(r.headers["retry-after"], "600");
}

/// Four challenges waiting: a fifth is refused, and an idempotent replay is answered even
/// then.
#[tokio::test]
async fn the_cap_on_calls_waiting_refuses_new_ones_but_answers_replays() {
    let Api { addr, service, .. } = Api::start("api-cap", japan_only()).await;
    let post = |body: &'static str| post_json(addr, "/v1/challenges", &service, body);
    let key = auth(&service);
    let idem = || {
        let headers = [("Authorization", key.as_str()), ("Idempotency-Key", "once")];
        let body = br#"{"phone_number":"+819011112222"}"#;
        async move { http(addr, "POST", "/v1/challenges", &headers, body).await }
    };
    assert_eq!(post(BODY).await.status, 201);
    assert_eq!(post(BODY).await.status, 201);
    assert_eq!(idem().await.status, 201);
    assert_eq!(
        post(r#"{"phone_number":"+819033334444"}"#).await.status,
        201
    );
    let r = post(r#"{"phone_number":"+819055556666"}"#).await;
    assert_eq!(r.status, 429);
    assert!(
        r.json()["type"]
            .as_str()
            .unwrap()
            .ends_with("/too-many-calls"),
        "{}",
        r.body
    );
    assert_eq!(idem().await.status, 200);
}

#[tokio::test]
async fn rate_limits_per_user_and_per_api_key() {
    use store::ChallengeState::*;
    let mut cfg = config();
    cfg.policy.per_user = api::RateLimit::new(2, Duration::from_secs(600));
    cfg.policy.per_api_key = api::RateLimit::new(5, Duration::from_secs(60));
    let Api {
        store,
        addr,
        service,
        ..
    } = Api::start("api-rates", cfg).await;
    let (_, other_service) = store
        .create_api_key("idp-2", KeyKind::Service, 0)
        .await
        .unwrap();
    let refused = |r: &Reply, words: &str, retry: &str| {
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(
            r.json()["type"]
                .as_str()
                .unwrap()
                .ends_with("/rate-limited")
        );
        let detail = r.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(words), "{detail}");
        assert_eq!(r.headers["retry-after"], retry);
    };

    // Alice's enrolment is her first challenge, her sign-in the second; a third is refused.
    let r = post_json(
        addr,
        "/v1/users/alice/phones",
        &service,
        r#"{"phone_number":"+819012345678"}"#,
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let enrol = r.json()["challenge"]["id"].as_str().unwrap().to_string();
    decided(&store, &enrol, Approved, now_ms()).await;
    let alice = r#"{"user_id":"alice"}"#;
    let r = post_json(addr, "/v1/challenges", &service, alice).await;
    assert_eq!(r.status, 201);
    let r = post_json(addr, "/v1/challenges", &service, alice).await;
    refused(
        &r,
        "the user had 2 calls in the last 600 s (limit 2)",
        "600",
    );
    // Another API key is held to the same user limit.
    let r = post_json(addr, "/v1/challenges", &other_service, alice).await;
    refused(&r, "the user had 2", "600");

    // The first key has made 2 challenges (the refused one is not counted): 3 more to
    // other numbers, then it is refused.
    for n in 1..=3 {
        let body = format!(r#"{{"phone_number":"+81901111000{n}"}}"#);
        let r = post_json(addr, "/v1/challenges", &service, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let ninth = r#"{"phone_number":"+819011110009"}"#;
    let r = post_json(addr, "/v1/challenges", &service, ninth).await;
    refused(
        &r,
        "this API key had 5 calls in the last 60 s (limit 5)",
        "60",
    );
    // The other key is not.
    let r = post_json(addr, "/v1/challenges", &other_service, ninth).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// The United States, Britain and Japan allowed, with the default number types.
fn three_countries() -> ApiConfig {
    let mut cfg = config();
    cfg.policy.allowed_countries =
        api::Countries::Only(vec!["US".into(), "GB".into(), "JP".into()]);
    cfg
}

/// Premium-rate, shared-cost, personal and other costly numbers of allowed countries are
/// refused by their type (libphonenumber's metadata), as challenges and as phones.
#[tokio::test]
async fn costly_numbers_are_refused_by_their_type() {
    let Api { addr, service, .. } = Api::start("api-number-types", three_countries()).await;
    for (number, kind) in [
        ("+19002345678", "premium_rate"),
        ("+449012345678", "premium_rate"),
        ("+81990123456", "premium_rate"),
        ("+448431234567", "premium_rate"),
        ("+447012345678", "personal_number"),
        ("+18002345678", "toll_free"),
    ] {
        let body = format!(r#"{{"phone_number":"{number}"}}"#);
        let r = post_json(addr, "/v1/challenges", &service, &body).await;
        assert_eq!(r.status, 403, "{number}: {}", r.body);
        assert_eq!(kind_of(&r), "number-type-not-allowed", "{}", r.body);
        let detail = r.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(&format!("a {kind} number")), "{detail}");
        // Registering one as a phone is refused the same way.
        let r = post_json(addr, "/v1/users/mallory/phones", &service, &body).await;
        assert_eq!(
            (r.status, kind_of(&r).as_str()),
            (403, "number-type-not-allowed")
        );
    }
}

#[tokio::test]
async fn mobile_and_fixed_line_numbers_are_called() {
    let Api { addr, service, .. } = Api::start("api-number-types-ok", three_countries()).await;
    for number in ["+819012345678", "+442071838750", "+12025550123"] {
        let body = format!(r#"{{"phone_number":"{number}"}}"#);
        let r = post_json(addr, "/v1/challenges", &service, &body).await;
        assert_eq!(r.status, 201, "{number}: {}", r.body);
    }
}

#[tokio::test]
async fn a_costly_type_the_policy_lists_is_called() {
    let mut cfg = three_countries();
    cfg.policy
        .allowed_number_types
        .push(api::NumberType::PremiumRate);
    let Api { addr, service, .. } = Api::start("api-number-types-listed", cfg).await;
    let body = r#"{"phone_number":"+449012345678"}"#;
    let r = post_json(addr, "/v1/challenges", &service, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

/// Calls to one country are capped in a window, with another cap for some countries.
#[tokio::test]
async fn calls_per_country_are_capped() {
    let mut cfg = config();
    cfg.policy.per_country = api::CountryLimit {
        limit: api::RateLimit::new(2, Duration::from_secs(3600)),
        overrides: [("JP".to_string(), 3)].into(),
    };
    let Api { addr, service, .. } = Api::start("api-per-country", cfg).await;
    let post = |n: &str| {
        let body = format!(r#"{{"phone_number":"{n}"}}"#);
        let service = service.clone();
        async move { post_json(addr, "/v1/challenges", &service, &body).await }
    };
    for n in ["+819011110001", "+819011110002", "+819011110003"] {
        assert_eq!(post(n).await.status, 201);
    }
    let r = post("+819011110004").await;
    assert_eq!((r.status, kind_of(&r).as_str()), (429, "rate-limited"));
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("country JP had 3 calls in the last 3600 s (limit 3)"),
        "{}",
        r.body
    );
    assert_eq!(r.headers["retry-after"], "3600");
    for n in ["+12025550123", "+12025550124"] {
        assert_eq!(post(n).await.status, 201);
    }
    let r = post("+12025550125").await;
    assert_eq!(r.status, 429);
    assert!(r.body.contains("country US had 2 calls"), "{}", r.body);
    assert_eq!(post("+442071838750").await.status, 201);
}

/// One request for each of `bodies` at once, each on its own connection, spread over `addrs`
/// in turn: their answers.
async fn at_once(
    addrs: &[SocketAddr],
    key: &str,
    extra: &[(&'static str, &'static str)],
    bodies: Vec<String>,
) -> Vec<Reply> {
    let start = Arc::new(tokio::sync::Barrier::new(bodies.len()));
    let tasks: Vec<_> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let (addr, start) = (addrs[i % addrs.len()], start.clone());
            let mut headers = vec![("Authorization".to_string(), auth(key))];
            headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            tokio::spawn(async move {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                start.wait().await;
                http(addr, "POST", "/v1/challenges", &h, body.as_bytes()).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// `body` `n` times.
fn times(n: usize, body: &str) -> Vec<String> {
    vec![body.to_string(); n]
}

/// The API served over each of `stores` (one node each) with `cfg`: their addresses and a
/// service key.
async fn nodes(stores: &[Store], cfg: ApiConfig) -> (Vec<SocketAddr>, String) {
    let (service, _) = keys(&stores[0]).await;
    let mut addrs = Vec::new();
    for store in stores {
        addrs.push(serve(state(store, cfg.clone())).await);
    }
    (addrs, service)
}

/// Two nodes' stores on one PostgreSQL server of their own.
async fn two_nodes(pg: &Postgres) -> Vec<Store> {
    let a = Store::open(&pg.url).await.unwrap().cached().unwrap();
    let b = Store::open(&pg.url).await.unwrap().cached().unwrap();
    vec![a, b]
}

/// 50 requests at once for one new number with a limit of 5 make exactly 5 challenges and 45
/// answers 429.
async fn fifty_at_once_make_exactly_five(stores: Vec<Store>) {
    let mut cfg = config();
    cfg.policy.per_number = api::RateLimit::new(5, Duration::from_secs(600));
    let (addrs, service) = nodes(&stores, cfg).await;
    let number = store::PhoneNumber::parse("+819012340000").unwrap();
    let body = r#"{"phone_number":"+819012340000"}"#;
    let replies = at_once(&addrs, &service, &[], times(50, body)).await;
    let count = |s: u16| replies.iter().filter(|r| r.status == s).count();
    let made = stores[0]
        .count_challenges(store::Scope::Phone(&number), 0)
        .await
        .unwrap();
    eprintln!(
        "50 at once over {} node(s): {} created (201), {} refused (429), {} challenges stored",
        addrs.len(),
        count(201),
        count(429),
        made
    );
    assert_eq!((count(201), count(429), made), (5, 45, 5));
    assert!(
        replies
            .iter()
            .filter(|r| r.status == 429)
            .all(|r| kind_of(r) == "rate-limited"),
        "{}",
        replies.iter().find(|r| r.status != 201).unwrap().body
    );
}

/// One Idempotency-Key sent 20 times at once, for one number with a limit of 5: one
/// challenge, the others its replays; replayed again, the same.
async fn twenty_at_once_with_one_key_make_one(stores: Vec<Store>) {
    let mut cfg = config();
    cfg.policy.per_number = api::RateLimit::new(5, Duration::from_secs(600));
    let (addrs, service) = nodes(&stores, cfg).await;
    let key = [("Idempotency-Key", "burst-1")];
    let body = r#"{"phone_number":"+819012349999"}"#;
    let replies = at_once(&addrs, &service, &key, times(20, body)).await;
    let ids: std::collections::HashSet<String> = replies
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or("none").to_string())
        .collect();
    assert_eq!(
        replies.iter().filter(|r| r.status == 201).count(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 19);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let replayed = at_once(&addrs, &service, &key, times(4, body)).await;
    assert!(replayed.iter().all(|r| r.status == 200));
}

/// The cap on challenges waiting for a call: 5 places left, 50 numbers at once.
async fn fifty_numbers_at_once_take_the_five_places_left(stores: Vec<Store>) {
    // Some challenges waiting already, as on a gateway at work: the cap counts them too.
    for i in 0..3 {
        let earlier = sign_in("key_earlier", &format!("+8190444{i:05}"), now_ms());
        stores[0].create_challenge(&earlier).await.unwrap();
    }
    let active = stores[0].active_challenges().await.unwrap() as u32;
    let mut cfg = config();
    cfg.policy.max_concurrent_calls = active + 5;
    let (addrs, service) = nodes(&stores, cfg).await;
    let bodies = (0..50)
        .map(|i| format!(r#"{{"phone_number":"+8190555{i:05}"}}"#))
        .collect();
    let replies = at_once(&addrs, &service, &[], bodies).await;
    let count = |s: u16| replies.iter().filter(|r| r.status == s).count();
    eprintln!(
        "50 numbers at once, 5 places left under the cap: {} created, {} refused",
        count(201),
        count(429)
    );
    assert_eq!((count(201), count(429)), (5, 45));
    assert!(
        replies
            .iter()
            .filter(|r| r.status == 429)
            .all(|r| kind_of(r) == "too-many-calls")
    );
    assert_eq!(
        stores[0].active_challenges().await.unwrap() as u32,
        active + 5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_at_once_make_exactly_five_challenges_on_sqlite() {
    fifty_at_once_make_exactly_five(vec![sqlite("api-burst").await]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_at_once_over_two_nodes_make_exactly_five_challenges_on_postgresql() {
    let pg = Postgres::start("api-burst");
    fifty_at_once_make_exactly_five(two_nodes(&pg).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_at_once_with_one_idempotency_key_make_one_challenge_on_sqlite() {
    twenty_at_once_with_one_key_make_one(vec![sqlite("api-burst-idem").await]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_at_once_over_two_nodes_with_one_idempotency_key_make_one_on_postgresql() {
    let pg = Postgres::start("api-burst-idem");
    twenty_at_once_with_one_key_make_one(two_nodes(&pg).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_numbers_at_once_take_the_five_places_left_under_the_cap_on_sqlite() {
    fifty_numbers_at_once_take_the_five_places_left(vec![sqlite("api-burst-cap").await]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_numbers_at_once_over_two_nodes_take_the_five_places_left_on_postgresql() {
    let pg = Postgres::start("api-burst-cap");
    fifty_numbers_at_once_take_the_five_places_left(two_nodes(&pg).await).await;
}
