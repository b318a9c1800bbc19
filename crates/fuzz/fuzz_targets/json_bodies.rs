//! The HTTP API's request bodies on arbitrary bytes: each input is sent as the body of every
//! route that takes one (with a valid service key) to the real router on a SQLite store.
//! Every answer must be a 2xx or a 4xx problem+json: never a 5xx, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, header};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct World {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    key: String,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = std::env::temp_dir().join(format!("callverify-fuzz-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (app, key) = rt.block_on(async {
            let url = format!("sqlite://{}", dir.join("fuzz.db").display());
            let store = store::Store::open(&url).await.unwrap();
            let (demo, _) = store
                .create_api_key("demo page", store::KeyKind::Service, 0)
                .await
                .unwrap();
            let (_, key) = store
                .create_api_key("fuzz", store::KeyKind::Service, 0)
                .await
                .unwrap();
            let mut cfg = api::ApiConfig {
                token_secret: b"fuzz token secret, 32 bytes at least".to_vec(),
                demo_page: Some(demo),
                demo_numbers: vec![store::PhoneNumber::parse("+819012345678").unwrap()],
                ..api::ApiConfig::default()
            };
            cfg.policy.allowed_countries = api::Countries::Any;
            let state = api::AppState {
                store,
                runner: None,
                readiness: Default::default(),
                cfg: Arc::new(cfg),
            };
            (api::router(state), key)
        });
        World { rt, app, key }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    for path in [
        "/v1/challenges",
        "/v1/users/alice/phones",
        "/demo/api/sign-in",
        "/demo/api/register",
    ] {
        let req = Request::post(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", w.key))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(data.to_vec()))
            .unwrap();
        let r = w.rt.block_on(w.app.clone().oneshot(req)).unwrap();
        let status = r.status();
        assert!(!status.is_server_error(), "{path}: {status}");
        if status.is_client_error() {
            let ct = r.headers().get(header::CONTENT_TYPE).unwrap();
            assert!(ct.as_bytes().starts_with(b"application/problem+json"), "{path}: {ct:?}");
        }
    }
});
