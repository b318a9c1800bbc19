//! The trunks: OPTIONS keep-alive marking them up and down, REGISTER with digest, the
//! address the registrar sees, and refresh.

mod common;

use common::*;

#[test]
fn options_keepalive_marks_trunks_up_and_down() {
    let mut pbx = trunk("pbx", PEER);
    pbx.options_interval = Some(Duration::from_secs(30));
    let mut s = Sim::new(vec![pbx, trunk("backup", BACKUP)]);
    s.ua.start(s.now);
    s.drain();
    let opt = s.last("OPTIONS");
    s.receive(PEER, resp(&opt, 200, "OK").build());
    assert!(s.events.contains(&Event::Trunk {
        trunk: "pbx".into(),
        up: true
    }));
    // From now on the PBX does not answer: down at Timer F of the next probe (30 + 32 s).
    s.run_until(Duration::from_secs(61));
    assert!(!s.events.contains(&Event::Trunk {
        trunk: "pbx".into(),
        up: false
    }));
    s.run_until(Duration::from_secs(62));
    assert!(s.events.contains(&Event::Trunk {
        trunk: "pbx".into(),
        up: false
    }));
    s.take_sent();
    s.invite();
    assert_eq!(s.sent[0].1, BACKUP.parse::<SocketAddr>().unwrap());
}

#[test]
fn register_authenticates_learns_its_public_address_and_refreshes() {
    let mut pbx = trunk("pbx", PEER);
    pbx.register = true;
    let mut s = Sim::new(vec![pbx]);
    s.ua.start(s.now);
    s.drain();
    let r1 = s.last("REGISTER");
    assert_eq!(
        r1.header("Contact").unwrap(),
        "<sip:callverify@127.0.0.1:5070>"
    );
    s.receive(PEER, challenge(&r1, 401, "r1"));
    let r2 = s.last("REGISTER");
    assert_eq!((r2.cseq, r2.call_id.clone()), (2, r1.call_id.clone()));
    assert!(
        r2.header("Authorization")
            .unwrap()
            .contains("uri=\"sip:127.0.0.1:5060\"")
    );
    // The registrar saw us at another address (a NAT): register that one.
    let natted = String::from_utf8(resp(&r2, 200, "OK").header("Expires", "600").build())
        .unwrap()
        .replace(";rport=5060", ";rport=40123;received=203.0.113.7");
    s.receive(PEER, natted.into_bytes());
    let r3 = s.last("REGISTER");
    assert_eq!(
        r3.header("Contact").unwrap(),
        "<sip:callverify@203.0.113.7:40123>"
    );
    s.receive(
        PEER,
        resp(&r3, 200, "OK")
            .header("Contact", "<sip:callverify@203.0.113.7:40123>;expires=120")
            .build(),
    );
    assert!(s.events.contains(&Event::Registration {
        trunk: "pbx".into(),
        state: Registration::Registered { expires: 120 }
    }));
    s.take_sent();
    s.run_until(Duration::from_millis(59_900));
    assert!(s.sent.is_empty());
    s.run_until(Duration::from_millis(60_100));
    assert_eq!(
        s.methods(),
        vec!["REGISTER"],
        "refreshed at half the expiry"
    );
    // Calls now carry the learned Contact.
    s.take_sent();
    s.invite();
    assert_eq!(
        s.last("INVITE").header("Contact").unwrap(),
        "<sip:callverify@203.0.113.7:40123>"
    );
}
