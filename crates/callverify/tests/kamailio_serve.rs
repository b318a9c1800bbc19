//! `callverify serve` with Kamailio as its trunk, configured as an operator configures a
//! registrar and proxy: `register = true`, a username and the password in an environment
//! variable, over TCP. It registers (its gauge and its log say so, and Kamailio saved its
//! Contact), a challenge through the API to a baresip registered to Kamailio is approved,
//! a number nobody registered fails with 404 in the call log, and the password is never
//! logged.

use std::path::Path;
use std::time::Instant;

use callverify_e2e::{
    BOUND, Baresip, BaresipRegistrar, BaresipSecurity, KEY_AT_MS, Kamailio, Served, User, V4,
    call_log, create_api_key_with_env, decided, free_port, free_rtp_pair, http, keys_wav,
    metrics_holding, scratch,
};
use dtmf::Digit;
use sip::Transport;

const GATEWAY: User<'static> = User {
    name: "callverify",
    password: "served-trunk-secret-9x",
};

const PHONE: User<'static> = User {
    name: "+819012345678",
    password: "served-phone-secret-4m",
};

const PASSWORD_ENV: &str = "CALLVERIFY_TRUNK_KAMAILIO_PASSWORD";

/// The gateway's configuration in `dir`: Kamailio at `kamailio` its one trunk over TCP,
/// registering as [`GATEWAY`].
fn write_config(dir: &Path, kamailio: std::net::SocketAddr, api: &str) -> std::path::PathBuf {
    let rtp = free_rtp_pair(V4);
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let sip = free_port(V4);
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\", \"tcp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"kamailio\"\naddress = \"{kamailio}\"\ntransport = \"tcp\"\n\
         from_user = \"{user}\"\nusername = \"{user}\"\npassword_env = \"{PASSWORD_ENV}\"\n\
         register = true\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
         [call]\nprompts = \"{prompts}\"\nfirst_key_timeout_s = 5\ncall_timeout_s = 60\n\n\
         [store]\nurl = \"sqlite://{db}\"\n\n\
         [api]\nlisten = \"{api}\"\n\n\
         [policy]\nallowed_countries = [\"JP\"]\n",
        user = GATEWAY.name,
        rtp1 = rtp + 1,
        db = dir.join("cv.db").display(),
    );
    let path = dir.join("callverify.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A challenge to `number` through the API, polled (long polls, bounded) until decided: its
/// id and state.
fn challenge(api: &str, key: &str, number: &str) -> (String, String) {
    let (status, body) = http(
        api,
        "POST",
        "/v1/challenges",
        key,
        &format!(r#"{{"phone_number":"{number}"}}"#),
    );
    assert_eq!(status, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    let token = v["poll_token"].as_str().unwrap().to_string();
    let state = decided(api, &id, &token, Instant::now());
    (id, state)
}

#[test]
fn serve_registers_to_kamailio_and_calls_through_it() {
    let kamailio = Kamailio::start("serve", GATEWAY, PHONE);
    let dir = scratch("serve-through-kamailio");
    let wav = keys_wav(
        "serve-through-kamailio-wav",
        &[Digit::Pound],
        KEY_AT_MS,
        KEY_AT_MS + 16_000.0,
    );
    let registrar = BaresipRegistrar {
        addr: kamailio.addr,
        transport: Transport::Tcp,
        user: PHONE.name,
        password: PHONE.password,
    };
    let phone = Baresip::start_registered(
        "serve-through-kamailio",
        &wav,
        &registrar,
        BaresipSecurity::default(),
        2 * BOUND,
    );
    kamailio.wait_for(&format!("registered {}", PHONE.name));

    let api = format!("127.0.0.1:{}", free_port(V4));
    let path = write_config(&dir, kamailio.addr, &api);
    let bin = Path::new(env!("CARGO_BIN_EXE_callverify"));
    let env = [(PASSWORD_ENV, GATEWAY.password)];
    let key = create_api_key_with_env(bin, &path, "idp", "service", &env);
    let operator = create_api_key_with_env(bin, &path, "ops", "operator", &env);
    let served = Served::start_with_env(
        bin,
        &path,
        &api,
        "0123456789abcdef0123456789abcdef-test",
        &[],
        &env,
        &dir.join("serve.log"),
    );

    // Registered: the gauge, and Kamailio saved a Contact that names TCP.
    let registered = "callverify_trunk_registered{trunk=\"kamailio\"} 1";
    let (ok, metrics) = metrics_holding(&api, registered);
    assert!(ok, "{registered} not in:\n{metrics}\n{}", kamailio.log());
    let line = kamailio.wait_for(&format!("registered {}", GATEWAY.name));
    assert!(line.contains(";transport=tcp>"), "{line}");

    let (_, state) = challenge(&api, &key, PHONE.name);
    assert_eq!(state, "approved", "{}\n{}", kamailio.log(), phone.log());
    // The call ends after the closing prompt (BYE along the route), freeing its RTP pair
    // (the one the configuration has).
    kamailio.wait_for("in-dialog BYE");
    let (ended, _) = metrics_holding(&api, "callverify_active_calls 0");
    assert!(ended, "the call did not end");
    let (nobody, state) = challenge(&api, &key, "+819087654321");
    assert_eq!(state, "failed");
    let calls = call_log(&api, &operator);
    let call = calls
        .iter()
        .find(|c| c["challenge_id"] == nobody.as_str())
        .expect("its call in the log");
    assert_eq!(call["sip_status"], 404, "{call}");
    assert_eq!(call["trunk"], "kamailio", "{call}");

    drop(served);
    let logs = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(logs.contains("trunk registered"), "{logs}");
    assert!(!logs.contains(GATEWAY.password), "the password in the logs");
    assert!(!logs.contains(PHONE.name), "a whole number in the logs");
}
