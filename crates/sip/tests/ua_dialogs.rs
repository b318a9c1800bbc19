//! Inside a call's dialog: the callee's BYE and re-INVITE, SRTP keys, requests for unknown
//! dialogs, garbage, and forged responses and requests that must change nothing.

mod common;

use common::*;

#[test]
fn a_bye_from_the_callee_ends_the_call_and_retransmissions_get_the_same_200() {
    let (mut s, inv) = answered();
    let bye = callee_request(&inv, "BYE", 1, "z9hG4bKbye1").build();
    s.receive(PEER, bye.clone());
    assert_eq!(s.methods(), vec!["200"]);
    assert_eq!(s.ended(), Some(EndReason::RemoteHangup));
    s.receive(PEER, bye);
    assert_eq!(s.methods(), vec!["200", "200"]);
    assert_eq!(
        s.call_events()
            .iter()
            .filter(|e| matches!(e, CallEvent::Ended(_)))
            .count(),
        1
    );
}

#[test]
fn a_reinvite_keeps_the_media_and_a_bad_one_gets_488() {
    let (mut s, inv) = answered();
    let same = callee_request(&inv, "INVITE", 2, "z9hG4bKre1")
        .header("Contact", "<sip:callee@127.0.0.1:5060>")
        .body("application/sdp", ANSWER)
        .build();
    s.receive(PEER, same);
    let (_, to, ok) = s.sent.last().unwrap().clone();
    assert_eq!((ok.status(), to), (Some(200), PEER.parse().unwrap()));
    let body = String::from_utf8_lossy(ok.body()).to_string();
    assert!(body.contains("m=audio 40000 RTP/AVP 8 96"), "{body}");
    assert!(
        body.contains("o=callverify 1 2 "),
        "version goes up: {body}"
    );
    assert!(
        !s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::MediaChanged { .. }))
    );
    // Until its ACK comes, the 200 is retransmitted.
    s.take_sent();
    s.run_until(Duration::from_millis(600));
    assert_eq!(s.methods(), vec!["200"]);
    let ack = callee_request(&inv, "ACK", 2, "z9hG4bKre1ack").build();
    s.receive(PEER, ack);
    s.take_sent();
    s.run_until(Duration::from_secs(10));
    assert!(s.sent.is_empty());

    let g729 = ANSWER
        .replace("RTP/AVP 8 96", "RTP/AVP 18")
        .replace("a=rtpmap:8 PCMA/8000\r\n", "");
    let bad = callee_request(&inv, "INVITE", 3, "z9hG4bKre2")
        .body("application/sdp", g729)
        .build();
    s.receive(PEER, bad);
    assert_eq!(s.methods(), vec!["488"]);
    assert!(s.ended().is_none(), "the call goes on");
}

#[test]
fn srtp_keys_go_only_where_the_trunk_says_and_a_reinvite_may_bring_a_new_one() {
    let key = |c: &str| format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{c}\r\n");
    let theirs = key("ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXowMTIzNDU2");
    let rekeyed = key("MDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3BxcnN0");
    // A plain trunk: no key in the INVITE, and a key in the answer is not taken.
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    let body = String::from_utf8_lossy(inv.body()).to_string();
    assert!(
        body.contains("RTP/AVP") && !body.contains("crypto"),
        "{body}"
    );
    s.receive(
        PEER,
        resp(&inv, 200, "OK")
            .header("Contact", "<sip:callee@127.0.0.1:5060>")
            .body("application/sdp", format!("{ANSWER}{theirs}"))
            .build(),
    );
    let Some(CallEvent::Answered { answer: a }) = s.call_events().into_iter().nth(1) else {
        panic!("{:?}", s.call_events())
    };
    assert_eq!(a.sdes, None);
    let mut s = Sim::new(vec![TrunkConfig {
        srtp: SrtpPolicy::Mandatory,
        ..trunk("pbx", PEER)
    }]);
    s.invite();
    let inv = s.last("INVITE");
    let body = String::from_utf8_lossy(inv.body()).to_string();
    assert!(body.contains("m=audio 40000 RTP/SAVP 0 8 101"), "{body}");
    assert!(
        body.contains(&key("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH")),
        "{body}"
    );
    let answer = ANSWER.replace("RTP/AVP", "RTP/SAVP") + &theirs;
    s.receive(
        PEER,
        resp(&inv, 200, "OK")
            .header("Contact", "<sip:callee@127.0.0.1:5060>")
            .body("application/sdp", answer.clone())
            .build(),
    );
    let Some(CallEvent::Answered { answer: a }) = s.call_events().into_iter().nth(1) else {
        panic!("{:?}", s.call_events())
    };
    assert_eq!(&a.sdes.expect("their key").master[..3], b"def");
    // The callee re-offers with a new key: it is reported; our answer keeps our key.
    let reoffer = answer.replace(&theirs, &rekeyed);
    s.take_sent();
    s.receive(
        PEER,
        callee_request(&inv, "INVITE", 2, "z9hG4bKre1")
            .header("Contact", "<sip:callee@127.0.0.1:5060>")
            .body("application/sdp", reoffer)
            .build(),
    );
    let (_, _, ok) = s.sent.last().unwrap().clone();
    assert_eq!(ok.status(), Some(200));
    let body = String::from_utf8_lossy(ok.body()).to_string();
    assert!(
        body.contains(&key("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH")),
        "{body}"
    );
    let Some(CallEvent::MediaChanged { answer: a }) = s.call_events().into_iter().last() else {
        panic!("{:?}", s.call_events())
    };
    assert_eq!(&a.sdes.expect("their new key").master[..3], b"012");
    // A re-offer without SRTP is refused: the call stays SRTP.
    let plain = callee_request(&inv, "INVITE", 3, "z9hG4bKre2")
        .body("application/sdp", ANSWER)
        .build();
    s.take_sent();
    s.receive(PEER, plain);
    assert_eq!(s.methods(), vec!["488"]);
}

#[test]
fn requests_for_unknown_dialogs_get_481_and_new_calls_403() {
    let (mut s, inv) = answered();
    let mut other = callee_request(&inv, "BYE", 1, "z9hG4bKx").build();
    other = String::from_utf8(other)
        .unwrap()
        .replace(&inv.call_id, "not-a-call")
        .into_bytes();
    s.receive(PEER, other);
    assert_eq!(s.methods(), vec!["481"]);
    s.take_sent();
    let incoming = Builder::request(&rsip::Method::Invite, "sip:callverify@127.0.0.1:5070")
        .header("Via", "SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKin")
        .header("From", "<sip:x@127.0.0.1>;tag=a")
        .header("To", "<sip:callverify@127.0.0.1>")
        .header("Call-ID", "in-1")
        .header("CSeq", "1 INVITE")
        .build();
    s.receive("127.0.0.1:5999", incoming);
    assert_eq!(s.methods(), vec!["403"]);
    assert_eq!(s.sent[0].1, "127.0.0.1:5999".parse::<SocketAddr>().unwrap());
    assert!(s.ended().is_none());
}

#[test]
fn garbage_is_discarded_without_harm() {
    let (mut s, _) = answered();
    for junk in [
        &b""[..],
        b"\x00\xff",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"INVITE x SIP/2.0\r\nVia: x\r\n\r\n",
    ] {
        s.receive(PEER, junk.to_vec());
    }
    assert!(s.sent.is_empty());
    assert_eq!(
        s.events
            .iter()
            .filter(|e| matches!(e, Event::Discarded { .. }))
            .count(),
        4
    );
}

/// A response that names the INVITE's branch, Call-ID, tags and CSeq (as one seen on the
/// wire would) but comes from another port of the trunk's host, over another transport, or
/// differs in any of those, is dropped: nothing is ACKed and the call is not answered.
#[test]
fn a_forged_answer_is_dropped_unless_it_comes_from_the_trunk_and_matches() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(PEER, resp(&inv, 180, "Ringing").build());
    s.take_sent();
    let ok = String::from_utf8(ok_with_answer(&inv)).unwrap();
    let other_port = "127.0.0.1:5999";
    s.receive(other_port, ok.clone().into_bytes());
    let forged = [
        ok.replace(&inv.call_id, "another-call-id"),
        ok.replace(inv.from_tag.as_deref().unwrap(), "another-tag"),
        ok.replace("CSeq: 1 INVITE", "CSeq: 2 INVITE"),
        ok.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"),
        ok.replace(inv.via.branch.as_deref().unwrap(), "z9hG4bKguessed"),
    ];
    for f in &forged {
        assert_ne!(f, &ok);
        s.receive(PEER, f.clone().into_bytes());
    }
    // Over TCP from the trunk's own address and port: not the transport the INVITE took.
    s.ua.handle_receive(
        s.now,
        Transport::Tcp,
        LOCAL.parse().unwrap(),
        PEER.parse().unwrap(),
        ok.as_bytes(),
    );
    s.drain();
    assert!(s.sent.is_empty(), "{:?}", s.methods());
    assert!(
        !s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. }))
    );
    let discarded = s
        .events
        .iter()
        .filter(|e| matches!(e, Event::Discarded { .. }))
        .count();
    assert_eq!(discarded, forged.len() + 2, "{:?}", s.events);
    // The real answer still answers.
    s.receive(PEER, ok.into_bytes());
    assert_eq!(s.methods(), vec!["ACK"]);
    assert!(
        s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. }))
    );
}

/// `responses_from = "host"`: another port of the trunk's host may answer; another host may
/// not.
#[test]
fn a_trunk_may_answer_from_another_port_of_its_host_when_configured() {
    let mut s = Sim::new(vec![TrunkConfig {
        responses_from: sip::ResponsesFrom::Host,
        ..trunk("pbx", PEER)
    }]);
    s.invite();
    let inv = s.last("INVITE");
    s.take_sent();
    s.receive("127.0.0.2:5060", ok_with_answer(&inv));
    assert!(s.sent.is_empty(), "{:?}", s.methods());
    s.receive("127.0.0.1:5999", ok_with_answer(&inv));
    assert_eq!(s.methods(), vec!["ACK"]);
}

/// In the dialog, a re-INVITE that moves the media (or a BYE) is taken only from the trunk
/// and with both tags of the dialog: from another port, or with a tag wrong, it gets 481
/// and changes nothing.
#[test]
fn in_dialog_requests_need_the_trunk_and_the_dialogs_tags() {
    let (mut s, inv) = answered();
    let elsewhere = ANSWER.replace("m=audio 6000", "m=audio 7000");
    let reinvite = |cseq: u32, branch: &str| {
        callee_request(&inv, "INVITE", cseq, branch)
            .header("Contact", "<sip:callee@127.0.0.1:5060>")
            .body("application/sdp", elsewhere.clone())
            .build()
    };
    s.receive("127.0.0.1:5999", reinvite(2, "z9hG4bKre-port"));
    let wrong_tag = String::from_utf8(reinvite(3, "z9hG4bKre-tag"))
        .unwrap()
        .replace(";tag=callee", ";tag=guessed");
    s.receive(PEER, wrong_tag.into_bytes());
    let no_tag = String::from_utf8(reinvite(4, "z9hG4bKre-notag"))
        .unwrap()
        .replace(";tag=callee", "");
    s.receive(PEER, no_tag.into_bytes());
    s.receive(
        "127.0.0.1:5999",
        callee_request(&inv, "BYE", 5, "z9hG4bKbye-port").build(),
    );
    assert_eq!(s.methods(), vec!["481", "481", "481", "481"]);
    assert!(s.ended().is_none(), "the call goes on");
    assert!(
        !s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::MediaChanged { .. })),
        "{:?}",
        s.call_events()
    );
    // From the trunk with the dialog's tags, the same re-INVITE moves the media.
    s.take_sent();
    s.receive(PEER, reinvite(6, "z9hG4bKre-ok"));
    assert_eq!(s.methods(), vec!["200"]);
    assert!(
        s.call_events().iter().any(
            |e| matches!(e, CallEvent::MediaChanged { answer } if answer.remote.port() == 7000)
        )
    );
    // An older CSeq than one taken is out of order.
    s.take_sent();
    s.receive(
        PEER,
        callee_request(&inv, "BYE", 5, "z9hG4bKbye-old").build(),
    );
    assert_eq!(s.methods(), vec!["500"]);
    assert!(s.ended().is_none());
}

/// One datagram whose Via branch has multi-byte text where the user agent's own branches
/// have their cookie stopped the whole SIP endpoint (a panic slicing inside a character).
#[test]
fn a_branch_with_multibyte_text_is_dropped_without_harm() {
    let (mut s, inv) = answered();
    let ok = String::from_utf8(ok_with_answer(&inv)).unwrap();
    for branch in [
        "z9hG4bKcvé1x00000000",
        "z9hG4bKcvc1é",
        "z9hG4bKcv",
        "z9hG4bKcvc",
        "z9hG4bKcvc18446744073709551616x0",
        "é",
    ] {
        let forged = ok.replace(inv.via.branch.as_deref().unwrap(), branch);
        s.receive(PEER, forged.into_bytes());
    }
    assert!(s.sent.is_empty(), "{:?}", s.methods());
    assert!(s.ended().is_none());
}

/// A copy of a request the user agent answered, sent from elsewhere, does not make it send
/// its answer to the trunk again (no reflection through the user agent).
#[test]
fn a_copied_request_from_elsewhere_gets_no_cached_answer() {
    let (mut s, inv) = answered();
    let bye = callee_request(&inv, "BYE", 2, "z9hG4bKbye-copied").build();
    s.receive(PEER, bye.clone());
    assert_eq!(s.methods(), vec!["200"]);
    s.take_sent();
    s.receive("127.0.0.1:5999", bye.clone());
    assert!(
        s.sent
            .iter()
            .all(|(_, to, _)| to.to_string() == "127.0.0.1:5999"),
        "{:?}",
        s.sent
    );
    // The trunk's own retransmission gets the same 200 again.
    s.take_sent();
    s.receive(PEER, bye);
    assert_eq!(s.methods(), vec!["200"]);
    assert_eq!(s.sent[0].1, PEER.parse::<SocketAddr>().unwrap());
}
