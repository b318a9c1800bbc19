//! A real proxy as the trunk: Kamailio (started on loopback with `tests/kamailio/kamailio.cfg`)
//! as registrar and proxy with digest auth, over UDP and over TCP. The gateway registers to
//! it (401 answered), and a sign-in challenge calls baresip, registered to it as the
//! number's user, through it: the INVITE's 407 answered, the call forwarded, the ACK (with
//! the INVITE's credentials) and the BYE along the recorded route, approved by the '#'
//! baresip plays. A number nobody registered fails with Kamailio's 404; a wrong trunk
//! password fails with 407 after exactly one retry. With the phone on the other transport
//! (Kamailio records two routes), the phone's BYE comes back through Kamailio and is
//! answered; a call that rings past the ring timeout is cancelled through it (487).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use callverify_e2e::{
    BOUND, Baresip, BaresipRegistrar, BaresipSecurity, KEY_AT_MS, Kamailio, User, V4,
    endpoint_with, free_rtp_pair, keys_wav, media_at, next_ua_event, prompts, script, sign_in,
    sqlite_store, trunk,
};
use dtmf::Digit;
use engine::Runner;
use media::Language;
use sip::{Credentials, Event, Registration, Timers, Transport};
use store::{ChallengeState, Store};

/// The gateway's account at Kamailio.
const GATEWAY: User<'static> = User {
    name: "callverify",
    password: "trunk-secret-7q",
};

/// The phone's account: its number.
const PHONE: User<'static> = User {
    name: "+819012345678",
    password: "phone-secret-3k",
};

/// A number in Japan's plan that nobody registered.
const NOBODY: &str = "+819087654321";

/// The gateway: one trunk to Kamailio over `transport` that registers with `password`, a
/// runner on a SQLite store of its own (calls ring at most `ring`), and the SIP endpoint's
/// trunk events.
async fn gateway(
    name: &str,
    kamailio: &Kamailio,
    transport: Transport,
    password: &str,
    ring: Duration,
) -> (
    Runner,
    Store,
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    let mut t = trunk("kamailio", transport, kamailio.addr);
    t.register = true;
    t.credentials = Some(Credentials {
        username: GATEWAY.name.into(),
        password: password.into(),
    });
    let (ep, events) = endpoint_with(V4, ring, vec![t], Timers::default()).await;
    let local = ep.local_addr(transport, false).expect("a listener");
    let store = sqlite_store(name).await;
    let runner = Runner::new(
        store.clone(),
        Arc::new(ep),
        media_at(V4, free_rtp_pair(V4)),
        script(),
        HashMap::from([(Language::Ja, prompts(Language::Ja))]),
    );
    (runner, store, local, events)
}

/// A sign-in challenge to `number` run to its end: its state, and its call in the call log:
/// the SIP status it ended with and the detail of its last step.
async fn challenge(
    runner: &Runner,
    store: &Store,
    number: &str,
) -> (ChallengeState, Option<i64>, String) {
    let (c, _) = store
        .create_challenge(&sign_in("key_test", number, store::now_ms()))
        .await
        .unwrap();
    let state = tokio::time::timeout(BOUND, runner.run(&c.id))
        .await
        .expect("the challenge ends within the bound")
        .unwrap()
        .expect("the challenge was run");
    let (calls, _) = store
        .calls(&store::CallFilter::default(), 10, None)
        .await
        .unwrap();
    let call = calls
        .iter()
        .find(|call| call.challenge_id == c.id)
        .expect("its call in the log");
    let end = store.call(&call.id).await.unwrap().unwrap().end.unwrap();
    let last = end
        .steps
        .iter()
        .rfind(|s| s.kind == store::StepKind::End)
        .map(|s| s.detail.clone())
        .unwrap_or_default();
    (state, end.sip_status, last)
}

/// The lines of `lines` that start with `prefix`.
fn starting<'a>(lines: &'a [String], prefix: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l.starts_with(prefix))
        .map(String::as_str)
        .collect()
}

/// baresip registered to `kamailio` over `transport` as [`PHONE`], saying `wav` (or
/// letting calls ring, with `ringing`); returns once Kamailio registered it.
fn registered_phone(
    kamailio: &Kamailio,
    name: &str,
    wav: &std::path::Path,
    transport: Transport,
    ringing: bool,
) -> Baresip {
    let registrar = BaresipRegistrar {
        addr: kamailio.addr,
        transport,
        user: PHONE.name,
        password: PHONE.password,
    };
    let sec = BaresipSecurity {
        answer_on_command: ringing,
        ..BaresipSecurity::default()
    };
    let phone = Baresip::start_registered(name, wav, &registrar, sec, 2 * BOUND);
    kamailio.wait_for(&format!("registered {}", PHONE.name));
    phone
}

/// The other transport of the two.
fn other(transport: Transport) -> Transport {
    match transport {
        Transport::Udp => Transport::Tcp,
        _ => Transport::Udp,
    }
}

async fn through_kamailio(transport: Transport) {
    let name = format!("kamailio-{transport}");
    let kamailio = Kamailio::start(&name, GATEWAY, PHONE);
    // '#' while the instructions play, and a WAV long enough for the closing prompt: the
    // gateway hangs up, not the phone.
    let wav = keys_wav(
        &format!("{name}-wav"),
        &[Digit::Pound],
        KEY_AT_MS,
        KEY_AT_MS + 16_000.0,
    );
    let phone = registered_phone(&kamailio, &name, &wav, transport, false);

    // The gateway registers: challenged (401), then registered with its Contact, which
    // names the transport over TCP.
    let (runner, store, local, mut events) =
        gateway(&name, &kamailio, transport, GATEWAY.password, BOUND).await;
    match next_ua_event(&mut events).await {
        Event::Registration {
            state: Registration::Registered { expires },
            ..
        } => assert_eq!(expires, 600),
        other => panic!("{other:?}\n{}", kamailio.log()),
    }
    let param = match transport {
        Transport::Udp => "",
        _ => ";transport=tcp",
    };
    let registered = kamailio.wait_for(&format!("registered {}", GATEWAY.name));
    assert!(
        registered.contains(&format!("contact=<sip:callverify@{local}{param}>")),
        "{registered}"
    );
    let lines = kamailio.requests();
    assert_eq!(
        starting(&lines, "challenge 401 REGISTER").len(),
        2,
        "the phone's and the gateway's first REGISTER: {lines:#?}"
    );

    // A sign-in to the phone: 407 answered, forwarded to where the phone registered,
    // approved by its '#'; ACK and BYE along the route.
    let (state, _, detail) = challenge(&runner, &store, PHONE.name).await;
    assert_eq!(
        state,
        ChallengeState::Approved,
        "{detail}\n{}\n{}",
        kamailio.log(),
        phone.log()
    );
    let bye = kamailio.wait_for("in-dialog BYE");
    let lines = kamailio.requests();
    let proto = transport.to_string();
    let invites = starting(&lines, &format!("INVITE ruri=sip:{}@", PHONE.name));
    assert_eq!(invites.len(), 2, "{lines:#?}");
    assert!(
        invites
            .iter()
            .all(|l| l.contains(&format!("from={proto}:"))),
        "{invites:?}"
    );
    assert_eq!(
        starting(&lines, "challenge 407 INVITE").len(),
        1,
        "{lines:#?}"
    );
    let forwarded = starting(&lines, "forward INVITE to ");
    assert_eq!(forwarded.len(), 1, "{lines:#?}");
    let phone_at = format!("@{}", phone.addr);
    assert!(forwarded[0].contains(&phone_at), "{forwarded:?}");
    let acks = starting(&lines, "in-dialog ACK");
    assert_eq!(acks.len(), 1, "one ACK, for the 2xx: {lines:#?}");
    assert!(
        acks[0].ends_with("credentials=proxy"),
        "the ACK carries the INVITE's credentials: {}",
        acks[0]
    );
    for l in [acks[0], bye.as_str()] {
        assert!(
            l.contains("via=loose_route") && l.contains(&phone_at),
            "along the route to the phone: {l}"
        );
        assert!(l.contains(&format!("from={proto}:127.0.0.1:")), "{l}");
    }
    // The phone answered the BYE, back through Kamailio.
    kamailio.wait_for("reply 200 BYE");

    // A number nobody registered: Kamailio's 404.
    let (state, status, detail) = challenge(&runner, &store, NOBODY).await;
    assert_eq!(state, ChallengeState::Failed, "{detail}");
    assert_eq!(
        (status, detail.as_str()),
        (Some(404), "failed: 404 Not Found")
    );
    kamailio.wait_for(&format!("not registered {NOBODY}: 404"));
}

#[tokio::test]
async fn register_and_call_through_kamailio_over_udp() {
    through_kamailio(Transport::Udp).await;
}

#[tokio::test]
async fn register_and_call_through_kamailio_over_tcp() {
    through_kamailio(Transport::Tcp).await;
}

/// A wrong trunk password: the registration is refused (401 twice), and a call fails with
/// 407 after exactly one retry with credentials (Kamailio saw two INVITEs), over UDP and
/// over TCP.
#[tokio::test]
async fn a_wrong_trunk_password_fails_with_407_after_one_retry() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let name = format!("kamailio-wrong-{transport}");
        let kamailio = Kamailio::start(&name, GATEWAY, PHONE);
        let (runner, store, _, mut events) =
            gateway(&name, &kamailio, transport, "not-the-password", BOUND).await;
        match next_ua_event(&mut events).await {
            Event::Registration {
                state: Registration::Failed { status },
                ..
            } => assert_eq!(status, Some(401)),
            other => panic!("{other:?}\n{}", kamailio.log()),
        }
        let (state, status, detail) = challenge(&runner, &store, PHONE.name).await;
        assert_eq!(state, ChallengeState::Failed, "{detail}");
        assert_eq!(status, Some(407), "{detail}");
        // Give a (wrong) third INVITE the time to show up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lines = kamailio.requests();
        assert_eq!(
            starting(&lines, "INVITE ruri=").len(),
            2,
            "{transport}: {lines:#?}"
        );
        assert_eq!(
            starting(&lines, "challenge 407 INVITE").len(),
            2,
            "{lines:#?}"
        );
        assert_eq!(starting(&lines, "challenge 401 REGISTER").len(), 2);
        assert!(starting(&lines, "forward INVITE").is_empty(), "{lines:#?}");
    }
}

/// The phone on the other transport than the gateway's trunk (Kamailio records two routes,
/// one per side) hangs up after its '#': its BYE comes through Kamailio along the route to
/// the gateway's Contact, and the gateway's 200 goes back through it.
async fn the_phone_hangs_up_through_kamailio(transport: Transport) {
    let name = format!("kamailio-hangup-{transport}");
    let kamailio = Kamailio::start(&name, GATEWAY, PHONE);
    // The phone hangs up when its WAV ends, 1.5 s after its '#'.
    let wav = keys_wav(
        &format!("{name}-wav"),
        &[Digit::Pound],
        KEY_AT_MS,
        KEY_AT_MS + 1500.0,
    );
    let phone = registered_phone(&kamailio, &name, &wav, other(transport), false);
    let (runner, store, local, mut events) =
        gateway(&name, &kamailio, transport, GATEWAY.password, BOUND).await;
    assert!(matches!(
        next_ua_event(&mut events).await,
        Event::Registration {
            state: Registration::Registered { .. },
            ..
        }
    ));
    let (state, _, detail) = challenge(&runner, &store, PHONE.name).await;
    assert_eq!(
        state,
        ChallengeState::Approved,
        "{detail}\n{}\n{}",
        kamailio.log(),
        phone.log()
    );
    let bye = kamailio.wait_for("in-dialog BYE");
    let (proto, phone_proto) = (transport.to_string(), other(transport).to_string());
    assert!(
        bye.contains(&format!("ruri=sip:callverify@{local}"))
            && bye.contains("via=loose_route")
            && bye.contains(&format!("from={phone_proto}:")),
        "the phone's BYE, along the route to the gateway: {bye}"
    );
    let reply = kamailio.wait_for("reply 200 BYE");
    assert!(
        reply.contains(&format!("from={proto}:127.0.0.1:")),
        "{reply}"
    );
    // The ACK went along both recorded routes to the phone.
    let lines = kamailio.requests();
    let acks = starting(&lines, "in-dialog ACK");
    assert_eq!(acks.len(), 1, "{lines:#?}");
    assert!(
        acks[0].contains("via=loose_route") && acks[0].contains(&format!("@{}", phone.addr)),
        "{}",
        acks[0]
    );
}

#[tokio::test]
async fn the_phone_hangs_up_through_kamailio_over_udp() {
    the_phone_hangs_up_through_kamailio(Transport::Udp).await;
}

#[tokio::test]
async fn the_phone_hangs_up_through_kamailio_over_tcp() {
    the_phone_hangs_up_through_kamailio(Transport::Tcp).await;
}

/// A call that rings past the ring timeout (3 s) is cancelled through Kamailio, which
/// cancels the phone's leg: the phone's 487 comes back, and the challenge ends `no_answer`.
#[tokio::test]
async fn a_ringing_call_is_cancelled_through_kamailio() {
    for transport in [Transport::Udp, Transport::Tcp] {
        let name = format!("kamailio-cancel-{transport}");
        let kamailio = Kamailio::start(&name, GATEWAY, PHONE);
        let wav = keys_wav(&format!("{name}-wav"), &[], KEY_AT_MS, KEY_AT_MS);
        let phone = registered_phone(&kamailio, &name, &wav, transport, true);
        let (runner, store, _, mut events) = gateway(
            &name,
            &kamailio,
            transport,
            GATEWAY.password,
            Duration::from_secs(3),
        )
        .await;
        assert!(matches!(
            next_ua_event(&mut events).await,
            Event::Registration {
                state: Registration::Registered { .. },
                ..
            }
        ));
        let (state, _, detail) = challenge(&runner, &store, PHONE.name).await;
        assert_eq!(
            state,
            ChallengeState::NoAnswer,
            "{detail}\n{}\n{}",
            kamailio.log(),
            phone.log()
        );
        let cancel = kamailio.wait_for("CANCEL ruri=");
        assert!(
            cancel.contains(&format!("ruri=sip:{}@", PHONE.name))
                && cancel.contains(&format!("from={transport}:")),
            "{cancel}"
        );
        let reply = kamailio.wait_for("reply 487 INVITE");
        assert!(reply.contains(&format!("from={transport}:")), "{reply}");
        // The 487's ACK is hop by hop: Kamailio's transaction takes it.
        let lines = kamailio.requests();
        let acks = starting(&lines, "in-dialog ACK");
        assert_eq!(acks.len(), 1, "{lines:#?}");
        assert!(acks[0].contains("via=transaction"), "{}", acks[0]);
    }
}

/// The number registered from two phones: Kamailio forks the INVITE to both, and both may
/// answer before its CANCEL reaches the slower. Every 2xx that reaches the gateway is
/// ACKed along its own route, and an answer from a fork other than the one taken is ended
/// with a BYE; the challenge is approved by the '#' of the phone it took.
#[tokio::test]
async fn a_forked_call_acks_every_answer_and_ends_the_extra_one() {
    let name = "kamailio-fork";
    let kamailio = Kamailio::start(name, GATEWAY, PHONE);
    let wav = keys_wav(
        &format!("{name}-wav"),
        &[Digit::Pound],
        KEY_AT_MS,
        KEY_AT_MS + 16_000.0,
    );
    let first = registered_phone(&kamailio, &format!("{name}-1"), &wav, Transport::Udp, false);
    let second = {
        let registrar = BaresipRegistrar {
            addr: kamailio.addr,
            transport: Transport::Udp,
            user: PHONE.name,
            password: PHONE.password,
        };
        let phone = Baresip::start_registered(
            &format!("{name}-2"),
            &wav,
            &registrar,
            BaresipSecurity::default(),
            2 * BOUND,
        );
        let started = std::time::Instant::now();
        while starting(&kamailio.requests(), &format!("registered {}", PHONE.name)).len() < 2 {
            assert!(started.elapsed() < BOUND, "{}", kamailio.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        phone
    };
    let (runner, store, _, mut events) =
        gateway(name, &kamailio, Transport::Udp, GATEWAY.password, BOUND).await;
    assert!(matches!(
        next_ua_event(&mut events).await,
        Event::Registration {
            state: Registration::Registered { .. },
            ..
        }
    ));
    let (state, _, detail) = challenge(&runner, &store, PHONE.name).await;
    assert_eq!(
        state,
        ChallengeState::Approved,
        "{detail}\n{}\n{}\n{}",
        kamailio.log(),
        first.log(),
        second.log()
    );
    kamailio.wait_for("in-dialog BYE");
    // The BYEs' answers, and any retransmission of an answer left without its ACK (T1).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lines = kamailio.requests();
    // The phones by address: those that answered, and those the gateway's ACKs and BYEs
    // went to along the route.
    let answered: BTreeSet<&str> = starting(&lines, "reply 200 INVITE from=udp:")
        .into_iter()
        .filter_map(|l| l.rsplit(':').next())
        .collect();
    let along_route = |method: &str| -> BTreeSet<&str> {
        starting(&lines, &format!("in-dialog {method} "))
            .into_iter()
            .filter(|l| l.contains("via=loose_route"))
            .filter_map(|l| l.split_once("@127.0.0.1:"))
            .map(|(_, rest)| rest.split([' ', ';']).next().unwrap_or_default())
            .collect()
    };
    assert!(!answered.is_empty(), "{lines:#?}");
    assert_eq!(
        along_route("ACK"),
        answered,
        "an ACK for each answer: {lines:#?}"
    );
    assert_eq!(
        along_route("BYE"),
        answered,
        "a BYE for each answer: {lines:#?}"
    );
    // Each answer was ACKed: none retransmitted until Timer H.
    for phone in &answered {
        let sent = starting(
            &lines,
            &format!("reply 200 INVITE from=udp:127.0.0.1:{phone}"),
        );
        assert!(sent.len() <= 2, "{lines:#?}");
    }
}
