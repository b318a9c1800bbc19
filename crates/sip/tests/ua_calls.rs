//! The user agent's calls, driven with a simulated clock against a scripted peer: the INVITE
//! and its retransmissions, answers, rejections, digest challenges, the ring timeout,
//! failover, early media, and the identifiers it makes.

mod common;

use common::*;

#[test]
fn answered_call_acks_end_to_end_and_hangs_up_with_bye() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    let h = s.invite();
    let inv = s.last("INVITE");
    assert_eq!(s.sent[0].1, PEER.parse::<SocketAddr>().unwrap());
    assert!(
        inv.via
            .value
            .starts_with("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK")
    );
    assert!(inv.via.rport);
    assert!(String::from_utf8_lossy(inv.body()).contains("m=audio 40000 RTP/AVP 0 8 101"));
    s.receive(PEER, resp(&inv, 100, "Trying").build());
    s.receive(PEER, resp(&inv, 180, "Ringing").build());
    s.receive(PEER, ok_with_answer(&inv));
    let ack = s.last("ACK");
    assert_ne!(
        ack.via.branch, inv.via.branch,
        "the ACK for a 2xx is a new transaction"
    );
    assert_eq!((ack.cseq, ack.to_tag.as_deref()), (1, Some("callee")));
    assert_eq!(
        ack.request_uri(),
        "sip:callee@127.0.0.1:5060",
        "ACK goes to the Contact"
    );
    let answered = s.call_events().into_iter().find_map(|e| match e {
        CallEvent::Answered { answer } => Some(answer),
        _ => None,
    });
    let answer = answered.expect("answered");
    assert_eq!(answer.codec, Codec::Pcma);
    assert_eq!(answer.telephone_event_pt, Some(96));
    assert_eq!(answer.remote, "127.0.0.1:6000".parse().unwrap());

    // Our ACK was lost: the callee retransmits its 200 and gets the same ACK again.
    s.take_sent();
    s.receive(PEER, ok_with_answer(&inv));
    assert_eq!(s.methods(), vec!["ACK"]);
    assert_eq!(s.last("ACK").via.branch, ack.via.branch);

    s.ua.hangup(s.now, h);
    s.drain();
    let bye = s.last("BYE");
    assert_eq!((bye.cseq, bye.to_tag.as_deref()), (2, Some("callee")));
    s.receive(PEER, resp(&bye, 200, "OK").build());
    assert_eq!(s.ended(), Some(EndReason::Hangup));
    assert_eq!(s.ua.active_calls(), 0);
    // Nothing is retransmitted after the end.
    s.take_sent();
    s.run_until(Duration::from_secs(120));
    assert!(s.sent.is_empty(), "{:?}", s.methods());
}

#[test]
fn a_lost_invite_is_retransmitted_on_timer_a() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    s.run_until(Duration::from_millis(3600));
    let times: Vec<u128> = s.sent.iter().map(|(t, _, _)| t.as_millis()).collect();
    assert_eq!(times, vec![0, 500, 1500, 3500]);
    let inv = s.last("INVITE");
    assert!(
        s.sent
            .iter()
            .all(|(_, _, m)| m.via.branch == inv.via.branch)
    );
    // The retransmission is answered; retransmissions stop.
    s.receive(PEER, resp(&inv, 180, "Ringing").build());
    s.take_sent();
    s.run_until(Duration::from_secs(40));
    assert!(s.sent.is_empty());
}

/// Each call's timers fire at its own deadlines, whatever the other calls do: the queue of
/// deadlines that replaced the scan of every call's timers, with calls placed 100 ms apart
/// and the second answered in between.
#[test]
fn many_calls_retransmit_each_on_its_own_timer_a() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    let mut branches = Vec::new();
    for i in 0..3u64 {
        s.run_until(Duration::from_millis(100 * i));
        s.invite();
        branches.push(s.last("INVITE").via.branch.clone());
    }
    s.run_until(Duration::from_millis(300));
    let second = s
        .sent
        .iter()
        .find(|(_, _, m)| m.via.branch == branches[1])
        .map(|(_, _, m)| m.clone())
        .unwrap();
    s.receive(PEER, resp(&second, 180, "Ringing").build());
    s.run_until(Duration::from_millis(3800));
    let times = |b: &Option<String>| -> Vec<u128> {
        s.sent
            .iter()
            .filter(|(_, _, m)| m.method().is_some() && &m.via.branch == b)
            .map(|(t, _, _)| t.as_millis())
            .collect()
    };
    assert_eq!(times(&branches[0]), vec![0, 500, 1500, 3500]);
    assert_eq!(
        times(&branches[1]),
        vec![100],
        "answered before its Timer A"
    );
    assert_eq!(times(&branches[2]), vec![200, 700, 1700, 3700]);
}

#[test]
fn no_answer_at_all_ends_at_timer_b_and_marks_the_trunk_down() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    s.run_until(Duration::from_secs(40));
    assert_eq!(
        s.methods().len(),
        7,
        "INVITE at 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5 s"
    );
    assert_eq!(s.ended(), Some(EndReason::Timeout));
    assert!(s.events.contains(&Event::Trunk {
        trunk: "pbx".into(),
        up: false
    }));
}

#[test]
fn a_dead_trunk_fails_over_to_the_next() {
    let mut s = Sim::new(vec![trunk("pbx", PEER), trunk("backup", BACKUP)]);
    s.invite();
    s.run_until(Duration::from_secs(33));
    let (_, to, inv) = s.sent.last().unwrap().clone();
    assert_eq!(to, BACKUP.parse::<SocketAddr>().unwrap());
    assert_eq!(
        s.call_events()[..2],
        [
            CallEvent::Sent {
                trunk: "pbx".into()
            },
            CallEvent::Sent {
                trunk: "backup".into()
            }
        ]
    );
    s.receive(BACKUP, ok_with_answer(&inv));
    assert!(matches!(
        s.call_events().last(),
        Some(CallEvent::Answered { .. })
    ));
    // The next call skips the trunk marked down.
    s.take_sent();
    s.invite();
    assert_eq!(s.sent[0].1, BACKUP.parse::<SocketAddr>().unwrap());
}

#[test]
fn busy_and_decline_are_acked_hop_by_hop() {
    for (code, reason) in [(486, "Busy Here"), (603, "Decline"), (404, "Not Found")] {
        let mut s = Sim::new(vec![trunk("pbx", PEER)]);
        s.invite();
        let inv = s.last("INVITE");
        s.receive(PEER, resp(&inv, 100, "Trying").build());
        s.receive(PEER, resp(&inv, code, reason).build());
        let ack = s.last("ACK");
        assert_eq!(
            ack.via.branch, inv.via.branch,
            "non-2xx ACK is in the transaction"
        );
        assert_eq!(ack.to_tag.as_deref(), Some("callee"));
        assert_eq!(
            s.ended(),
            Some(EndReason::Rejected {
                status: code,
                reason: reason.into()
            })
        );
        // A retransmitted final response is ACKed again, and nothing else happens.
        s.take_sent();
        s.receive(PEER, resp(&inv, code, reason).build());
        assert_eq!(s.methods(), vec!["ACK"]);
    }
}

#[test]
fn a_challenge_is_answered_once_and_a_refused_password_fails() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(PEER, challenge(&inv, 407, "n1"));
    let ack = s.last("ACK");
    assert_eq!(ack.via.branch, inv.via.branch);
    let inv2 = s.last("INVITE");
    assert_eq!((inv2.cseq, inv2.call_id.clone()), (2, inv.call_id.clone()));
    assert_ne!(inv2.via.branch, inv.via.branch);
    let auth = inv2.header("Proxy-Authorization").unwrap();
    assert!(auth.contains("username=\"callverify\"") && auth.contains("nc=00000001"));
    assert!(!auth.contains("s3cret"));
    // The same challenge again: the password was refused. No third INVITE.
    s.receive(PEER, challenge(&inv2, 407, "n2"));
    assert_eq!(s.ended(), Some(EndReason::AuthFailed { status: 407 }));
    assert_eq!(s.methods(), vec!["INVITE", "ACK", "INVITE", "ACK"]);
    s.run_until(Duration::from_secs(60));
    assert_eq!(s.methods().iter().filter(|m| *m == "INVITE").count(), 2);
}

#[test]
fn a_stale_nonce_is_answered_again() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    s.receive(PEER, challenge(&s.last("INVITE"), 401, "n1"));
    let inv2 = s.last("INVITE");
    let stale = resp(&inv2, 401, "Unauthorized")
        .header(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n2\", stale=true",
        )
        .build();
    s.receive(PEER, stale);
    let inv3 = s.last("INVITE");
    assert_eq!(inv3.cseq, 3);
    assert!(
        inv3.header("Authorization")
            .unwrap()
            .contains("nonce=\"n2\"")
    );
    s.receive(PEER, ok_with_answer(&inv3));
    assert!(matches!(
        s.call_events().last(),
        Some(CallEvent::Answered { .. })
    ));
}

#[test]
fn the_ring_timeout_cancels_and_acks_the_487() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(PEER, resp(&inv, 180, "Ringing").build());
    s.take_sent();
    s.run_until(Duration::from_secs(45));
    let cancel = s.last("CANCEL");
    assert_eq!(cancel.via.branch, inv.via.branch);
    assert_eq!((cancel.cseq, cancel.to_tag.clone()), (1, None));
    s.receive(PEER, resp(&cancel, 200, "OK").build());
    s.receive(PEER, resp(&inv, 487, "Request Terminated").build());
    assert_eq!(s.methods(), vec!["CANCEL", "ACK"]);
    assert_eq!(s.ended(), Some(EndReason::NoAnswer));
}

#[test]
fn a_hangup_before_any_provisional_waits_for_one_to_cancel() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    let h = s.invite();
    s.ua.hangup(s.now, h);
    s.drain();
    assert_eq!(
        s.methods(),
        vec!["INVITE"],
        "no CANCEL before a provisional"
    );
    let inv = s.last("INVITE");
    s.receive(PEER, resp(&inv, 100, "Trying").build());
    assert_eq!(s.last("CANCEL").via.branch, inv.via.branch);
    // The callee answered anyway: ACK then BYE, and the call ends as cancelled.
    s.receive(PEER, ok_with_answer(&inv));
    let bye = s.last("BYE");
    s.receive(PEER, resp(&bye, 200, "OK").build());
    assert_eq!(s.ended(), Some(EndReason::Canceled));
    assert!(
        !s.call_events()
            .iter()
            .any(|e| matches!(e, CallEvent::Answered { .. }))
    );
}

#[test]
fn early_media_is_not_an_answer() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    s.receive(
        PEER,
        resp(&inv, 183, "Session Progress")
            .body("application/sdp", ANSWER)
            .build(),
    );
    let ev = s.call_events();
    let CallEvent::Provisional {
        status: 183,
        early_media: Some(early),
    } = &ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(early.codec, Codec::Pcma);
    assert!(!ev.iter().any(|e| matches!(e, CallEvent::Answered { .. })));
    assert!(!s.methods().contains(&"ACK".to_string()));
}

#[test]
fn a_missing_or_bad_answer_is_acked_then_hung_up() {
    for body in [
        "",
        "v=0\r\nm=audio 6000 RTP/AVP 18\r\nc=IN IP4 127.0.0.1\r\n",
    ] {
        let mut s = Sim::new(vec![trunk("pbx", PEER)]);
        s.invite();
        let inv = s.last("INVITE");
        let mut b = resp(&inv, 200, "OK").header("Contact", "<sip:callee@127.0.0.1:5060>");
        if !body.is_empty() {
            b = b.body("application/sdp", body);
        }
        s.receive(PEER, b.build());
        assert_eq!(s.methods(), vec!["INVITE", "ACK", "BYE"]);
        let bye = s.last("BYE");
        s.receive(PEER, resp(&bye, 200, "OK").build());
        let Some(EndReason::BadAnswer(why)) = s.ended() else {
            panic!("{:?}", s.ended())
        };
        assert!(
            why.contains("no SDP answer") || why.contains("no offered codec"),
            "{why}"
        );
    }
}

#[test]
fn a_bad_target_is_refused() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    assert!(s.ua.invite(s.now, "+8190@evil>", offer()).is_err());
    assert!(s.ua.invite(s.now, "", offer()).is_err());
}

#[test]
fn sha256_is_preferred_when_offered_with_md5() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    s.invite();
    let inv = s.last("INVITE");
    let both = resp(&inv, 401, "Unauthorized")
        .header(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n\", qop=\"auth\", algorithm=MD5",
        )
        .header(
            "WWW-Authenticate",
            "Digest realm=\"pbx\", nonce=\"n\", qop=\"auth\", algorithm=SHA-256",
        )
        .build();
    s.receive(PEER, both);
    let auth = s.last("INVITE").header("Authorization").unwrap();
    assert!(auth.contains("algorithm=SHA-256"), "{auth}");
    let response = auth
        .split("response=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(response.len(), 64, "a SHA-256 digest: {auth}");
}

/// Call-IDs, tags and branches are fresh random values (at least 64 bits each) that say
/// nothing of the call or of one another.
#[test]
fn identifiers_are_random_and_carry_nothing() {
    let mut s = Sim::new(vec![trunk("pbx", PEER)]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        s.invite();
        let inv = s.last("INVITE");
        let branch = inv.via.branch.clone().unwrap();
        let hex = branch.strip_prefix("z9hG4bK").expect("the RFC 3261 cookie");
        let tag = inv.from_tag.clone().unwrap();
        for (what, v, min) in [
            ("branch", hex, 16),
            ("tag", &tag, 16),
            ("Call-ID", &inv.call_id, 16),
        ] {
            assert!(
                v.len() >= min && v.bytes().all(|b| b.is_ascii_hexdigit()),
                "{what} {v:?} is not {min}+ hex digits"
            );
            assert!(seen.insert(v.to_string()), "{what} {v:?} seen before");
        }
    }
}
