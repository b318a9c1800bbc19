//! callverify's SIP user agent against baresip, a real softphone, answering automatically.

use std::time::Duration;

use callverify_e2e::{BOUND, Baresip, V4, ended, endpoint, offer, run_call, trunk};
use sip::{CallEvent, EndReason, Transport};

async fn call_baresip(transport: Transport) {
    let baresip = Baresip::start(&format!("answer-{transport}"));
    let ep = endpoint(V4, BOUND, vec![trunk("softphone", transport, baresip.addr)]).await;
    let mut call = ep.call("+81901234567", offer(V4)).await.unwrap();
    // Stay on the line a moment after the answer, as a verification call would.
    let events = run_call(&mut call, Some(Duration::from_millis(500))).await;
    ep.shutdown().await;
    let log = baresip.log();
    let answer = events.iter().find_map(|e| match e {
        CallEvent::Answered { answer } => Some(answer.clone()),
        _ => None,
    });
    let answer = answer.unwrap_or_else(|| panic!("not answered: {events:?}\n{log}"));
    assert_eq!(answer.codec, media::Codec::Pcmu, "{log}");
    assert_eq!(answer.remote.ip(), V4);
    assert_eq!(ended(&events), Some(EndReason::Hangup), "{events:?}\n{log}");
    assert!(log.contains("BYE"), "baresip saw the BYE:\n{log}");
}

#[tokio::test]
async fn baresip_answers_automatically_over_udp() {
    call_baresip(Transport::Udp).await;
}

#[tokio::test]
async fn baresip_answers_automatically_over_tcp() {
    call_baresip(Transport::Tcp).await;
}
