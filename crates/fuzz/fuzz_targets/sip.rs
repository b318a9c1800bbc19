//! SIP on arbitrary bytes: the parser, the TCP framer, and a user agent with a call in
//! progress taking the bytes as datagrams from its trunk. Clear errors or ignored
//! messages, never a panic.
//!
//! In the input, `$B`, `$C` and `$T` stand for the INVITE's branch, Call-ID and From tag
//! (so mutated responses reach the transaction and dialog code), and `\0\0` separates
//! datagrams, with 600 ms of simulated time between them.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sip::message::{self, Framer};
use sip::sdp::Offer;
use sip::{Listener, Output, Timers, Transport, TrunkConfig, UaConfig, UserAgent};

fuzz_target!(|data: &[u8]| {
    let _ = message::parse(data);
    let mut framer = Framer::default();
    framer.push(data);
    while let Ok(Some(m)) = framer.next_message() {
        let _ = message::parse(&m);
    }

    let local = "127.0.0.1:5070".parse().unwrap();
    let peer = "127.0.0.1:5060".parse().unwrap();
    let cfg = UaConfig {
        listen: vec![Listener::new(Transport::Udp, local)],
        user_agent: "fuzz".into(),
        timers: Timers::default(),
        ring_timeout: Duration::from_secs(45),
    };
    let trunk = TrunkConfig {
        name: "t".into(),
        address: peer,
        transport: Transport::Udp,
        domain: "127.0.0.1".into(),
        from_user: "callverify".into(),
        credentials: Some(sip::Credentials { username: "u".into(), password: "p".into() }),
        register: true,
        options_interval: Some(Duration::from_secs(30)),
        srtp: Default::default(),
        responses_from: Default::default(),
    };
    let mut ua = UserAgent::new(cfg, vec![trunk]).unwrap();
    let mut now = Instant::now();
    ua.start(now);
    let offer = Offer {
        address: "127.0.0.1".parse().unwrap(),
        port: 40000,
        session_id: 1,
        version: 1,
        codecs: vec![media::Codec::Pcmu],
        sdes: Default::default(),
    };
    ua.invite(now, "+81901234567", offer).unwrap();
    let mut invite = None;
    while let Some(o) = ua.poll_output() {
        if let Output::Transmit(t) = o
            && t.bytes.starts_with(b"INVITE")
        {
            invite = message::parse(&t.bytes).ok();
        }
    }
    let invite = invite.expect("the INVITE parses");
    let text = String::from_utf8_lossy(data)
        .replace("$B", invite.via.branch.as_deref().unwrap_or(""))
        .replace("$C", &invite.call_id)
        .replace("$T", invite.from_tag.as_deref().unwrap_or(""));
    for datagram in text.split("\0\0") {
        ua.handle_receive(now, Transport::Udp, local, peer, datagram.as_bytes());
        while ua.poll_output().is_some() {}
        now += Duration::from_millis(600);
        ua.handle_timeout(now);
        while ua.poll_output().is_some() {}
    }
});
