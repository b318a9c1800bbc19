//! `/v1/calls`: the operators' call log, with a call sipp answered and approved with '#'.

use callverify_e2e::BOUND;

use crate::common::{APPROVED_ORDER, Api, auth, authorized, called_through_sipp, config};

/// The operator's call log shows the call with its key, the challenge's timeline and the
/// call's steps (the INVITE, sipp's responses, the prompts, the key, the verdict).
#[tokio::test]
async fn the_call_log_shows_a_call_with_its_key_timeline_and_steps() {
    let called = called_through_sipp("api-call-log").await;
    let exit = called.sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    let (addr, id) = (called.api.addr, called.id);
    let op = auth(&called.api.operator);
    // The call is logged as ended just after sipp has its BYE: wait (bounded) for that.
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut calls = Vec::new();
    while calls.is_empty() && tokio::time::Instant::now() < deadline {
        let r = authorized(addr, "GET", "/v1/calls?outcome=approved&limit=10", &op).await;
        assert_eq!(r.status, 200, "{}", r.body);
        calls = r.json()["calls"].as_array().unwrap().clone();
        if calls.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["challenge_id"], id.as_str());
    assert_eq!(calls[0]["phone_number"], "+81 ** **** **78");
    assert_eq!(calls[0]["origin"], "api");
    assert!(calls[0]["origin_ref"].is_null());
    let call_id = calls[0]["id"].as_str().unwrap();
    let r = authorized(addr, "GET", &format!("/v1/calls/{call_id}"), &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let call = r.json();
    assert_eq!(call["keys"][0]["digit"], "#");
    assert_eq!(call["outcome"], "approved");
    let timeline: Vec<&str> = call["challenge_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(timeline, APPROVED_ORDER.to_vec());
    let steps: Vec<(String, String)> = call["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_string();
            (f("kind"), f("detail"))
        })
        .collect();
    let step = |kind: &str, detail: &str| (kind.to_string(), detail.to_string());
    for want in [
        step("sip", "180 Ringing"),
        step("sip", "200 OK (PCMU)"),
        step("prompt", "greeting"),
        step("verdict", "approved"),
        step("prompt", "verified"),
        step("end", "approved"),
    ] {
        assert!(steps.contains(&want), "{want:?} in {steps:?}");
    }
    assert_eq!(steps[0].0, "invite", "{steps:?}");
    assert!(
        steps
            .iter()
            .any(|(k, d)| k == "key" && d.starts_with("# (")),
        "{steps:?}"
    );
    let at: Vec<i64> = call["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] != "key")
        .map(|s| s["at_ms"].as_i64().unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] <= w[1]), "{at:?}");
}

/// A service key may not read the call log; a cursor that is not one is refused, and so is
/// an outcome or an origin that is none (the problem names those there are).
#[tokio::test]
async fn the_call_log_is_for_operators_only() {
    let Api {
        addr,
        service,
        operator,
        ..
    } = Api::start("api-call-log-keys", config()).await;
    let r = authorized(addr, "GET", "/v1/calls", &auth(&service)).await;
    assert_eq!(r.status, 403);
    let r = authorized(addr, "GET", "/v1/calls?cursor=bogus", &auth(&operator)).await;
    assert_eq!(r.status, 422);
    let r = authorized(addr, "GET", "/v1/calls?outcome=bogus", &auth(&operator)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("no_answer") && detail.contains("in_progress"),
        "{detail}"
    );
    for known in ["in_progress", "approved", "interrupted"] {
        let path = format!("/v1/calls?outcome={known}");
        let r = authorized(addr, "GET", &path, &auth(&operator)).await;
        assert_eq!(r.status, 200, "{known}: {}", r.body);
    }
    let r = authorized(addr, "GET", "/v1/calls?origin=entra", &auth(&operator)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.json()["detail"],
        "origin \"entra\" is not one of api, eam, radius"
    );
    for known in ["api", "eam", "radius"] {
        let path = format!("/v1/calls?origin={known}");
        let r = authorized(addr, "GET", &path, &auth(&operator)).await;
        assert_eq!(r.status, 200, "{known}: {}", r.body);
    }
}
