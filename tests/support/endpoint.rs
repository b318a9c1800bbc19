//! callverify's SIP endpoint set up for the peers: trunks, endpoints on free ports (UDP and
//! TCP, and TLS), the offer of a call, and a call's events until it ends.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use engine::{Call, SipEndpoint};
use media::Codec;
use sip::sdp::Offer;
use sip::{CallEvent, EndReason, Listener, Timers, Transport, TrunkConfig, UaConfig};

use crate::BOUND;

/// A trunk to `addr`.
pub fn trunk(name: &str, transport: Transport, addr: SocketAddr) -> TrunkConfig {
    TrunkConfig {
        name: name.into(),
        address: addr,
        transport,
        domain: addr.to_string(),
        from_user: "callverify".into(),
        credentials: None,
        register: false,
        options_interval: None,
        srtp: Default::default(),
        responses_from: Default::default(),
    }
}

/// callverify's endpoint listening on free ports of `ip` (UDP and TCP), ringing at most
/// `ring_timeout`.
pub async fn endpoint(ip: IpAddr, ring_timeout: Duration, trunks: Vec<TrunkConfig>) -> SipEndpoint {
    endpoint_with(ip, ring_timeout, trunks, Timers::default())
        .await
        .0
}

/// As [`endpoint`] with given T1/T2, also returning the trunk and registration events.
pub async fn endpoint_with(
    ip: IpAddr,
    ring_timeout: Duration,
    trunks: Vec<TrunkConfig>,
    timers: Timers,
) -> (
    SipEndpoint,
    tokio::sync::mpsc::UnboundedReceiver<sip::Event>,
) {
    let cfg = ua_config(ip, &[Transport::Udp, Transport::Tcp], timers, ring_timeout);
    SipEndpoint::start(cfg, trunks)
        .await
        .expect("the endpoint starts")
}

/// The user agent's settings for listeners of `transports` on free ports of `ip`.
fn ua_config(
    ip: IpAddr,
    transports: &[Transport],
    timers: Timers,
    ring_timeout: Duration,
) -> UaConfig {
    UaConfig {
        listen: transports
            .iter()
            .map(|&transport| Listener::new(transport, SocketAddr::new(ip, 0)))
            .collect(),
        user_agent: "callverify-e2e".into(),
        timers,
        ring_timeout,
    }
}

/// callverify's endpoint with a TLS listener on a free port of `ip` (presenting
/// `tls.server`) beside UDP and TCP, checking TLS trunks as `tls.trunks` says.
pub async fn tls_endpoint(
    ip: IpAddr,
    trunks: Vec<TrunkConfig>,
    tls: engine::TlsSettings,
) -> SipEndpoint {
    let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
    let cfg = ua_config(ip, &all, Timers::default(), BOUND);
    SipEndpoint::start_tls(cfg, trunks, tls)
        .await
        .expect("the endpoint starts")
        .0
}

/// The offer for a call from `ep` (the RTP port is not used by these SIP tests).
pub fn offer(ip: IpAddr) -> Offer {
    Offer {
        address: ip,
        port: 49170,
        session_id: 1,
        version: 1,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        sdes: Default::default(),
    }
}

/// The events of `call` until it ends (each wait bounded); with `hang_up_after`, it
/// hangs up that long after the answer.
pub async fn run_call(call: &mut Call, hang_up_after: Option<Duration>) -> Vec<CallEvent> {
    let mut events = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(BOUND, call.next_event()).await {
        if let (Some(delay), CallEvent::Answered { .. }) = (hang_up_after, &e) {
            tokio::time::sleep(delay).await;
            call.hangup();
        }
        let end = matches!(e, CallEvent::Ended(_));
        events.push(e);
        if end {
            break;
        }
    }
    events
}

/// The end reason in a list of events.
pub fn ended(events: &[CallEvent]) -> Option<EndReason> {
    events.iter().find_map(|e| match e {
        CallEvent::Ended(r) => Some(r.clone()),
        _ => None,
    })
}

/// The next trunk or registration event (bounded).
pub async fn next_ua_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<sip::Event>,
) -> sip::Event {
    tokio::time::timeout(BOUND, events.recv())
        .await
        .expect("an event within the bound")
        .expect("the endpoint runs")
}
