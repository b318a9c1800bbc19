//! `callverify serve` behind a real NAT: the gateway in a private network namespace, a NAT
//! namespace with nftables (the private network masqueraded out of 198.51.100.1, SIP and the
//! RTP range forwarded in) and baresip in a public one. With its public addresses advertised
//! (`[sip] advertise`, `[media] public_address`) a challenge's call is approved; without
//! them the phone's audio and its BYE go to the gateway's private address, the NAT drops
//! them, and the challenge ends `no_input`, as it would behind a real NAT. Needs root, `ip`
//! and `nft` (and fails without them).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use callverify_e2e::{
    BOUND, Baresip, KEY_AT_MS, NAT_PUBLIC, NatCounts, NatNet, PHONE, create_api_key, keys_wav,
    scratch,
};
use dtmf::Digit;

const SIP_PORT: u16 = 5060;
const RTP_FIRST: u16 = 30000;
const RTP_LAST: u16 = 30099;
/// Where the API listens, inside the gateway's namespace.
const API: &str = "http://127.0.0.1:8080";
const SECRET: &str = "0123456789abcdef0123456789abcdef-nat";
/// Seconds from the answer to the first key before `no_input`.
const FIRST_KEY_TIMEOUT_S: u64 = 12;

/// `callverify serve`, killed on drop.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one challenge through the NAT came to.
struct Run {
    /// The challenge's final state.
    state: String,
    /// The NAT's counters after the call.
    counts: NatCounts,
    /// baresip's log (its SIP trace).
    phone: String,
    /// The gateway's log.
    gateway: String,
    /// The gateway's private address.
    private: std::net::Ipv4Addr,
    /// The call's row in the call log, once it ended.
    call: serde_json::Value,
}

/// The gateway's configuration: its listener on the private network, the phone its trunk,
/// and, with `advertise`, the NAT's public address for SIP and media.
fn write_config(dir: &Path, net: &NatNet, advertise: bool) -> PathBuf {
    let gw = net.gateway;
    let listener = format!("udp:{gw}:{SIP_PORT}");
    let (sip_nat, media_nat) = if advertise {
        (
            format!("advertise = {{ \"{listener}\" = \"{NAT_PUBLIC}:{SIP_PORT}\" }}\n"),
            format!("public_address = \"{NAT_PUBLIC}\"\n"),
        )
    } else {
        (String::new(), String::new())
    };
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let config = format!(
        "[sip]\nlisten = [\"{listener}\"]\n{sip_nat}\n\
         [sip.timers]\nring_timeout_s = 20\n\n\
         [[trunk]]\nname = \"phone\"\naddress = \"{PHONE}:5060\"\n\n\
         [media]\naddress = \"{gw}\"\nrtp_ports = \"{RTP_FIRST}-{RTP_LAST}\"\n{media_nat}\n\
         [call]\nprompts = \"{prompts}\"\nfirst_key_timeout_s = {FIRST_KEY_TIMEOUT_S}\ncall_timeout_s = 40\n\n\
         [store]\nurl = \"sqlite://{db}\"\n\n\
         [api]\nlisten = \"127.0.0.1:8080\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\n",
        db = dir.join("cv.db").display(),
    );
    let path = dir.join("callverify.toml");
    std::fs::write(&path, config).expect("write the configuration");
    path
}

/// The namespaces, baresip in the public one (its WAV: '#' while the instructions play,
/// then it hangs up), the gateway in the private one, and one sign-in challenge to the
/// phone's number made through the API and followed to its end.
fn challenge_through_the_nat(tag: &str, n: u8, advertise: bool) -> Run {
    let net = NatNet::new(tag, n, SIP_PORT, RTP_FIRST..=RTP_LAST);
    let dir = scratch(&format!("nat-{tag}"));
    let wav = keys_wav(
        &format!("nat-{tag}-wav"),
        &[Digit::Pound],
        KEY_AT_MS,
        KEY_AT_MS + 1500.0,
    );
    let phone = Baresip::start_in(
        &net.public,
        PHONE.into(),
        &format!("nat-{tag}"),
        &wav,
        BOUND * 2,
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_callverify"));
    let config = write_config(&dir, &net, advertise);
    let key = create_api_key(bin, &config, "idp", "service");
    let operator = create_api_key(bin, &config, "ops", "operator");
    let log = std::fs::File::create(dir.join("serve.log")).expect("the serve log");
    let serving = Serving(
        net.exec(&net.private)
            .arg(bin)
            .args(["serve", "--config"])
            .arg(&config)
            .env("CALLVERIFY_TOKEN_SECRET", SECRET)
            .env("CALLVERIFY_WEBHOOK_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("callverify serve in the private namespace"),
    );
    net.wait_http(&format!("{API}/readyz"), BOUND);

    let (status, body) = net.http(
        &format!("{API}/v1/challenges"),
        "POST",
        &key,
        r#"{"phone_number":"+819012345678"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("the challenge");
    let id = v["id"].as_str().expect("its id").to_string();
    let token = v["poll_token"]
        .as_str()
        .expect("its poll token")
        .to_string();
    let started = Instant::now();
    let mut state = String::new();
    while started.elapsed() < BOUND * 2 {
        let (_, body) = net.http(
            &format!("{API}/v1/challenges/{id}?wait=5"),
            "GET",
            &token,
            "",
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        state = v["state"].as_str().unwrap_or_default().to_string();
        if !["", "queued", "calling", "ringing", "answered"].contains(&state.as_str()) {
            break;
        }
    }
    // The phone hangs up when its WAV ends (1.5 s after the '#'): its BYE, and the answer
    // to it if one comes, are counted too.
    let hung_up = Instant::now();
    while !phone.log().contains("BYE sip:callverify@") && hung_up.elapsed() < BOUND {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let counts = net.counts();
    let ended = Instant::now();
    let call = loop {
        let (_, body) = net.http(&format!("{API}/v1/calls"), "GET", &operator, "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let call = v["calls"][0].clone();
        if !call["ended_at"].is_null() || ended.elapsed() > BOUND {
            break call;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(serving);
    Run {
        state,
        counts,
        phone: phone.log(),
        gateway: std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default(),
        private: net.gateway,
        call,
    }
}

#[test]
fn behind_a_nat_with_its_public_addresses_advertised_the_call_is_approved() {
    let r = challenge_through_the_nat("ok", 61, true);
    eprintln!(
        "with advertised addresses: {}, NAT {:?}, call log {}",
        r.state, r.counts, r.call
    );
    let why = format!(
        "{:?}\nphone:\n{}\ngateway:\n{}",
        r.counts, r.phone, r.gateway
    );
    assert_eq!(r.state, "approved", "{why}");
    assert_eq!(r.call["outcome"], "approved", "{}", r.call);
    assert!(r.call["packets_received"].as_i64() > Some(50), "{}", r.call);
    // The phone was told the public addresses only, and its audio came in through them.
    assert!(r.phone.contains(&format!("c=IN IP4 {NAT_PUBLIC}")), "{why}");
    assert!(
        r.phone.contains(&format!(
            "Contact: <sip:callverify@{NAT_PUBLIC}:{SIP_PORT}>"
        )),
        "{why}"
    );
    assert!(!r.phone.contains(&r.private.to_string()), "{why}");
    assert!(r.counts.rtp_in > 50, "{why}");
    // Its BYE went to the advertised Contact, through the forwarded port, and was answered.
    let bye = r
        .phone
        .find(&format!("BYE sip:callverify@{NAT_PUBLIC}:{SIP_PORT}"))
        .unwrap_or_else(|| panic!("no BYE: {why}"));
    assert!(r.phone[bye..].contains("SIP/2.0 200 OK"), "{why}");
    // 180, 200 and the BYE.
    assert!(r.counts.sip_in >= 3, "{why}");
    assert_eq!((r.counts.sip_lost, r.counts.media_lost), (0, 0), "{why}");
}

#[test]
fn behind_a_nat_without_its_public_addresses_the_phones_audio_is_lost_and_the_call_ends_no_input() {
    let r = challenge_through_the_nat("lost", 62, false);
    eprintln!(
        "without: {}, NAT {:?}, call log {}",
        r.state, r.counts, r.call
    );
    let why = format!(
        "{:?}\nphone:\n{}\ngateway:\n{}",
        r.counts, r.phone, r.gateway
    );
    // The gateway's requests reach the phone (masqueraded) and the phone's responses come
    // back (to the Via's received address and rport), so the call is answered; but its SDP
    // and Contact name the private address.
    assert!(
        r.phone.contains(&format!("c=IN IP4 {}", r.private)),
        "{why}"
    );
    assert_eq!(r.state, "no_input", "{why}");
    // The call log says so: answered, and not one RTP packet received.
    assert_eq!(r.call["outcome"], "no_input", "{}", r.call);
    assert!(!r.call["time_to_answer_ms"].is_null(), "{}", r.call);
    assert_eq!(r.call["packets_received"], 0, "{}", r.call);
    // The phone's RTP (with its '#') and its BYE went to the private address: the NAT
    // dropped them; nothing came in through the RTP ports.
    assert_eq!(r.counts.rtp_in, 0, "{why}");
    assert!(r.counts.media_lost > 50, "{why}");
    assert!(
        r.phone
            .contains(&format!("BYE sip:callverify@{}:{SIP_PORT}", r.private)),
        "{why}"
    );
    assert!(r.counts.sip_lost >= 1, "{why}");
}
