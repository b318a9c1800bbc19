//! The routes and `/openapi.json`: the document lists every route, every route it lists
//! answers as documented, and the router's own answers are problems too.

use std::net::SocketAddr;

use crate::common::{Api, auth, authorized, config, http};

/// The document the API at `addr` serves.
async fn document(addr: SocketAddr) -> serde_json::Value {
    let r = http(addr, "GET", "/openapi.json", &[], b"").await;
    assert_eq!(r.status, 200);
    r.json()
}

/// Its operations as `METHOD /path`, sorted.
fn operations(doc: &serde_json::Value) -> Vec<String> {
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    documented
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let Api { addr, .. } = Api::start("api-openapi", config()).await;
    let doc = document(addr).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut expected = vec![
        "POST /v1/challenges",
        "POST /v1/challenges/{id}/check",
        "GET /v1/challenges/{id}",
        "DELETE /v1/challenges/{id}",
        "GET /v1/challenges/{id}/events",
        "POST /v1/users/{user_id}/phones",
        "GET /v1/users/{user_id}/phones",
        "DELETE /v1/users/{user_id}/phones/{phone_id}",
        "GET /v1/users/{user_id}/trusted-devices",
        "DELETE /v1/users/{user_id}/trusted-devices",
        "DELETE /v1/users/{user_id}/trusted-devices/{device_id}",
        "GET /v1/users/{user_id}/fraud-block",
        "DELETE /v1/users/{user_id}/fraud-block",
        "GET /v1/calls",
        "GET /v1/calls/{id}",
        "GET /v1/calls/stats",
        "GET /v1/log",
        "GET /v1/api-keys",
        "DELETE /v1/api-keys/{id}",
        "GET /healthz",
        "GET /readyz",
    ];
    expected.sort_unstable();
    assert_eq!(operations(&doc), expected);
}

/// Every documented operation is routed: with a key it never meets the router's "no route"
/// or "method not allowed", and every answer it gives is one it documents.
#[tokio::test]
async fn every_documented_operation_is_routed_and_answers_as_documented() {
    let Api { addr, service, .. } = Api::start("api-openapi-routes", config()).await;
    let doc = document(addr).await;
    for op in &operations(&doc) {
        let (method, path) = op.split_once(' ').unwrap();
        let concrete = path
            .replace("{id}", "x_1")
            .replace("{user_id}", "alice")
            .replace("{phone_id}", "ph_1")
            .replace("{device_id}", "td_1");
        let r = http(
            addr,
            method,
            &concrete,
            &[("Authorization", &auth(&service))],
            if method == "POST" { b"{}" } else { b"" },
        )
        .await;
        let kind = serde_json::from_str::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default();
        assert!(
            !kind.ends_with("/no-route") && !kind.ends_with("/method-not-allowed"),
            "{op}: {} {}",
            r.status,
            r.body
        );
        let responses = doc["paths"][path][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap();
        assert!(
            responses.contains_key(&r.status.to_string())
                || r.status == 403
                    && method == "GET"
                    && (path.starts_with("/v1/calls") || path == "/v1/log"),
            "{op} answered {} which it does not document: {}",
            r.status,
            r.body
        );
    }
}

/// The schemas the operations name exist.
#[tokio::test]
async fn the_schemas_the_document_names_exist() {
    let Api { addr, .. } = Api::start("api-openapi-schemas", config()).await;
    let doc = document(addr).await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "ChallengeView",
        "CreateRequest",
        "CallPage",
        "CallDetail",
        "LogPage",
        "LogView",
        "StatsView",
        "PhoneView",
        "ProblemDoc",
        "ApiKeyList",
        "ApiKeyView",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    // The call log says where each call's challenge came from, and may be filtered by it.
    let call = &schemas["CallView"]["properties"];
    assert!(
        call["origin"].is_object() && call["origin_ref"].is_object(),
        "{call}"
    );
    let params = doc["paths"]["/v1/calls"]["get"]["parameters"]
        .as_array()
        .unwrap();
    assert!(params.iter().any(|p| p["name"] == "origin"), "{params:?}");
    // And searched by user, whole number, challenge and call.
    for name in ["user_id", "number", "challenge_id", "call_id"] {
        assert!(
            params.iter().any(|p| p["name"] == name),
            "{name}: {params:?}"
        );
    }
}

/// axum's own answers are problems too: no route, a method not allowed, a bad query.
#[tokio::test]
async fn the_routers_own_answers_are_problems() {
    let Api { addr, operator, .. } = Api::start("api-router-problems", config()).await;
    let r = http(addr, "GET", "/v1/nothing", &[], b"").await;
    assert_eq!(
        (r.status, r.headers["content-type"].as_str()),
        (404, "application/problem+json")
    );
    let r = http(addr, "PUT", "/v1/challenges", &[], b"").await;
    assert_eq!(
        (r.status, r.headers["content-type"].as_str()),
        (405, "application/problem+json")
    );
    let r = authorized(addr, "GET", "/v1/calls?limit=many", &auth(&operator)).await;
    assert_eq!(
        (r.status, r.headers["content-type"].as_str()),
        (400, "application/problem+json")
    );
    assert!(
        r.json()["detail"].as_str().unwrap().contains("limit"),
        "{}",
        r.body
    );
}
