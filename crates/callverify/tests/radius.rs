//! callverify's RADIUS front end, end to end, with peers the project did not write:
//! `radclient` (freeradius-utils) as the NAS, FreeRADIUS with a users file as the upstream
//! that checks the password, baresip as the user's phone, `callverify serve` between them.
//!
//! - The right password and '#' on the phone: Access-Accept with the upstream's Class,
//!   Framed-IP-Address and vendor attribute, a Message-Authenticator first; radclient sent
//!   its request again during the call and the phone was called once; the call log says it
//!   came through RADIUS and from which NAS.
//! - A wrong password: the upstream's Access-Reject passed on, no call.
//! - A phone that rings and is not answered: Access-Reject.
//! - A spoken code: an Access-Challenge asks for it; a wrong code costs an attempt (another
//!   Access-Challenge), the code the phone heard (same State) is accepted.
//! - Number matching: an Access-Challenge shows the two digits at once; the phone keys them
//!   and '#'; the NAS's next request (with the State) is accepted.
//! - Forgeries: a request signed with another secret, one without Message-Authenticator,
//!   one from an unknown address and one replayed from another port get no answer at all
//!   and are counted by reason.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use callverify_e2e::{
    BOUND, Baresip, FreeRadius, KEY_AT_MS, RadReply, Served, V4, call_log, create_api_key_with_env,
    free_media_ports, free_port, http, keys_wav, metrics_holding, pcm_wav, pound_wav, prompts,
    radclient, scratch, spoken_code_heard,
};
use dtmf::Digit;
use radius::sign::{self, Secret};
use radius::{Attribute, attr};

const SECRET: &str = "0123456789abcdef0123456789abcdef-radius";
const NAS_SECRET: &str = "nas-shared-secret-0123456789";
const UPSTREAM_SECRET: &str = "upstream-shared-secret-9876543210";
const NAS_ENV: &str = "CALLVERIFY_RADIUS_VPN_SECRET";
const UPSTREAM_ENV: &str = "CALLVERIFY_RADIUS_UPSTREAM_SECRET";
const PASSWORD: &str = "correct horse battery";
const PHONE: &str = "+819012345678";

/// The upstream's users: alice (by the name the NAS sends) with her password and what her
/// Access-Accept carries.
const USERS: &str = "alice@example.edu\tCleartext-Password := \"correct horse battery\"\n\
                     \tClass = \"vpn-staff\", Framed-IP-Address = 10.8.0.7, \
                     Cisco-AVPair = \"shell:priv-lvl=15\"\n";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_callverify"))
}

fn env() -> [(&'static str, &'static str); 4] {
    [
        (NAS_ENV, NAS_SECRET),
        (UPSTREAM_ENV, UPSTREAM_SECRET),
        ("CALLVERIFY_TOKEN_SECRET", SECRET),
        ("CALLVERIFY_WEBHOOK_SECRET", SECRET),
    ]
}

/// `callverify serve` with `[radius]`: radclient's address (127.0.0.1) its one NAS,
/// `upstream` the first factor, `trunk` the phone; alice's phone imported.
struct Gateway {
    served: Served,
    api: String,
    radius: SocketAddr,
    operator: String,
    dir: PathBuf,
}

impl Gateway {
    fn start(name: &str, trunk: SocketAddr, upstream: SocketAddr, confirmation: &str) -> Gateway {
        let dir = scratch(name);
        let api = format!("127.0.0.1:{}", free_port(V4));
        let radius = SocketAddr::from(([127, 0, 0, 1], free_port(V4)));
        let rtp = free_media_ports(V4);
        let config = format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
             [sip.timers]\nring_timeout_s = 6\n\n\
             [[trunk]]\nname = \"phone\"\naddress = \"{trunk}\"\n\n\
             [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
             [call]\nprompts = \"{prompts}\"\nfirst_key_timeout_s = 8\ncall_timeout_s = 40\n\
             confirmation = \"{confirmation}\"\n\n\
             [store]\nurl = \"sqlite://{db}\"\n\n\
             [api]\nlisten = \"{api}\"\n\n\
             [policy]\nallowed_countries = [\"JP\"]\n\n\
             [radius]\nlisten = \"{radius}\"\n\n\
             [[radius.client]]\nname = \"vpn\"\naddress = \"127.0.0.1\"\n\
             secret_env = \"{NAS_ENV}\"\n\n\
             [radius.upstream]\naddress = \"{upstream}\"\nsecret_env = \"{UPSTREAM_ENV}\"\n\
             timeout_ms = 1000\nretries = 1\n",
            sip = free_port(V4),
            rtp1 = rtp + 3,
            prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts"),
            db = dir.join("cv.db").display(),
        );
        let config_path = dir.join("callverify.toml");
        std::fs::write(&config_path, config).unwrap();
        let csv = dir.join("phones.csv");
        std::fs::write(
            &csv,
            format!("user_id,number,role\nalice,{PHONE},primary\n"),
        )
        .unwrap();
        let out = Command::new(bin())
            .envs(env())
            .arg("import-phones")
            .arg("--config")
            .arg(&config_path)
            .arg(&csv)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import-phones: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let operator = create_api_key_with_env(bin(), &config_path, "ops", "operator", &env());
        let served = Served::start_with_env(
            bin(),
            &config_path,
            &api,
            SECRET,
            &[],
            &env(),
            &dir.join("serve.log"),
        );
        let gw = Gateway {
            served,
            api,
            radius,
            operator,
            dir,
        };
        let started = Instant::now();
        while !gw.log().contains("the RADIUS server is listening") {
            assert!(started.elapsed() < BOUND, "no RADIUS server: {}", gw.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        gw
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// radclient as the NAS: `attributes`, a Message-Authenticator with them.
    fn ask(&self, attributes: &[&str], timeout_s: u32, tries: u32) -> RadReply {
        let mut all = attributes.to_vec();
        all.push("Message-Authenticator = 0x00");
        radclient(self.radius, NAS_SECRET, &all, timeout_s, tries, &self.dir)
    }

    fn calls(&self) -> Vec<serde_json::Value> {
        call_log(&self.api, &self.operator)
    }

    /// The call log once every call in it has ended (its end is written as the call hangs
    /// up, after the verdict). Bounded by [`BOUND`].
    fn ended_calls(&self) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let calls = self.calls();
            if calls.iter().all(|c| !c["outcome"].is_null()) {
                return calls;
            }
            assert!(started.elapsed() < BOUND, "a call did not end: {calls:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of the metric `line` (a name with its labels) on /metrics, once it holds
    /// `line value` (bounded).
    fn metric_reaches(&self, line: &str, value: u64) {
        let (held, metrics) = metrics_holding(&self.api, &format!("{line} {value}\n"));
        assert!(held, "{line} never reached {value}: {metrics}");
    }

    /// The gateway's log holds no secret, no password and no full phone number.
    fn assert_log_is_clean(&self) {
        let log = self.log();
        for secret in [NAS_SECRET, UPSTREAM_SECRET, PASSWORD, PHONE, SECRET] {
            assert!(!log.contains(secret), "{secret:?} in the log: {log}");
        }
    }
}

fn user(password: &str) -> Vec<String> {
    vec![
        "User-Name = \"alice@example.edu\"".to_string(),
        format!("User-Password = \"{password}\""),
        "NAS-Identifier = \"vpn-gw-1\"".to_string(),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The answer radclient got, its attributes those the upstream gave alice.
fn assert_accepted_with_upstream_attributes(reply: &RadReply) {
    assert_eq!(
        reply.code.as_deref(),
        Some("Access-Accept"),
        "{}",
        reply.output
    );
    assert!(
        reply.attributes[0].starts_with("Message-Authenticator = 0x"),
        "first: {reply:?}"
    );
    assert_eq!(
        reply.get("Class"),
        Some("0x76706e2d7374616666"),
        "{reply:?}"
    );
    assert_eq!(
        reply.get("Framed-IP-Address"),
        Some("10.8.0.7"),
        "{reply:?}"
    );
    assert_eq!(
        reply.get("Cisco-AVPair"),
        Some("\"shell:priv-lvl=15\""),
        "{reply:?}"
    );
}

#[test]
fn the_right_password_and_pound_are_accepted_once_with_the_upstreams_attributes() {
    let upstream = FreeRadius::start("radius-accept-upstream", UPSTREAM_SECRET, USERS);
    let phone = Baresip::start_saying_for(
        "radius-accept-phone",
        &pound_wav("radius-accept-wav"),
        BOUND * 2,
    );
    let gw = Gateway::start("radius-accept", phone.addr, upstream.addr, "pound");

    // A wrong password: the upstream's Reject, no call.
    let reply = gw.ask(&refs(&user("wrong horse")), 5, 1);
    assert_eq!(
        reply.code.as_deref(),
        Some("Access-Reject"),
        "{}",
        reply.output
    );
    assert!(gw.calls().is_empty(), "no call for a wrong password");
    gw.metric_reaches(r#"callverify_radius_upstream_total{answer="reject"}"#, 1);

    // The right one: radclient sends again every 2 s while the phone rings and is answered
    // ('#' after 4.5 s): one call, one Accept.
    let started = Instant::now();
    let reply = gw.ask(&refs(&user(PASSWORD)), 2, 11);
    assert_accepted_with_upstream_attributes(&reply);
    assert!(
        reply.sent >= 2,
        "radclient retransmitted during the call ({:?} after {:?}): {}",
        reply.sent,
        started.elapsed(),
        reply.output
    );
    let calls = gw.ended_calls();
    assert_eq!(
        calls.len(),
        1,
        "one call for every retransmission: {calls:?}"
    );
    let call = &calls[0];
    assert_eq!(call["outcome"], "approved", "{call}");
    assert_eq!(call["origin"], "radius", "{call}");
    assert_eq!(call["origin_ref"], "vpn 127.0.0.1", "{call}");
    // alice@example.edu is the user alice (the realm stripped).
    let (status, body) = http(&gw.api, "GET", "/v1/calls?user_id=alice", &gw.operator, "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(call["id"].as_str().unwrap()), "{body}");
    gw.metric_reaches(r#"callverify_radius_requests_total{answer="accept"}"#, 1);
    gw.metric_reaches(r#"callverify_radius_requests_total{answer="reject"}"#, 1);
    let (_, metrics) = metrics_holding(&gw.api, "callverify_radius_retransmissions_total");
    let retransmissions: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("callverify_radius_retransmissions_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        retransmissions >= u64::try_from(reply.sent - 1).unwrap(),
        "{retransmissions} retransmissions counted, {} sent: {metrics}",
        reply.sent
    );
    gw.assert_log_is_clean();
    drop(gw.served);
}

#[test]
fn a_phone_that_is_not_answered_gets_an_access_reject() {
    let upstream = FreeRadius::start("radius-noanswer-upstream", UPSTREAM_SECRET, USERS);
    let quiet = pcm_wav("radius-noanswer-wav", &[0i16; 8000]);
    let phone = Baresip::start_answering_on_command("radius-noanswer-phone", &quiet, BOUND * 2);
    let gw = Gateway::start("radius-noanswer", phone.addr, upstream.addr, "pound");
    let reply = gw.ask(&refs(&user(PASSWORD)), 30, 1);
    assert_eq!(
        reply.code.as_deref(),
        Some("Access-Reject"),
        "{}",
        reply.output
    );
    let message = reply.get("Reply-Message").unwrap_or_default();
    assert!(message.contains("no_answer"), "{reply:?}");
    let calls = gw.ended_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["outcome"], "no_answer", "{}", calls[0]);
    assert!(
        reply.get("Class").is_none(),
        "nothing of the upstream's Accept: {reply:?}"
    );
}

/// The State of an Access-Challenge as radclient prints it (`0x…`).
fn state_of(reply: &RadReply) -> String {
    assert_eq!(
        reply.code.as_deref(),
        Some("Access-Challenge"),
        "{}",
        reply.output
    );
    reply.get("State").expect("a State").to_string()
}

#[test]
fn a_spoken_code_is_asked_for_by_an_access_challenge_and_checked_with_its_state() {
    let upstream = FreeRadius::start("radius-spoken-upstream", UPSTREAM_SECRET, USERS);
    // A person who listens and says nothing.
    let quiet = pcm_wav("radius-spoken-wav", &vec![0i16; 8000 * 40]);
    let phone = Baresip::start_saying_for("radius-spoken-phone", &quiet, BOUND * 2);
    let gw = Gateway::start("radius-spoken", phone.addr, upstream.addr, "spoken_code");
    let reply = gw.ask(&refs(&user(PASSWORD)), 30, 1);
    let state = state_of(&reply);
    assert!(
        reply
            .get("Reply-Message")
            .is_some_and(|m| m.contains("6-digit code")),
        "{reply:?}"
    );
    // The code as the person heard it.
    let started = Instant::now();
    let code = loop {
        if let Some(code) = spoken_code_heard(&phone.heard(), &prompts(media::Language::En)) {
            break code;
        }
        assert!(started.elapsed() < BOUND, "the phone heard no code");
        std::thread::sleep(Duration::from_millis(200));
    };
    let typed: String = code.iter().map(|d| d.as_char()).collect();
    let wrong: String = typed
        .chars()
        .map(|c| {
            if c == '9' {
                '0'
            } else {
                char::from(c as u8 + 1)
            }
        })
        .collect();
    let mut next = user(&wrong);
    next.push(format!("State = {state}"));
    let reply = gw.ask(&refs(&next), 10, 1);
    let again = state_of(&reply);
    assert_ne!(again, state, "a new State for the next try");
    assert!(
        reply
            .get("Reply-Message")
            .is_some_and(|m| m.contains("4 attempts are left")),
        "{reply:?}"
    );
    // The old State is spent.
    let mut stale = user(&typed);
    stale.push(format!("State = {state}"));
    let reply = gw.ask(&refs(&stale), 10, 1);
    assert_eq!(
        reply.code.as_deref(),
        Some("Access-Reject"),
        "{}",
        reply.output
    );
    // The sign-in still waits under the new State.
    let mut right = user(&typed);
    right.push(format!("State = {again}"));
    let reply = gw.ask(&refs(&right), 10, 1);
    assert_accepted_with_upstream_attributes(&reply);
    let calls = gw.ended_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["outcome"], "code_spoken", "{}", calls[0]);
    assert_eq!(calls[0]["code_matched"], true, "{}", calls[0]);
    gw.assert_log_is_clean();
}

#[test]
fn number_matching_shows_the_digits_in_an_access_challenge_and_accepts_the_next_request() {
    let upstream = FreeRadius::start("radius-keypad-upstream", UPSTREAM_SECRET, USERS);
    let dir = scratch("radius-keypad-wav");
    let wav = dir.join("keys.wav");
    let phone = Baresip::start_answering_on_command("radius-keypad-phone", &wav, BOUND * 2);
    let gw = Gateway::start("radius-keypad", phone.addr, upstream.addr, "keypad_code");
    let reply = gw.ask(&refs(&user(PASSWORD)), 30, 1);
    let state = state_of(&reply);
    let message = reply.get("Reply-Message").expect("the digits").to_string();
    let digits: Vec<Digit> = message
        .trim_matches('"')
        .split("enter ")
        .nth(1)
        .expect("the code in the message")
        .chars()
        .take_while(char::is_ascii_digit)
        .map(|c| Digit::from_char(c).expect("a digit"))
        .collect();
    assert_eq!(digits.len(), 2, "{message}");
    // The person answers and keys the digits shown, then '#'.
    let mut keys = digits.clone();
    keys.push(Digit::Pound);
    let made = keys_wav("radius-keypad-keys", &keys, KEY_AT_MS, 12_000.0);
    std::fs::copy(made, &wav).unwrap();
    phone.answer();
    let mut next = user(PASSWORD);
    next.push(format!("State = {state}"));
    let reply = gw.ask(&refs(&next), 30, 1);
    assert_accepted_with_upstream_attributes(&reply);
    let calls = gw.ended_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["outcome"], "approved", "{}", calls[0]);
    assert_eq!(calls[0]["code_matched"], true, "{}", calls[0]);
}

/// alice's request with `password` as a NAS of our own makes it, signed with `secret`.
fn request(secret: &str, password: &str) -> Vec<u8> {
    let mut authenticator = [0u8; 16];
    getrandom::fill(&mut authenticator).unwrap();
    let secret = Secret::new(secret);
    let hidden = sign::hide_password(password.as_bytes(), &secret, &authenticator).unwrap();
    sign::request(
        7,
        authenticator,
        vec![
            Attribute::new(attr::USER_NAME, "alice@example.edu"),
            Attribute::new(attr::USER_PASSWORD, hidden),
        ],
        &secret,
    )
    .unwrap()
}

/// A socket on `at` that waits two seconds for an answer.
fn nas_socket(at: &str) -> UdpSocket {
    let socket = UdpSocket::bind(at).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
}

/// `packet` sent from `socket`: the answer, if one came within two seconds.
fn exchange(socket: &UdpSocket, to: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    socket.send_to(packet, to).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// Whether `packet`, sent from `from`, was answered within two seconds.
fn answered(from: &str, to: SocketAddr, packet: &[u8]) -> bool {
    exchange(&nas_socket(from), to, packet).is_some()
}

#[test]
fn forged_and_unknown_requests_get_no_answer_and_are_counted() {
    let upstream = FreeRadius::start("radius-forged-upstream", UPSTREAM_SECRET, USERS);
    // No call is made: the trunk is an address nobody listens on.
    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port(V4)));
    let gw = Gateway::start("radius-forged", nobody, upstream.addr, "pound");

    // Another secret: its Message-Authenticator does not check. (A wrong password in
    // these: were one heard, the upstream's Reject would come back at once.)
    let alice = user("wrong horse");
    let mut attrs = refs(&alice);
    attrs.push("Message-Authenticator = 0x00");
    let reply = radclient(
        gw.radius,
        "not-the-nas-secret-at-all",
        &attrs,
        1,
        1,
        &gw.dir,
    );
    assert_eq!(reply.code, None, "{}", reply.output);
    gw.metric_reaches(
        r#"callverify_radius_dropped_total{reason="bad_message_authenticator"}"#,
        1,
    );

    // No Message-Authenticator (what a BlastRADIUS forgery needs the server to accept).
    let reply = radclient(
        gw.radius,
        NAS_SECRET,
        &refs(&user("wrong horse")),
        2,
        1,
        &gw.dir,
    );
    assert_eq!(reply.code, None, "{}", reply.output);
    gw.metric_reaches(
        r#"callverify_radius_dropped_total{reason="no_message_authenticator"}"#,
        1,
    );

    // From an address no [[radius.client]] holds, rightly signed with the NAS's secret.
    let wrong = request(NAS_SECRET, "wrong horse");
    assert!(!answered("127.0.0.3:0", gw.radius, &wrong));
    gw.metric_reaches(
        r#"callverify_radius_dropped_total{reason="unknown_client"}"#,
        1,
    );

    // The same request from the NAS's address is answered (the upstream's Reject of a
    // wrong password, signed), so the silence above was the drops'; sent again from the
    // same port (a late retransmission), the same answer, octet for octet.
    let nas = nas_socket("127.0.0.1:0");
    let answer = exchange(&nas, gw.radius, &wrong).expect("an answer");
    let secret = Secret::new(NAS_SECRET);
    let checked =
        sign::check_response(&answer, 7, &wrong[4..20].try_into().unwrap(), &secret, true)
            .expect("a signed answer");
    assert_eq!(checked.code, radius::Code::AccessReject);
    assert_eq!(
        checked.attributes[0].kind,
        attr::MESSAGE_AUTHENTICATOR,
        "first"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        exchange(&nas, gw.radius, &wrong),
        Some(answer),
        "the kept answer"
    );
    // Sent again from another port (a captured request replayed with a forged source):
    // not heard again.
    assert!(!answered("127.0.0.1:0", gw.radius, &wrong));
    gw.metric_reaches(r#"callverify_radius_dropped_total{reason="replayed"}"#, 1);

    // CHAP (radclient computes its CHAP-Password): refused in words, not dropped.
    let mut chap = vec!["User-Name = \"alice@example.edu\"", "CHAP-Password = \"x\""];
    chap.push("Message-Authenticator = 0x00");
    let reply = radclient(gw.radius, NAS_SECRET, &chap, 5, 1, &gw.dir);
    assert_eq!(
        reply.code.as_deref(),
        Some("Access-Reject"),
        "{}",
        reply.output
    );
    assert!(
        reply
            .get("Reply-Message")
            .is_some_and(|m| m.contains("only PAP")),
        "{reply:?}"
    );
    assert!(gw.calls().is_empty());
    gw.assert_log_is_clean();
}
