//! Challenges made through the API are called by the runner's dispatcher: at once when it
//! has room, never more at once than its capacity, the others left queued until a call
//! ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api::AppState;
use callverify_e2e::{
    BOUND, Sipp, V4, endpoint, free_media_ports, media_at, prompts, runner_through, script, trunk,
};
use media::Language;
use sip::Transport;
use store::{CallFilter, ChallengeState, Store};

use crate::common::*;

/// How many of `ids` are in each state: (in a call, queued, canceled).
async fn counts(store: &Store, ids: &[String]) -> (usize, usize, usize) {
    let (mut calling, mut queued, mut canceled) = (0, 0, 0);
    for id in ids {
        let c = store.challenge(&ch(id)).await.unwrap().unwrap();
        match c.state {
            ChallengeState::Calling | ChallengeState::Ringing | ChallengeState::Answered => {
                calling += 1;
            }
            ChallengeState::Queued => queued += 1,
            ChallengeState::Canceled => canceled += 1,
            other => panic!("{id} {other}: {:?}", c.reason),
        }
    }
    (calling, queued, canceled)
}

/// Six challenges made at once through the API of a runner with room for two calls (sipp
/// rings and never answers): two are called and four wait queued; each cancel of a ringing
/// one lets the dispatcher call the next. Never more than two calls at once, each challenge
/// called once.
#[tokio::test]
async fn creates_beyond_the_capacity_wait_queued_and_are_called_as_room_frees() {
    const N: usize = 6;
    const CAPACITY: usize = 2;
    let sipp = Sipp::start_with("ring_no_answer", Transport::Udp, V4, &["-m", "6"]);
    let store = sqlite("api-dispatch-capacity").await;
    // Two RTP/RTCP pairs: one for each call at once.
    let ep = endpoint(V4, BOUND, vec![trunk("sipp", Transport::Udp, sipp.addr)]).await;
    let base = free_media_ports(V4);
    let media = engine::MediaConfig {
        ports: base..=base + 3,
        ..media_at(V4, base)
    };
    let runner = Arc::new(
        engine::Runner::new(
            store.clone(),
            Arc::new(ep),
            media,
            script(),
            HashMap::from([(Language::Ja, prompts(Language::Ja))]),
        )
        .with_capacity(CAPACITY),
    );
    let dispatcher = runner.dispatch();
    let api = Api::over(store.clone(), |store| AppState {
        runner: Some(runner.clone()),
        ..state(store, config())
    })
    .await;
    let creates = (0..N).map(|i| {
        let body = format!(r#"{{"phone_number":"+8190123456{i:02}","language":"ja"}}"#);
        let (addr, key) = (api.addr, api.service.clone());
        async move { post_json(addr, "/v1/challenges", &key, &body).await }
    });
    let ids: Vec<String> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, 201, "{}", r.body);
            r.json()["id"].as_str().unwrap().to_string()
        })
        .collect();
    let key = auth(&api.service);
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut cancelled = 0;
    while cancelled < N {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{cancelled} cancelled"
        );
        let (calling, queued, canceled) = counts(&store, &ids).await;
        assert!(
            calling <= CAPACITY && runner.active_calls() <= CAPACITY,
            "{calling} challenges in a call, {} calls at once",
            runner.active_calls()
        );
        assert_eq!(canceled, cancelled);
        // Once the runner is full, what is left stays queued (longer than a dispatcher's
        // round): a full runner claims nothing.
        if calling == CAPACITY.min(N - cancelled) && queued == N - cancelled - calling {
            tokio::time::sleep(Duration::from_millis(700)).await;
            assert_eq!(counts(&store, &ids).await, (calling, queued, canceled));
            let mut ringing = Vec::new();
            for id in &ids {
                if store.challenge(&ch(id)).await.unwrap().unwrap().state == ChallengeState::Ringing
                {
                    ringing.push(id.clone());
                }
            }
            if ringing.len() == calling {
                for id in ringing {
                    let r =
                        authorized(api.addr, "DELETE", &format!("/v1/challenges/{id}"), &key).await;
                    assert_eq!(r.status, 200, "{}", r.body);
                    cancelled += 1;
                }
                continue;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    let (calls, _) = store
        .calls(&CallFilter::default(), 100, None)
        .await
        .unwrap();
    assert_eq!(calls.len(), N);
    for id in &ids {
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.challenge_id.as_str() == id)
                .count(),
            1
        );
    }
    dispatcher.abort();
}

/// Challenges made one after another through the API (sipp answers each busy): each is
/// called once, `busy`. Prints the time from each challenge's creation to its INVITE (the
/// call's start in the call log), which the wake of the dispatcher must keep short.
#[tokio::test]
async fn a_challenge_made_through_the_api_is_called_at_once() {
    const N: usize = 20;
    let sipp = Sipp::start_with("busy", Transport::Udp, V4, &["-m", "20"]);
    let store = sqlite("api-dispatch-at-once").await;
    let runner = Arc::new(runner_through(store.clone(), sipp.addr).await);
    let dispatcher = runner.dispatch();
    let api = Api::over(store.clone(), |store| AppState {
        runner: Some(runner.clone()),
        ..state(store, config())
    })
    .await;
    let mut waits = Vec::new();
    for i in 0..N {
        // Between a dispatcher's rounds.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let body = format!(r#"{{"phone_number":"+8190123457{i:02}","language":"ja"}}"#);
        let r = post_json(api.addr, "/v1/challenges", &api.service, &body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = r.json()["id"].as_str().unwrap().to_string();
        let poll = auth(r.json()["poll_token"].as_str().unwrap());
        let deadline = tokio::time::Instant::now() + BOUND;
        loop {
            let path = format!("/v1/challenges/{id}?wait=5");
            let r = authorized(api.addr, "GET", &path, &poll).await;
            if r.json()["decided_at"].is_string() {
                assert_eq!(r.json()["state"], "busy", "{}", r.body);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}", r.body);
        }
        let c = store.challenge(&ch(&id)).await.unwrap().unwrap();
        let (calls, _) = store
            .calls(&CallFilter::default(), 100, None)
            .await
            .unwrap();
        let mine: Vec<_> = calls
            .iter()
            .filter(|k| k.challenge_id.as_str() == id)
            .collect();
        assert_eq!(mine.len(), 1);
        waits.push(mine[0].started_at_ms - c.created_at_ms);
    }
    waits.sort_unstable();
    eprintln!(
        "create to INVITE over {N} challenges: p50 {} ms, max {} ms ({waits:?})",
        waits[N / 2],
        waits[N - 1]
    );
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);
    dispatcher.abort();
}
