//! Verification calls for the tests: the recorded prompts, a script with short timeouts,
//! media on known ports, one call through an endpoint, and a call runner over a store (a
//! SQLite store of a test's own, and sign-in challenges to put in it).

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use engine::SipEndpoint;
use media::Codec;
use sip::Transport;

use crate::endpoint::{endpoint, trunk};
use crate::net::free_rtp_pair;
use crate::{BOUND, V4, scratch};

/// The recorded prompts of `lang` from `prompts/` (loaded once per test binary: the
/// prompts share their samples).
pub fn prompts(lang: media::Language) -> engine::Prompts {
    static LOADED: std::sync::Mutex<Vec<(media::Language, engine::Prompts)>> =
        std::sync::Mutex::new(Vec::new());
    let mut loaded = LOADED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, p)) = loaded.iter().find(|(l, _)| *l == lang) {
        return p.clone();
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
    let lib = media::PromptLibrary::load(&dir, &[lang]).expect("the prompts load");
    let p = engine::Prompts::from_library(&lib, lang).expect("every prompt is there");
    loaded.push((lang, p.clone()));
    p
}

/// The script with short timeouts for tests: one play of the instructions, no key in 4 s
/// (or 3 s after a key) is no input, 25 s for the whole call.
pub fn script() -> engine::ScriptConfig {
    engine::ScriptConfig {
        repeats: 1,
        first_key_timeout: Duration::from_secs(4),
        digit_timeout: Duration::from_secs(3),
        call_timeout: Duration::from_secs(25),
        ..engine::ScriptConfig::default()
    }
}

/// Media on `ip` with RTP on exactly the pair at `port` (so that a test knows where
/// callverify receives).
pub fn media_at(ip: IpAddr, port: u16) -> engine::MediaConfig {
    engine::MediaConfig {
        address: ip,
        public_address: None,
        ports: port..=port + 1,
        codecs: vec![Codec::Pcmu, Codec::Pcma],
        on_send: None,
    }
}

/// The number matching tests' code, shown on the sign-in page.
pub const SHOWN: [dtmf::Digit; 2] = [dtmf::Digit::D4, dtmf::Digit::D7];

/// The spoken-code tests' code.
pub const CODE: [dtmf::Digit; 6] = {
    use dtmf::Digit::{D1, D3, D4, D5, D9};
    [D3, D1, D4, D1, D5, D9]
};

/// Places a verification call through `ep` (bounded by [`BOUND`]) and returns its report.
pub async fn verify_call(
    ep: &SipEndpoint,
    media: &engine::MediaConfig,
    script: engine::ScriptConfig,
    lang: media::Language,
) -> engine::CallReport {
    verify_call_within(ep, media, script, lang, BOUND).await
}

/// As [`verify_call`], bounded by `bound`.
pub async fn verify_call_within(
    ep: &SipEndpoint,
    media: &engine::MediaConfig,
    script: engine::ScriptConfig,
    lang: media::Language,
    bound: Duration,
) -> engine::CallReport {
    let confirming =
        verify_call_confirming(ep, media, script, lang, engine::Confirmation::Pound, bound);
    confirming.await.0
}

/// A verification call through `ep` that is confirmed as `confirmation` says (bounded by
/// `bound`): its report, and what it reported as it went (the prompts it started, the keys,
/// [`engine::Report::CodeSpoken`]), in order.
pub async fn verify_call_confirming(
    ep: &SipEndpoint,
    media: &engine::MediaConfig,
    script: engine::ScriptConfig,
    lang: media::Language,
    confirmation: engine::Confirmation,
    bound: Duration,
) -> (engine::CallReport, Vec<engine::Report>) {
    let number = store::PhoneNumber::parse("+81901234567").expect("an E.164 number");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let call = engine::verify(
        ep,
        media,
        script,
        prompts(lang),
        confirmation,
        &number,
        Some(tx),
        std::future::pending(),
    );
    let report = tokio::time::timeout(bound, call)
        .await
        .expect("the call ends within the bound")
        .expect("the call is placed")
        .report;
    let mut reports = Vec::new();
    while let Ok(r) = rx.try_recv() {
        reports.push(r);
    }
    (report, reports)
}

/// How many times `kind` started playing, from a call's reports.
pub fn times_played(reports: &[engine::Report], kind: media::PromptKind) -> usize {
    reports
        .iter()
        .filter(|r| matches!(r, engine::Report::Prompt(k) if *k == kind))
        .count()
}

/// A call runner over `store` whose one trunk is the UDP callee at `callee`, with the test
/// script and the Japanese prompts.
pub async fn runner_through(store: store::Store, callee: SocketAddr) -> engine::Runner {
    let ep = endpoint(V4, BOUND, vec![trunk("sipp", Transport::Udp, callee)]).await;
    engine::Runner::new(
        store,
        std::sync::Arc::new(ep),
        media_at(V4, free_rtp_pair(V4)),
        script(),
        std::collections::HashMap::from([(media::Language::Ja, prompts(media::Language::Ja))]),
    )
}

/// A SQLite store of its own in the scratch directory `name` (as `Store::open` opens it,
/// without the copy of challenges that `serve` adds).
pub async fn sqlite_store(name: &str) -> store::Store {
    let dir = scratch(name);
    store::Store::open(&format!("sqlite://{}", dir.join("cv.db").display()))
        .await
        .expect("a SQLite store in a scratch directory")
}

/// A sign-in challenge of API key `api_key_id` to call `number`, made at `now_ms` and
/// expiring 5 minutes later (Japanese prompts, no user, no idempotency key).
pub fn sign_in(api_key_id: &str, number: &str, now_ms: i64) -> store::NewChallenge {
    store::NewChallenge {
        api_key_id: api_key_id.into(),
        idempotency_key: None,
        request_hash: String::new(),
        user_id: None,
        phone: store::PhoneNumber::parse(number).expect("an E.164 number"),
        language: "ja".into(),
        purpose: store::Purpose::SignIn,
        callback_url: None,
        enrol: None,
        remember_device_ms: 0,
        fraud_block_ms: 86_400_000,
        confirm_primary: false,
        origin: store::Origin::Api,
        origin_ref: None,
        confirmation: Default::default(),
        now_ms,
        expires_at_ms: now_ms + 300_000,
    }
}
