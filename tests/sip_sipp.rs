//! callverify's SIP user agent against sipp as the callee on loopback, one scenario per
//! case (tests/sipp/*.xml). sipp checks what callverify sends (it fails on anything out of
//! its script); the test checks what callverify reports.

use std::time::Duration;

use callverify_e2e::{Relay, Sipp, SippExit, V4, V6, ended, endpoint, offer, run_call, trunk};
use sip::{CallEvent, Credentials, EndReason, Transport};

const RING: Duration = Duration::from_secs(20);

/// Calls sipp, hangs up once answered if `hang_up`, and returns the call's events and
/// how sipp's scenario ended.
async fn call_sipp(sipp: Sipp, hang_up: bool, ring: Duration) -> (Vec<CallEvent>, SippExit) {
    call_through(sipp.addr, sipp, hang_up, ring, None).await
}

async fn call_through(
    to: std::net::SocketAddr,
    sipp: Sipp,
    hang_up: bool,
    ring: Duration,
    credentials: Option<Credentials>,
) -> (Vec<CallEvent>, SippExit) {
    let ip = sipp.addr.ip();
    let mut t = trunk("sipp", sipp.transport, to);
    t.credentials = credentials;
    let ep = endpoint(ip, ring, vec![t]).await;
    let mut call = ep.call("+81901234567", offer(ip)).await.unwrap();
    let hang_up_after = hang_up.then_some(Duration::from_millis(200));
    let events = run_call(&mut call, hang_up_after).await;
    let exit = sipp.finish().await;
    ep.shutdown().await;
    (events, exit)
}

fn assert_answered(events: &[CallEvent]) {
    let answer = events.iter().find_map(|e| match e {
        CallEvent::Answered { answer } => Some(answer),
        _ => None,
    });
    let answer = answer.unwrap_or_else(|| panic!("not answered: {events:?}"));
    assert_eq!(answer.codec, media::Codec::Pcmu);
    assert_eq!(answer.telephone_event_pt, Some(101));
}

async fn answer_over(transport: Transport, ip: std::net::IpAddr) {
    let sipp = Sipp::start("answer", transport, ip);
    let (events, exit) = call_sipp(sipp, true, RING).await;
    assert!(exit.passed, "{}", exit.log);
    assert_answered(&events);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::Provisional { status: 180, .. }))
    );
    assert_eq!(ended(&events), Some(EndReason::Hangup), "{events:?}");
}

#[tokio::test]
async fn answer_then_bye_udp_ipv4() {
    answer_over(Transport::Udp, V4).await;
}

#[tokio::test]
async fn answer_then_bye_tcp_ipv4() {
    answer_over(Transport::Tcp, V4).await;
}

#[tokio::test]
async fn answer_then_bye_udp_ipv6() {
    answer_over(Transport::Udp, V6).await;
}

#[tokio::test]
async fn answer_then_bye_tcp_ipv6() {
    answer_over(Transport::Tcp, V6).await;
}

async fn rejected(scenario: &str, status: u16) {
    let sipp = Sipp::start(scenario, Transport::Udp, V4);
    let (events, exit) = call_sipp(sipp, false, RING).await;
    assert!(exit.passed, "{}", exit.log);
    match ended(&events) {
        Some(EndReason::Rejected { status: s, .. }) => assert_eq!(s, status),
        other => panic!("{other:?} in {events:?}"),
    }
}

#[tokio::test]
async fn busy_486() {
    rejected("busy", 486).await;
}

#[tokio::test]
async fn decline_603() {
    rejected("decline", 603).await;
}

#[tokio::test]
async fn ringing_without_answer_is_cancelled_at_the_ring_timeout() {
    let sipp = Sipp::start("ring_no_answer", Transport::Udp, V4);
    let (events, exit) = call_sipp(sipp, false, Duration::from_secs(2)).await;
    assert!(exit.passed, "{}", exit.log);
    assert_eq!(ended(&events), Some(EndReason::NoAnswer), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::Provisional { status: 180, .. }))
    );
}

async fn with_password(scenario: &str, password: &str) -> (Vec<CallEvent>, SippExit) {
    let sipp = Sipp::start(scenario, Transport::Udp, V4);
    let credentials = Credentials {
        username: "callverify".into(),
        password: password.into(),
    };
    call_through(sipp.addr, sipp, true, RING, Some(credentials)).await
}

#[tokio::test]
async fn proxy_challenge_407_then_accepted() {
    let (events, exit) = with_password("auth_407", "right-password").await;
    assert!(exit.passed, "{}", exit.log);
    assert_answered(&events);
    assert_eq!(ended(&events), Some(EndReason::Hangup), "{events:?}");
}

#[tokio::test]
async fn challenge_401_answer_verified_by_sipp() {
    let (events, exit) = with_password("auth_401", "right-password").await;
    assert!(exit.passed, "{}", exit.log);
    assert_answered(&events);
    assert_eq!(ended(&events), Some(EndReason::Hangup), "{events:?}");
}

#[tokio::test]
async fn a_wrong_password_fails_with_the_status_and_no_loop() {
    let (events, exit) = with_password("auth_401", "wrong-password").await;
    assert!(exit.passed, "{}", exit.log);
    assert_eq!(
        ended(&events),
        Some(EndReason::AuthFailed { status: 401 }),
        "{events:?}"
    );
    // sipp's script has exactly two INVITEs; a third would have failed it.
    assert_eq!(exit.log.matches("INVITE sip:").count(), 2, "{}", exit.log);
}

#[tokio::test]
async fn a_lost_first_invite_is_recovered_by_retransmission() {
    let sipp = Sipp::start("drop_first_invite", Transport::Udp, V4);
    // The network between callverify and sipp loses the first INVITE.
    let relay = Relay::start(sipp.addr, |n, bytes| {
        n == 1 && bytes.starts_with(b"INVITE ")
    })
    .await;
    let (events, exit) = call_through(relay.addr, sipp, true, RING, None).await;
    assert!(exit.passed, "{}", exit.log);
    assert_eq!(relay.counts().0, 1, "the first INVITE was lost");
    assert_answered(&events);
    assert_eq!(ended(&events), Some(EndReason::Hangup));
}

#[tokio::test]
async fn bye_from_the_callee_ends_the_call() {
    let sipp = Sipp::start("bye_from_callee", Transport::Udp, V4);
    let (events, exit) = call_sipp(sipp, false, RING).await;
    assert!(exit.passed, "{}", exit.log);
    assert_answered(&events);
    assert_eq!(ended(&events), Some(EndReason::RemoteHangup), "{events:?}");
}

#[tokio::test]
async fn a_reinvite_keeps_the_media_and_an_unusable_one_gets_488() {
    let sipp = Sipp::start("reinvite", Transport::Udp, V4);
    let (events, exit) = call_sipp(sipp, false, RING).await;
    assert!(exit.passed, "{}", exit.log);
    assert_answered(&events);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, CallEvent::MediaChanged { .. })),
        "{events:?}"
    );
    assert_eq!(ended(&events), Some(EndReason::RemoteHangup), "{events:?}");
}

#[tokio::test]
async fn bye_from_the_callee_over_tcp_ipv6() {
    let sipp = Sipp::start("bye_from_callee", Transport::Tcp, V6);
    let (events, exit) = call_sipp(sipp, false, RING).await;
    assert!(exit.passed, "{}", exit.log);
    assert_answered(&events);
    assert_eq!(ended(&events), Some(EndReason::RemoteHangup), "{events:?}");
}
