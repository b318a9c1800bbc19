//! `/v1/calls`: the operators' call log, with a call sipp answered and approved with '#';
//! `/v1/log` with refused attempts and trusted sign-ins; searches; `/v1/calls/stats`.

use callverify_e2e::BOUND;

use crate::common::{
    APPROVED_ORDER, Api, auth, authorized, called_through_sipp, ch, config, enrolled, post_json,
    remembered,
};

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

/// Japan only, two calls a number in 10 minutes.
fn two_a_number() -> api::ApiConfig {
    let mut cfg = config();
    cfg.policy.allowed_countries = api::Countries::Only(vec!["JP".into()]);
    cfg.policy.per_number = api::RateLimit::new(2, std::time::Duration::from_secs(600));
    cfg
}

/// `/v1/log` shows the refused attempts (a country, a rate limit), the sign-ins that made no
/// call (a trusted device's), and the calls; it and `/v1/calls` are searched by user, whole
/// number (shown masked only), challenge and call.
#[tokio::test]
async fn the_log_shows_refusals_and_trusted_sign_ins_and_is_searched_by_each_kind() {
    let api = Api::start("api-log-search", two_a_number()).await;
    let (addr, op) = (api.addr, auth(&api.operator));
    enrolled(addr, &api.store, &api.service, "alice", "+819012345678").await;
    let remembered = remembered(&api, "alice", store::now_ms()).await;
    // A call of the remembered sign-in, as the runner logs one.
    let call = store::CallId::new();
    api.store
        .start_call(&store::NewCall {
            id: call.clone(),
            challenge_id: ch(&remembered.id),
            phone_masked: "+81 ** **** **78".into(),
            started_at_ms: store::now_ms(),
        })
        .await
        .unwrap();
    let end = store::CallEnd {
        time_to_verdict_ms: Some(4200),
        ..store::CallEnd::new(store::ChallengeState::Approved, store::now_ms())
    };
    assert!(api.store.finish_call(&call, &end).await.unwrap());
    // The trusted device: approved, no call.
    let body = format!(
        r#"{{"user_id":"alice","trusted_device_token":"{}"}}"#,
        remembered.token
    );
    let r = post_json(addr, "/v1/challenges", &api.service, &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let trusted = r.json()["id"].as_str().unwrap().to_string();
    // Refused: a country, then the number's limit (two calls already).
    let r = post_json(
        addr,
        "/v1/challenges",
        &api.service,
        r#"{"phone_number":"+442071838750"}"#,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post_json(
        addr,
        "/v1/challenges",
        &api.service,
        r#"{"user_id":"alice"}"#,
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);

    let log = |q: &'static str| {
        let op = op.clone();
        async move {
            let r = authorized(addr, "GET", &format!("/v1/log{q}"), &op).await;
            assert_eq!(r.status, 200, "{q}: {}", r.body);
            assert!(!r.body.contains("9012345678"), "a whole number: {}", r.body);
            r.json()["entries"].as_array().unwrap().clone()
        }
    };
    let what = |entries: &[serde_json::Value]| -> Vec<String> {
        entries
            .iter()
            .map(|e| match e["kind"].as_str().unwrap() {
                "refusal" => format!("refusal:{}", e["rule"].as_str().unwrap()),
                k => format!("{k}:{}", e["id"].as_str().unwrap()),
            })
            .collect()
    };
    let all = log("").await;
    let enrolment = all.last().unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(
        what(&all),
        [
            "refusal:rate-limited".to_string(),
            "refusal:country-not-allowed".into(),
            format!("challenge:{trusted}"),
            format!("call:{call}"),
            format!("challenge:{enrolment}"),
        ]
    );
    let limit = &all[0];
    assert_eq!(limit["user_id"], "alice");
    assert_eq!(limit["phone_number"], "+81 ** **** **78");
    assert_eq!(limit["retry_after_s"], 600);
    assert_eq!(limit["repeats"], 1);
    assert!(limit["api_key_id"].as_str().unwrap().starts_with("key_"));
    assert_eq!(all[1]["phone_number"], "+44 ** **** **50");
    assert!(all[1]["user_id"].is_null());
    assert_eq!(all[2]["detail"], "trusted_device");
    assert_eq!(all[2]["outcome"], "approved");
    assert_eq!(all[3]["time_to_verdict_ms"], 4200);

    let alice = log("?user_id=alice").await;
    assert_eq!(
        what(&alice),
        what(&all[..1])
            .into_iter()
            .chain(what(&all[2..]))
            .collect::<Vec<_>>()
    );
    let number = log("?number=%2B819012345678").await;
    assert_eq!(what(&number), what(&alice));
    let gb = log("?number=%2B442071838750").await;
    assert_eq!(what(&gb), ["refusal:country-not-allowed"]);
    let by_challenge = format!("?challenge_id={trusted}");
    let r = authorized(addr, "GET", &format!("/v1/log{by_challenge}"), &op).await;
    assert_eq!(
        what(r.json()["entries"].as_array().unwrap()),
        [format!("challenge:{trusted}")]
    );
    let refusals = log("?kind=refusal").await;
    assert_eq!(refusals.len(), 2);
    let approved = log("?outcome=approved").await;
    assert_eq!(what(&approved), what(&all[2..]));

    // The call log, searched the same ways, finds the call.
    for q in [
        "?user_id=alice".to_string(),
        "?number=%2B819012345678".into(),
        format!("?challenge_id={}", remembered.id),
        format!("?call_id={call}"),
    ] {
        let r = authorized(addr, "GET", &format!("/v1/calls{q}"), &op).await;
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        let calls = r.json()["calls"].as_array().unwrap().clone();
        assert_eq!(calls.len(), 1, "{q}");
        assert_eq!(calls[0]["id"], call.as_str());
    }
    for q in ["?user_id=bob", "?number=%2B819012345679"] {
        let r = authorized(addr, "GET", &format!("/v1/calls{q}"), &op).await;
        assert_eq!(r.json()["calls"], serde_json::json!([]), "{q}");
    }

    // The figures: one call, approved, 4.2 s; the trusted sign-in and two refusals.
    let r = authorized(addr, "GET", "/v1/calls/stats", &op).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = r.json();
    assert_eq!(
        (&s["calls"], &s["approved"], &s["success_rate"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1.0)
        )
    );
    assert_eq!(
        (&s["p50_verdict_ms"], &s["p95_verdict_ms"]),
        (&serde_json::json!(4200), &serde_json::json!(4200))
    );
    assert_eq!(
        (&s["trusted_sign_ins"], &s["refused"]),
        (&serde_json::json!(1), &serde_json::json!(2))
    );
    let r = authorized(addr, "GET", "/v1/calls/stats?user_id=bob", &op).await;
    assert_eq!(r.json()["calls"], 0);
    assert!(r.json()["success_rate"].is_null());
}

/// Each search value is checked: what is not a number, a challenge or call id, a user id,
/// a kind, or a window (the figures' 31 days at most) is a 422 problem; the log and the
/// figures are for operators only.
#[tokio::test]
async fn bad_search_values_are_422_problems() {
    let Api {
        addr,
        service,
        operator,
        ..
    } = Api::start("api-log-bad", config()).await;
    let op = auth(&operator);
    let week = 7 * 86_400_000i64;
    let bad: Vec<(String, &str)> = vec![
        ("/v1/log?number=819012345678".into(), "number"),
        ("/v1/log?number=%2B0812".into(), "number"),
        ("/v1/calls?number=%2B81abc".into(), "number"),
        ("/v1/log?challenge_id=bogus".into(), "challenge_id"),
        ("/v1/calls?challenge_id=ch_XYZ".into(), "challenge_id"),
        ("/v1/log?call_id=ch_0123".into(), "call_id"),
        ("/v1/calls/stats?call_id=call_".into(), "call_id"),
        ("/v1/log?user_id=a%20b".into(), "user_id"),
        (format!("/v1/log?user_id={}", "u".repeat(129)), "user_id"),
        ("/v1/log?kind=calls".into(), "kind"),
        ("/v1/calls?kind=refusal".into(), "GET /v1/log"),
        ("/v1/log?from=10&to=5".into(), "before"),
        (format!("/v1/calls/stats?from=0&to={}", 5 * week), "31 days"),
        ("/v1/log?cursor=bogus".into(), "cursor"),
    ];
    for (path, says) in bad {
        let r = authorized(addr, "GET", &path, &op).await;
        assert_eq!(r.status, 422, "{path}: {}", r.body);
        assert_eq!(
            r.headers["content-type"], "application/problem+json",
            "{path}"
        );
        let detail = r.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(says), "{path}: {detail}");
    }
    for path in [
        "/v1/log?user_id=entra:tid:oid",
        "/v1/log?user_id=demo:alice",
        "/v1/calls/stats?from=0&to=86400000",
        "/v1/log?kind=challenge&outcome=approved",
    ] {
        let r = authorized(addr, "GET", path, &op).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    for path in ["/v1/log", "/v1/calls/stats"] {
        let r = authorized(addr, "GET", path, &auth(&service)).await;
        assert_eq!(r.status, 403, "{path}");
    }
}
