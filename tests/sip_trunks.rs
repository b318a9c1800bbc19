//! Trunk handling against real peers: REGISTER to sipp as a registrar (digest checked by
//! sipp's verifyauth), OPTIONS keep-alive against baresip, and failover to a second trunk
//! when the first is unreachable or stops answering.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use callverify_e2e::{
    BOUND, Baresip, Sipp, V4, ended, endpoint_with, next_ua_event, offer, run_call, trunk,
};
use sip::{CallEvent, Credentials, EndReason, Event, Registration, Timers, Transport};

fn fast_timers() -> Timers {
    // T1 = 50 ms: Timer F (64·T1) fires after 3.2 s instead of 32 s.
    Timers {
        t1: Duration::from_millis(50),
        t2: Duration::from_millis(400),
    }
}

#[tokio::test]
async fn register_with_digest_to_sipp() {
    let sipp = Sipp::start("registrar", Transport::Udp, V4);
    let mut t = trunk("registrar", Transport::Udp, sipp.addr);
    t.register = true;
    t.credentials = Some(Credentials {
        username: "callverify".into(),
        password: "right-password".into(),
    });
    let (ep, mut events) = endpoint_with(V4, BOUND, vec![t], Timers::default()).await;
    let e = next_ua_event(&mut events).await;
    let exit = sipp.finish().await;
    ep.shutdown().await;
    assert!(exit.passed, "{}", exit.log);
    assert_eq!(
        e,
        Event::Registration {
            trunk: "registrar".into(),
            state: Registration::Registered { expires: 60 }
        }
    );
}

async fn call_until_end(ep: &engine::SipEndpoint) -> Vec<CallEvent> {
    let mut call = ep.call("+81901234567", offer(V4)).await.unwrap();
    run_call(&mut call, Some(Duration::ZERO)).await
}

#[tokio::test]
async fn an_unreachable_tcp_trunk_fails_over_to_the_next() {
    let baresip = Baresip::start("failover");
    // Nothing listens on this port: the TCP connect is refused at once.
    let closed = SocketAddr::new(V4, callverify_e2e::free_port(V4));
    let trunks = vec![
        trunk("dead", Transport::Tcp, closed),
        trunk("softphone", Transport::Udp, baresip.addr),
    ];
    let (ep, mut ua_events) = endpoint_with(V4, BOUND, trunks, Timers::default()).await;
    let events = call_until_end(&ep).await;
    ep.shutdown().await;
    assert_eq!(
        events[..2],
        [
            CallEvent::Sent {
                trunk: "dead".into()
            },
            CallEvent::Sent {
                trunk: "softphone".into()
            }
        ],
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. })),
        "{events:?}\n{}",
        baresip.log()
    );
    assert_eq!(ended(&events), Some(EndReason::Hangup));
    assert_eq!(
        next_ua_event(&mut ua_events).await,
        Event::Trunk {
            trunk: "dead".into(),
            up: false
        }
    );
}

#[tokio::test]
async fn options_keepalive_marks_a_silent_trunk_down_and_calls_use_the_other() {
    let baresip = Baresip::start("keepalive");
    // A UDP port that takes packets and never answers.
    let silent = UdpSocket::bind((V4, 0)).unwrap();
    let mut first = trunk("silent", Transport::Udp, silent.local_addr().unwrap());
    first.options_interval = Some(Duration::from_secs(1));
    let mut second = trunk("softphone", Transport::Udp, baresip.addr);
    second.options_interval = Some(Duration::from_secs(1));
    let (ep, mut ua_events) = endpoint_with(V4, BOUND, vec![first, second], fast_timers()).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(next_ua_event(&mut ua_events).await);
    }
    assert!(
        seen.contains(&Event::Trunk {
            trunk: "softphone".into(),
            up: true
        }),
        "baresip answers OPTIONS: {seen:?}"
    );
    assert!(
        seen.contains(&Event::Trunk {
            trunk: "silent".into(),
            up: false
        }),
        "no answer within Timer F: {seen:?}"
    );
    let events = call_until_end(&ep).await;
    ep.shutdown().await;
    assert_eq!(
        events[0],
        CallEvent::Sent {
            trunk: "softphone".into()
        },
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. })),
        "{events:?}"
    );
    let mut buf = [0u8; 2048];
    silent.set_nonblocking(true).unwrap();
    let (n, _) = silent
        .recv_from(&mut buf)
        .expect("the silent trunk got OPTIONS");
    assert!(buf[..n].starts_with(b"OPTIONS "));
}
