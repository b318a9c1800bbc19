//! Behind a NAT: a listener's advertised address is what every request names (Via sent-by,
//! Contact), in and out of the dialog, while the messages still leave from the listener; it
//! wins over the address a registrar reports; and an unspecified one is refused.

mod common;

use common::*;

/// The NAT's public address, with the listener's port forwarded to it.
const PUBLIC: &str = "198.51.100.7:5060";

fn natted() -> Listener {
    Listener {
        advertise: Some(PUBLIC.parse().unwrap()),
        ..Listener::new(Transport::Udp, LOCAL.parse().unwrap())
    }
}

/// The host and port of a Via's sent-by.
fn sent_by(m: &Incoming) -> String {
    m.via
        .value
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap()
        .to_string()
}

#[test]
fn every_request_names_the_advertised_address_and_leaves_from_the_listener() {
    let mut pbx = trunk("pbx", PEER);
    pbx.options_interval = Some(Duration::from_secs(30));
    let mut s = Sim::with_listener(natted(), vec![pbx]);
    s.ua.start(s.now);
    s.drain();
    let options = s.last("OPTIONS");
    assert_eq!(sent_by(&options), PUBLIC);
    s.receive(PEER, resp(&options, 200, "OK").build());

    let mut offer = offer();
    offer.address = "198.51.100.7".parse().unwrap();
    let call = s.ua.invite(s.now, "+81901234567", offer).unwrap();
    s.drain();
    let inv = s.last("INVITE");
    assert_eq!(sent_by(&inv), PUBLIC);
    assert_eq!(
        inv.header("Contact").unwrap(),
        "<sip:callverify@198.51.100.7:5060>"
    );
    let sdp = String::from_utf8_lossy(inv.body()).to_string();
    assert!(
        sdp.contains("o=callverify 1 1 IN IP4 198.51.100.7\r\n")
            && sdp.contains("c=IN IP4 198.51.100.7\r\n"),
        "{sdp}"
    );
    s.receive(PEER, ok_with_answer(&inv));
    assert_eq!(sent_by(&s.last("ACK")), PUBLIC);

    // The callee's re-INVITE is answered with the advertised Contact and media address.
    let reinvite = callee_request(&inv, "INVITE", 2, "z9hG4bKre1")
        .header("Contact", "<sip:callee@127.0.0.1:5060>")
        .body("application/sdp", ANSWER)
        .build();
    s.receive(PEER, reinvite);
    let (_, _, ok) = s.sent.last().unwrap().clone();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(
        ok.header("Contact").unwrap(),
        "<sip:callverify@198.51.100.7:5060>"
    );
    assert!(String::from_utf8_lossy(ok.body()).contains("c=IN IP4 198.51.100.7\r\n"));
    // Our BYE too; the response's Via is the callee's, copied.
    s.ua.hangup(s.now, call);
    s.drain();
    assert_eq!(sent_by(&s.last("BYE")), PUBLIC);
    assert_eq!(sent_by(&ok), PEER);

    let from: SocketAddr = LOCAL.parse().unwrap();
    assert!(
        s.sent_from.iter().all(|&l| l == from),
        "everything leaves from the listener: {:?}",
        s.sent_from
    );
}

#[test]
fn an_advertised_address_wins_over_the_one_a_registrar_saw() {
    let mut pbx = trunk("pbx", PEER);
    pbx.register = true;
    pbx.credentials = None;
    let mut s = Sim::with_listener(natted(), vec![pbx]);
    s.ua.start(s.now);
    s.drain();
    let reg = s.last("REGISTER");
    assert_eq!(
        reg.header("Contact").unwrap(),
        "<sip:callverify@198.51.100.7:5060>"
    );
    // The NAT gave the registration's flow another port: the forwarded one is kept, and
    // the registration is not sent again.
    let seen = String::from_utf8(resp(&reg, 200, "OK").header("Expires", "600").build())
        .unwrap()
        .replace(";rport=5060", ";rport=40123;received=198.51.100.7");
    s.take_sent();
    s.receive(PEER, seen.into_bytes());
    assert!(s.sent.is_empty(), "{:?}", s.methods());
    assert!(s.events.contains(&Event::Registration {
        trunk: "pbx".into(),
        state: Registration::Registered { expires: 600 }
    }));
    s.invite();
    assert_eq!(
        s.last("INVITE").header("Contact").unwrap(),
        "<sip:callverify@198.51.100.7:5060>"
    );
}

#[test]
fn an_unspecified_advertised_address_or_port_is_refused() {
    for bad in ["0.0.0.0:5060", "198.51.100.7:0"] {
        let cfg = UaConfig {
            listen: vec![Listener {
                advertise: Some(bad.parse().unwrap()),
                ..Listener::new(Transport::Udp, LOCAL.parse().unwrap())
            }],
            user_agent: "t".into(),
            timers: Timers::default(),
            ring_timeout: Duration::from_secs(45),
        };
        let err = UserAgent::new(cfg, vec![trunk("pbx", PEER)]).unwrap_err();
        assert_eq!(
            err,
            sip::UaError::UnspecifiedAdvertised(bad.parse().unwrap())
        );
    }
}
