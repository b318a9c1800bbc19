//! The configuration's tests: the shipped files load, every mistake is told with its line,
//! and the tables become the crates' settings.

use std::time::Duration;

use super::*;

fn shipped() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../sip-config/callverify.toml"
    ))
    .unwrap()
}

fn env_with_password(name: &str) -> Option<String> {
    (name == "CALLVERIFY_TRUNK_LOCAL_PBX_PASSWORD").then(|| "s3cret".to_string())
}

#[test]
fn the_shipped_example_loads() {
    let c = Config::parse(&shipped(), "callverify.toml", env_with_password).unwrap();
    assert_eq!(c.sip.listen.get_ref().len(), 4);
    assert_eq!(c.sip.listen.get_ref()[2], "udp:[::1]:5070".parse().unwrap());
    assert_eq!(c.trunks.len(), 2);
    assert_eq!(c.trunks[1].transport, Transport::Tcp);
    assert_eq!(*c.sip.timers.t1_ms.get_ref(), 500);
}

#[test]
fn the_file_becomes_the_media_and_script_settings() {
    let c = Config::parse(&shipped(), "callverify.toml", env_with_password).unwrap();
    let m = c.media_settings();
    assert_eq!(m.address, std::net::IpAddr::from([127, 0, 0, 1]));
    assert_eq!(m.ports, 16384..=32767);
    assert_eq!(m.codecs, vec![media::Codec::Pcmu, media::Codec::Pcma]);
    let s = c.script_settings();
    assert_eq!(s.repeats, 3);
    assert_eq!(s.first_key_timeout, Duration::from_secs(40));
    assert_eq!(s.call_timeout, Duration::from_secs(120));
    assert_eq!(s.amd.max_greeting, Duration::from_millis(4000));
    assert_eq!(s.latching, media::rtp::Latching::Strict);
    assert_eq!(c.language(), media::Language::En);
}

#[test]
fn the_file_becomes_the_user_agent_settings_with_the_password_from_the_environment() {
    let c = Config::parse(&shipped(), "callverify.toml", env_with_password).unwrap();
    let (ua, trunks) = c.sip_settings(env_with_password);
    assert_eq!(ua.listen.len(), 4);
    assert_eq!(ua.timers.t1, Duration::from_millis(500));
    assert_eq!(ua.ring_timeout, Duration::from_secs(45));
    let creds = trunks[0].credentials.as_ref().unwrap();
    assert_eq!(
        (creds.username.as_str(), creds.password.as_str()),
        ("callverify", "s3cret")
    );
    assert!(
        !format!("{:?}", trunks[0]).contains("s3cret"),
        "Debug masks the password"
    );
    assert_eq!(trunks[0].domain, "127.0.0.1");
    assert_eq!(trunks[1].domain, "[::1]:5062", "no domain: the address");
    assert_eq!(trunks[1].options_interval, Some(Duration::from_secs(30)));
    sip::UserAgent::new(ua, trunks).expect("the user agent takes it");
}

/// The error for `text` with `line` of the shipped file replaced.
fn error_with(find: &str, replace: &str, env: impl Fn(&str) -> Option<String>) -> ConfigError {
    let text = shipped().replacen(find, replace, 1);
    assert_ne!(text, shipped(), "{find:?} not in the example");
    Config::parse(&text, "c.toml", env).unwrap_err()
}

fn line_of_text(find: &str) -> usize {
    shipped().lines().position(|l| l.contains(find)).unwrap() + 1
}

/// The mistakes `errors_name_the_line_and_the_reason` makes in the shipped file: the text
/// to replace, its replacement, words the error must hold, and the line of the error
/// after the replaced one.
const MISTAKES: &[(&str, &str, &str, usize)] = &[
    ("t1_ms = 500", "t1_ms = \"fast\"", "expected u64", 0),
    (
        "address = \"127.0.0.1:5060\"",
        "address = \"pbx.example:5060\"",
        "socket address",
        0,
    ),
    ("transport = \"udp\"", "transport = \"sctp\"", "udp", 0),
    (
        "\"tcp:127.0.0.1:5070\"",
        "\"sctp:127.0.0.1:5070\"",
        "unknown transport",
        0,
    ),
    (
        "\"tcp:127.0.0.1:5070\"",
        "\"tls:127.0.0.1:5070\"",
        "needs [sip.tls]",
        0,
    ),
    (
        "from_user = \"callverify\"",
        "from_user = \"callverify\"\nsrtp = \"mandatory\"",
        "srtp needs transport = \"tls\"",
        1,
    ),
    (
        "from_user = \"callverify\"",
        "from_user = \"callverify\"\ntls_ca_file = \"ca.pem\"",
        "tls_ca_file needs transport = \"tls\"",
        1,
    ),
    (
        "user_agent = \"callverify\"",
        "user_agent = \"callverify\"\ntls = { cert_file = \"/nonexistent/cert.pem\", key_file = \"k.pem\" }",
        "TLS: /nonexistent/cert.pem",
        1,
    ),
    (
        "codecs = [\"PCMU\", \"PCMA\"]",
        "codecs = [\"G729\"]",
        "PCMU",
        0,
    ),
    ("t2_ms = 4000", "t2_ms = 100", "at least t1_ms", 0),
    (
        "ring_timeout_s = 45",
        "ring_timeout_s = 45\nring_timout = 3",
        "unknown field",
        1,
    ),
    ("name = \"backup\"", "name = \"local-pbx\"", "used twice", 0),
    (
        "\"udp:127.0.0.1:5070\"",
        "\"udp:0.0.0.0:5070\"",
        "unspecified",
        0,
    ),
    (
        "rtp_ports = \"16384-32767\"",
        "rtp_ports = \"20000\"",
        "first-last",
        0,
    ),
    (
        "rtp_ports = \"16384-32767\"",
        "rtp_ports = \"80-90\"",
        ">= 1024",
        0,
    ),
    (
        "latching = \"strict\"",
        "latching = \"loose\"",
        "same-host",
        0,
    ),
    (
        "language = \"en\"",
        "language = \"fr\"",
        "expected en or ja",
        0,
    ),
    ("repeats = 3", "repeats = 0", "1 to 10", 0),
    (
        "first_key_timeout_s = 40",
        "first_key_timeout_s = 0",
        "above 0",
        0,
    ),
    (
        "call_timeout_s = 120",
        "call_timeout_s = 30",
        "longer than sip.timers.ring_timeout_s (45)",
        0,
    ),
    (
        "gap_ms = 600",
        "gap_ms = 5000",
        "shorter than amd.max_greeting_ms",
        0,
    ),
    (
        "allowed_countries = [\"JP\", \"US\", \"GB\"]",
        "allowed_countries = [\"JP\", \"*\"]",
        "\"*\" (every country) goes alone",
        0,
    ),
    (
        "allowed_countries = [\"JP\", \"US\", \"GB\"]",
        "allowed_countries = [\"Japan\"]",
        "not an ISO 3166 code",
        0,
    ),
    (
        "allowed_number_types = [\"mobile\", \"fixed_line\", \"fixed_line_or_mobile\"]",
        "allowed_number_types = [\"mobile\", \"premium\"]",
        "unknown type \"premium\", expected some of fixed_line, mobile",
        0,
    ),
    (
        "fraud_block_hours = 24",
        "fraud_block_hours = 0",
        "1 to 8760",
        0,
    ),
    (
        "per_country = { max = 200, window_s = 3600, overrides = { JP = 2000 } }",
        "per_country = { max = 200, window_s = 3600, overrides = { Japan = 2000 } }",
        "per_country.overrides: \"Japan\"",
        0,
    ),
    (
        "retention_days = 90",
        "retention_days = 0",
        "retention_days must be 1 to 3650",
        0,
    ),
    (
        "header_timeout_s = 10",
        "header_timeout_s = 0",
        "header_timeout_s must be 1 to 3600",
        0,
    ),
    (
        "request_timeout_s = 30",
        "request_timeout_s = 86400",
        "request_timeout_s must be 1 to 3600",
        0,
    ),
    (
        "max_connections = 4096",
        "max_connections = 0",
        "max_connections must be 1 to 1000000",
        0,
    ),
    (
        "max_streams_per_poll_token = 4",
        "max_streams_per_poll_token = 0",
        "at least 1",
        0,
    ),
    (
        "callback_allow = []",
        "callback_allow = [\"10.0.0.0/8\", \"intranet\"]",
        "callback_allow: \"intranet\" is not a network",
        0,
    ),
];

#[test]
fn errors_name_the_line_and_the_reason() {
    for &(find, replace, words, offset) in MISTAKES {
        let line = line_of_text(find) + offset;
        let e = error_with(find, replace, env_with_password);
        assert_eq!(e.line, Some(line), "{replace}: {e}");
        assert!(e.to_string().contains(words), "{replace}: {e}");
        assert!(
            e.to_string().starts_with(&format!("c.toml:{line}: ")),
            "{e}"
        );
    }
    // A trunk no listener serves: the error points at the trunk.
    let e = error_with("\"tcp:[::1]:5070\"]", "]", env_with_password);
    assert_eq!(e.line, Some(line_of_text("name = \"backup\"")), "{e}");
    assert!(
        e.to_string()
            .contains("tcp over IPv6 but sip.listen has no such listener")
    );
    let e = error_with("[sip]", "[sip", env_with_password);
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn a_missing_password_names_the_variable_not_a_value() {
    let e = Config::parse(&shipped(), "c.toml", |_| None).unwrap_err();
    assert_eq!(e.line, Some(line_of_text("password_env =")));
    assert!(
        e.to_string()
            .contains("CALLVERIFY_TRUNK_LOCAL_PBX_PASSWORD is not set"),
        "{e}"
    );
    let e = error_with(
        "password_env = \"CALLVERIFY_TRUNK_LOCAL_PBX_PASSWORD\"",
        "",
        env_with_password,
    );
    assert!(
        e.to_string().contains("username without password_env"),
        "{e}"
    );
}

#[test]
fn the_docker_compose_configuration_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../sip-config/docker.toml"
    ))
    .unwrap();
    let c = Config::parse(&text, "docker.toml", |_| None).unwrap();
    assert_eq!(c.trunks[0].address, "172.28.0.20:5060".parse().unwrap());
    assert_eq!(c.store.url_env.as_deref(), Some("CALLVERIFY_DATABASE_URL"));
    assert!(c.api.demo_page);
    assert_eq!(c.demo.numbers.get_ref(), &["+819012345678".to_string()]);
}

#[test]
fn the_policy_must_name_the_countries_and_the_demo_its_numbers() {
    let c = Config::parse(&shipped(), "c.toml", env_with_password).unwrap();
    let p = c.policy();
    assert_eq!(
        p.allowed_countries,
        api::Countries::Only(vec!["JP".into(), "US".into(), "GB".into()])
    );
    assert_eq!(
        p.allowed_number_types,
        api::NumberType::DEFAULT_ALLOWED.to_vec()
    );
    assert_eq!(p.per_country.limit.max, 200);
    assert_eq!(p.per_country.overrides.get("JP"), Some(&2000));
    assert_eq!(p.fraud_block, Duration::from_secs(24 * 3600));
    // No allowed_countries: refused, saying what to write.
    let e = error_with(
        "allowed_countries = [\"JP\", \"US\", \"GB\"]\n",
        "",
        env_with_password,
    );
    assert_eq!(e.line, None);
    let text = e.to_string();
    assert!(
        text.contains("[policy] has no allowed_countries")
            && text.contains("allowed_countries = [\"JP\", \"US\"]")
            && text.contains("allowed_countries = [\"*\"] to call every country"),
        "{text}"
    );
    // Every country only when said.
    let text = shipped().replace(
        "allowed_countries = [\"JP\", \"US\", \"GB\"]",
        "allowed_countries = [\"*\"]",
    );
    let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
    assert_eq!(c.policy().allowed_countries, api::Countries::Any);
    let e = error_with(
        "allowed_countries = [\"JP\", \"US\", \"GB\"]",
        "allowed_countries = []",
        env_with_password,
    );
    assert!(e.to_string().contains("allowed_countries is empty"), "{e}");
    // The demo page needs its numbers.
    let e = error_with("demo_page = false", "demo_page = true", env_with_password);
    assert!(
        e.to_string()
            .contains("api.demo_page = true needs [demo] numbers"),
        "{e}"
    );
    let text = shipped()
        .replace("demo_page = false", "demo_page = true")
        .replace("# [demo]\n# numbers", "[demo]\nnumbers");
    let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
    let a = c.api_settings(|_| Some("x".repeat(32))).unwrap();
    assert_eq!(a.demo_numbers[0].as_e164(), Some("+819012345678"));
    let bad = text.replace("\"+819012345678\"]", "\"090-1234-5678\"]");
    let e = Config::parse(&bad, "c.toml", env_with_password).unwrap_err();
    assert_eq!(e.line, Some(line_of_text("# numbers = [")), "{e}");
    assert!(
        e.to_string()
            .contains("\"090-1234-5678\" is not an E.164 number"),
        "{e}"
    );
}

#[test]
fn no_trunk_is_an_error() {
    let text = shipped();
    let cut = &text[..text.find("# Trunks are tried").unwrap()];
    let e = Config::parse(cut, "c.toml", env_with_password).unwrap_err();
    assert!(e.to_string().contains("no [[trunk]]"), "{e}");
}

#[test]
fn the_api_settings_carry_the_callback_policy() {
    let secrets =
        |v: &str| env_with_password(v).or_else(|| v.ends_with("_SECRET").then(|| "k".repeat(32)));
    let text = shipped()
        .replace(
            "allow_http_callbacks = false",
            "allow_http_callbacks = true",
        )
        .replace(
            "callback_allow = []",
            "callback_allow = [\"10.1.2.3/16\", \"::1\"]",
        );
    let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
    let cb = c.api_settings(secrets).unwrap().webhooks.callbacks;
    assert!(cb.allow_http);
    assert_eq!(
        cb.allow,
        vec!["10.1.0.0/16".parse().unwrap(), "::1/128".parse().unwrap()]
    );
    let c = Config::parse(&shipped(), "c.toml", env_with_password).unwrap();
    let cb = c.api_settings(secrets).unwrap().webhooks.callbacks;
    assert!(!cb.allow_http && cb.allow.is_empty());
}

#[test]
fn the_http_limits_come_from_the_file() {
    let text = shipped()
        .replace("header_timeout_s = 10", "header_timeout_s = 2")
        .replace(
            "max_streams_per_api_key = 1000",
            "max_streams_per_api_key = 7",
        );
    let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
    assert_eq!(
        c.serve_limits(),
        api::ServeLimits {
            header_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    );
    let secrets = |v: &str| v.ends_with("_SECRET").then(|| "k".repeat(32));
    let streams = c.api_settings(secrets).unwrap().streams;
    assert_eq!((streams.per_poll_token, streams.per_api_key), (4, 7));
    let c = Config::parse(
        &shipped().replace("retention_days = 90", "retention_days = 30"),
        "c.toml",
        env_with_password,
    )
    .unwrap();
    assert_eq!(
        c.api_settings(secrets).unwrap().retention,
        Duration::from_secs(30 * 86_400)
    );
    // Absent, they take their defaults.
    let bare = Config::parse(
        &shipped().replace("header_timeout_s = 10\n", ""),
        "c.toml",
        env_with_password,
    )
    .unwrap();
    assert_eq!(bare.serve_limits(), api::ServeLimits::default());
}

#[test]
fn the_configured_language_is_the_apis_default() {
    let secrets =
        |v: &str| env_with_password(v).or_else(|| v.ends_with("_SECRET").then(|| "k".repeat(32)));
    let c = Config::parse(&shipped(), "c.toml", env_with_password).unwrap();
    assert_eq!(
        c.api_settings(secrets).unwrap().language,
        media::Language::En
    );
    let text = shipped().replace("language = \"en\"", "language = \"ja\"");
    let c = Config::parse(&text, "c.toml", env_with_password).unwrap();
    assert_eq!(
        c.api_settings(secrets).unwrap().language,
        media::Language::Ja
    );
}

/// The shipped example's `[eam]` (commented out there), uncommented.
fn shipped_eam() -> String {
    let text = shipped();
    let start = text.find("# [eam]").expect("the example documents [eam]");
    text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A minimal `[eam]`: the defaults for everything else.
const EAM: &str = "[eam]
issuer = \"https://mfa.example.edu\"
client_ids = [\"600b719b-3766-4dc5-95a6-3c4a8dc31885\"]
tenants = [\"14C2F153-90A7-4689-9DB7-9543BF084DAD\"]
";

fn env_with_graph_secret(name: &str) -> Option<String> {
    match name {
        "CALLVERIFY_EAM_GRAPH_SECRET" => Some("graph-s3cret".into()),
        _ => env_with_password(name),
    }
}

/// The shipped file with `eam` appended.
fn with_eam(eam: &str) -> Result<Config, ConfigError> {
    Config::parse(
        &format!("{}\n{eam}", shipped()),
        "c.toml",
        env_with_graph_secret,
    )
}

#[test]
fn without_eam_the_provider_is_off() {
    let c = Config::parse(&shipped(), "c.toml", env_with_password).unwrap();
    assert_eq!(c.eam_settings(env_with_password).unwrap(), None);
}

#[test]
fn a_minimal_eam_section_takes_the_defaults() {
    let c = with_eam(EAM).unwrap();
    let e = c.eam_settings(env_with_graph_secret).unwrap().unwrap();
    assert_eq!(e.issuer, "https://mfa.example.edu");
    assert_eq!(e.client_ids, ["600b719b-3766-4dc5-95a6-3c4a8dc31885"]);
    assert_eq!(
        e.tenants,
        ["14c2f153-90a7-4689-9db7-9543bf084dad"],
        "lowercase"
    );
    assert_eq!(e.redirect_uris, ENTRA_REDIRECT_URIS.map(String::from));
    assert_eq!(
        e.entra_discovery_url,
        "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration"
    );
    assert_eq!(e.hint_max_age, Duration::from_secs(600));
    assert_eq!(e.key_publish, Duration::from_secs(48 * 3600));
    assert_eq!((e.key_file, e.user_id_claim.as_str()), (None, "oid"));
    assert_eq!((e.help, e.graph), (None, None));
}

#[test]
fn the_shipped_eam_example_loads_with_its_graph_secret_from_the_environment() {
    let c = with_eam(&shipped_eam()).unwrap();
    let e = c.eam_settings(env_with_graph_secret).unwrap().unwrap();
    assert_eq!(
        e.help.as_deref(),
        Some("the IT service desk, +81 3 1234 5678")
    );
    assert_eq!(e.key_file, None);
    let g = e.graph.unwrap();
    assert_eq!(g.client_secret, "graph-s3cret");
    assert_eq!(g.base_url, "https://graph.microsoft.com/v1.0");
    assert_eq!(g.login_url, "https://login.microsoftonline.com");
    assert!(
        !format!("{g:?}").contains("s3cret"),
        "Debug hides the secret"
    );
    // Without the variable the file is refused, at the line that names it.
    let text = format!("{}\n{}", shipped(), shipped_eam());
    let e = Config::parse(&text, "c.toml", env_with_password).unwrap_err();
    let line = text
        .lines()
        .position(|l| l.starts_with("client_secret_env"))
        .unwrap()
        + 1;
    assert_eq!(e.line, Some(line), "{e}");
    assert!(
        e.to_string()
            .contains("CALLVERIFY_EAM_GRAPH_SECRET is not set"),
        "{e}"
    );
    // The default variable, when client_secret_env is not written.
    let graph = "[eam.graph]\nclient_id = \"0f5d9a43\"\n";
    let e = Config::parse(
        &format!("{}\n{EAM}{graph}", shipped()),
        "c.toml",
        env_with_password,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("CALLVERIFY_EAM_GRAPH_SECRET is not set"),
        "{e}"
    );
    let c = with_eam(&format!("{EAM}{graph}")).unwrap();
    let g = c
        .eam_settings(env_with_graph_secret)
        .unwrap()
        .unwrap()
        .graph
        .unwrap();
    assert_eq!(g.client_id, "0f5d9a43");
}

/// The mistakes in `[eam]` each check refuses: a line of [`EAM`] (or a line added), what
/// replaces it, and words the error holds.
const EAM_MISTAKES: &[(&str, &str, &str)] = &[
    (
        "issuer = \"https://mfa.example.edu\"",
        "issuer = \"http://mfa.example.edu\"",
        "https URL",
    ),
    (
        "issuer = \"https://mfa.example.edu\"",
        "issuer = \"https://mfa.example.edu/\"",
        "must not end with '/'",
    ),
    (
        "issuer = \"https://mfa.example.edu\"",
        "issuer = \"https://mfa.example.edu/x?a=1\"",
        "query",
    ),
    (
        "issuer = \"https://mfa.example.edu\"",
        "issuer = \"https://mfa.example.edu/#f\"",
        "fragment",
    ),
    (
        "issuer = \"https://mfa.example.edu\"",
        "issuer = \"mfa.example.edu\"",
        "not a URL",
    ),
    (
        "issuer = \"https://mfa.example.edu\"",
        "issuer = \"http://127.0.0.2:8443\"",
        "https URL",
    ),
    (
        "issuer = \"https://mfa.example.edu\"",
        "issuer = \"https://me:pw@mfa.example.edu\"",
        "user or password",
    ),
    (
        "client_ids = [\"600b719b-3766-4dc5-95a6-3c4a8dc31885\"]",
        "client_ids = []",
        "eam.client_ids is empty",
    ),
    (
        "client_ids = [\"600b719b-3766-4dc5-95a6-3c4a8dc31885\"]",
        "client_ids = [\"a\", \"a\"]",
        "given twice",
    ),
    (
        "tenants = [\"14C2F153-90A7-4689-9DB7-9543BF084DAD\"]",
        "tenants = []",
        "eam.tenants is empty",
    ),
    (
        "tenants = [\"14C2F153-90A7-4689-9DB7-9543BF084DAD\"]",
        "tenants = [\"contoso.onmicrosoft.com\"]",
        "not a tenant id",
    ),
    (
        "tenants = [\"14C2F153-90A7-4689-9DB7-9543BF084DAD\"]",
        "tenants = [\"14c2f153-90a7-4689-9db7-9543bf084dax\"]",
        "not a tenant id",
    ),
    (
        "[eam]",
        "[eam]\nredirect_uris = []",
        "eam.redirect_uris is empty",
    ),
    (
        "[eam]",
        "[eam]\nredirect_uris = [\"http://login.example/federation\"]",
        "https URL",
    ),
    (
        "[eam]",
        "[eam]\nentra_discovery_url = \"http://login.microsoftonline.com/x\"",
        "https URL",
    ),
    (
        "[eam]",
        "[eam]\nhint_max_age_s = 59",
        "eam.hint_max_age_s is 59: give 60 to 3600",
    ),
    ("[eam]", "[eam]\nhint_max_age_s = 3601", "give 60 to 3600"),
    ("[eam]", "[eam]\nkey_publish_hours = 721", "give 0 to 720"),
    ("[eam]", "[eam]\nkey_publish_hours = -1", "u64"),
    (
        "[eam]",
        "[eam]\nuser_id_claim = \"upn\"",
        "\"oid\" or \"preferred_username\"",
    ),
    ("[eam]", "[eam]\nhelp = \"\"", "1 to 200 characters"),
    ("[eam]", "[eam]\nhelp = \"line\\nbreak\"", "one line"),
    ("[eam]", "[eam]\nissuers = \"x\"", "unknown field"),
];

#[test]
fn each_eam_mistake_is_told_at_its_line() {
    let first = shipped().lines().count() + 2;
    for &(find, replace, words) in EAM_MISTAKES {
        let eam = EAM.replacen(find, replace, 1);
        assert_ne!(eam, EAM, "{find:?}");
        let e = with_eam(&eam).unwrap_err();
        assert!(e.to_string().contains(words), "{replace}: {e}");
        let line = first + eam.lines().position(|l| replace.ends_with(l)).unwrap();
        assert_eq!(e.line, Some(line), "{replace}: {e}");
    }
}

#[test]
fn eam_urls_may_be_http_on_loopback_only_and_help_up_to_200_characters() {
    for issuer in [
        "http://127.0.0.1:8443",
        "http://[::1]:8443",
        "http://localhost",
    ] {
        let eam = EAM.replace("https://mfa.example.edu", issuer);
        let e = with_eam(&eam).unwrap().eam_settings(env_with_graph_secret);
        assert_eq!(e.unwrap().unwrap().issuer, issuer);
    }
    // 200 characters, many of them more than a byte.
    let help = "電".repeat(150) + &"x".repeat(50);
    let c = with_eam(&format!("{EAM}help = \"{help}\"\n")).unwrap();
    let e = c.eam_settings(env_with_graph_secret).unwrap().unwrap();
    assert_eq!(e.help.as_deref(), Some(help.as_str()));
    let e = with_eam(&format!("{EAM}help = \"{help}x\"\n")).unwrap_err();
    assert!(e.to_string().contains("(it has 201)"), "{e}");
    let graph = "[eam.graph]\nclient_id = \"g\"\nlogin_url = \"http://login.example\"\n";
    let e = with_eam(&format!("{EAM}{graph}")).unwrap_err();
    assert!(e.to_string().contains("eam.graph.login_url"), "{e}");
    let graph = "[eam.graph]\nclient_id = \"g\"\nbase_url = \"http://127.0.0.1:9/v1.0\"\n";
    let c = with_eam(&format!("{EAM}{graph}")).unwrap();
    let g = c
        .eam_settings(env_with_graph_secret)
        .unwrap()
        .unwrap()
        .graph
        .unwrap();
    assert_eq!(g.base_url, "http://127.0.0.1:9/v1.0");
    let e = with_eam(&format!("{EAM}[eam.graph]\nclient_id = \" \"\n")).unwrap_err();
    assert!(
        e.to_string().contains("eam.graph.client_id is empty"),
        "{e}"
    );
}

/// The shipped example with its NAT lines (`[sip] advertise`, `[media] public_address`)
/// uncommented, and `edit` applied.
fn natted(edit: impl Fn(String) -> String) -> Result<Config, ConfigError> {
    let text = shipped()
        .replacen("# advertise = ", "advertise = ", 1)
        .replacen("# public_address = ", "public_address = ", 1);
    Config::parse(&edit(text), "c.toml", env_with_password)
}

#[test]
fn the_nat_example_advertises_its_listeners_and_the_public_media_address() {
    let c = natted(|t| t).unwrap();
    let (ua, _) = c.sip_settings(env_with_password);
    let advertised: Vec<_> = ua.listen.iter().map(|l| l.advertise).collect();
    let public = "198.51.100.7:5060".parse().ok();
    assert_eq!(advertised, [public, public, None, None]);
    assert_eq!(
        ua.listen[0].advertised(),
        "198.51.100.7:5060".parse().unwrap()
    );
    assert_eq!(ua.listen[2].advertised(), "[::1]:5070".parse().unwrap());
    let m = c.media_settings();
    assert_eq!(m.address, std::net::IpAddr::from([127, 0, 0, 1]));
    assert_eq!(m.public_address, "198.51.100.7".parse().ok());
    assert_eq!(
        m.sdp_address(),
        "198.51.100.7".parse::<std::net::IpAddr>().unwrap()
    );
    // An address without a port takes the listener's.
    let c = natted(|t| {
        t.replace(
            "\"tcp:127.0.0.1:5070\" = \"198.51.100.7:5060\"",
            "\"tcp:127.0.0.1:5070\" = \"198.51.100.7\"",
        )
    })
    .unwrap();
    let (ua, _) = c.sip_settings(env_with_password);
    assert_eq!(ua.listen[1].advertise, "198.51.100.7:5070".parse().ok());
    sip::UserAgent::new(ua, c.sip_settings(env_with_password).1).expect("the user agent takes it");
    // Without them, nothing is advertised.
    let c = Config::parse(&shipped(), "c.toml", env_with_password).unwrap();
    assert!(
        c.sip_settings(env_with_password)
            .0
            .listen
            .iter()
            .all(|l| l.advertise.is_none())
    );
    assert_eq!(c.media_settings().public_address, None);
}

#[test]
fn nat_mistakes_are_told_at_their_line() {
    let advertise_line = line_of_text("# advertise = ");
    let public_line = line_of_text("# public_address = ");
    let cases: &[(&str, &str, &str, usize)] = &[
        (
            "\"udp:127.0.0.1:5070\" = ",
            "\"udp:127.0.0.1:5080\" = ",
            "sip.advertise names \"udp:127.0.0.1:5080\", which is not in sip.listen",
            advertise_line,
        ),
        (
            "\"udp:127.0.0.1:5070\" = ",
            "\"sctp:127.0.0.1:5070\" = ",
            "unknown transport",
            advertise_line,
        ),
        (
            "= \"198.51.100.7:5060\", ",
            "= \"0.0.0.0:5060\", ",
            "0.0.0.0 is unspecified",
            advertise_line,
        ),
        (
            "= \"198.51.100.7:5060\", ",
            "= \"198.51.100.7:0\", ",
            "port 0",
            advertise_line,
        ),
        (
            "= \"198.51.100.7:5060\", ",
            "= \"224.0.0.1:5060\", ",
            "multicast",
            advertise_line,
        ),
        (
            "= \"198.51.100.7:5060\", ",
            "= \"[2001:db8::7]:5060\", ",
            "not of the listener's address family",
            advertise_line,
        ),
        (
            "= \"198.51.100.7:5060\", ",
            "= \"gw.example.net:5060\", ",
            "is not address or address:port",
            advertise_line,
        ),
        (
            "public_address = \"198.51.100.7\"",
            "public_address = \"0.0.0.0\"",
            "media.public_address 0.0.0.0 is unspecified",
            public_line,
        ),
        (
            "public_address = \"198.51.100.7\"",
            "public_address = \"2001:db8::7\"",
            "not of the media address 127.0.0.1's family",
            public_line,
        ),
        (
            "public_address = \"198.51.100.7\"\n",
            "",
            "sip.advertise is set but [media] public_address is not: the SDP would name 127.0.0.1",
            advertise_line,
        ),
    ];
    for &(find, replace, words, line) in cases {
        let e = natted(|t| {
            assert!(t.contains(find), "{find:?}");
            t.replacen(find, replace, 1)
        })
        .unwrap_err();
        assert_eq!(e.line, Some(line), "{replace}: {e}");
        assert!(e.to_string().contains(words), "{replace}: {e}");
    }
    // The public media address alone: the listeners would still name their private
    // addresses.
    let text = shipped().replacen("# public_address = ", "public_address = ", 1);
    let e = Config::parse(&text, "c.toml", env_with_password).unwrap_err();
    assert_eq!(e.line, Some(public_line), "{e}");
    assert!(
        e.to_string()
            .contains("media.public_address is set but sip.advertise is not"),
        "{e}"
    );
}

/// The shipped example's `[radius]` (commented out there), uncommented: from `# [radius]`
/// to the blank line that ends it.
fn shipped_radius() -> String {
    let text = shipped();
    let start = text
        .find("# [radius]")
        .expect("the example documents [radius]");
    text[start..]
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn env_with_radius_secrets(name: &str) -> Option<String> {
    match name {
        "CALLVERIFY_RADIUS_VPN_SECRET" => Some("vpn-secret-0123456789".into()),
        "CALLVERIFY_RADIUS_UPSTREAM_SECRET" => Some("upstream-secret-0123456789".into()),
        _ => env_with_password(name),
    }
}

/// The shipped file with `radius` appended.
fn with_radius(radius: &str) -> Result<Config, ConfigError> {
    Config::parse(
        &format!("{}\n{radius}", shipped()),
        "c.toml",
        env_with_radius_secrets,
    )
}

#[test]
fn without_radius_the_front_end_is_off() {
    let c = Config::parse(&shipped(), "c.toml", env_with_password).unwrap();
    assert!(c.radius_settings(env_with_password).unwrap().is_none());
}

#[test]
fn the_shipped_radius_example_loads_with_its_secrets_from_the_environment() {
    let c = with_radius(&shipped_radius()).unwrap();
    let r = c.radius_settings(env_with_radius_secrets).unwrap().unwrap();
    assert_eq!(r.listen, "127.0.0.1:1812".parse().unwrap());
    assert_eq!((r.user_id.as_str(), r.strip_realm), ("{user}", true));
    assert_eq!(r.language, media::Language::En);
    assert_eq!(r.max_pending_per_client, 100);
    assert_eq!(r.keep_answers, Duration::from_secs(30));
    assert_eq!(r.clients.len(), 1);
    assert_eq!(r.clients[0].name, "vpn");
    assert_eq!(r.clients[0].network, "192.0.2.10/32".parse().unwrap());
    let up = r.upstream.unwrap();
    assert_eq!(up.address, "192.0.2.20:1812".parse().unwrap());
    assert_eq!((up.timeout, up.retries), (Duration::from_secs(3), 2));
    assert!(up.require_message_authenticator);
    assert!(
        !format!("{:?}", r.clients[0]).contains("vpn-secret"),
        "Debug hides the secret"
    );
    // A network, and the defaults of a minimal table.
    let minimal = "[radius]\nlisten = \"[::1]:1812\"\n[[radius.client]]\nname = \"wifi\"\n\
                   address = \"10.1.0.0/16\"\nsecret_env = \"CALLVERIFY_RADIUS_VPN_SECRET\"\n";
    let r = with_radius(minimal)
        .unwrap()
        .radius_settings(env_with_radius_secrets)
        .unwrap()
        .unwrap();
    assert_eq!(r.clients[0].network, "10.1.0.0/16".parse().unwrap());
    assert!(r.upstream.is_none());
    assert_eq!((r.user_id.as_str(), r.strip_realm), ("{user}", true));
    // Without the variable the file is refused, at the line that names it.
    let text = format!("{}\n{}", shipped(), shipped_radius());
    let e = Config::parse(&text, "c.toml", env_with_password).unwrap_err();
    let line = text
        .lines()
        .position(|l| l == "secret_env = \"CALLVERIFY_RADIUS_VPN_SECRET\"")
        .unwrap()
        + 1;
    assert_eq!(e.line, Some(line), "{e}");
    assert!(
        e.to_string()
            .contains("CALLVERIFY_RADIUS_VPN_SECRET is not set"),
        "{e}"
    );
    assert!(!e.to_string().contains("vpn-secret"), "{e}");
}

/// The mistakes in `[radius]` each check refuses: a line of the shipped example, what
/// replaces it, and words the error holds.
const RADIUS_MISTAKES: &[(&str, &str, &str)] = &[
    (
        "listen = \"127.0.0.1:1812\"",
        "listen = \"127.0.0.1:0\"",
        "radius.listen needs a port",
    ),
    (
        "listen = \"127.0.0.1:1812\"",
        "listen = \"localhost\"",
        "invalid socket address",
    ),
    (
        "user_id = \"{user}\"",
        "user_id = \"alice\"",
        "names no user",
    ),
    ("language = \"en\"", "language = \"xx\"", "unknown language"),
    (
        "max_pending_per_client = 100",
        "max_pending_per_client = 0",
        "give 1 to 10000",
    ),
    (
        "name = \"vpn\"",
        "name = \" \"",
        "1 to 64 visible characters",
    ),
    (
        "address = \"192.0.2.10\"",
        "address = \"vpn.example.edu\"",
        "is no address nor network",
    ),
    (
        "address = \"192.0.2.10\"",
        "address = \"192.0.2.0/33\"",
        "is no address nor network",
    ),
    (
        "secret_env = \"CALLVERIFY_RADIUS_VPN_SECRET\"",
        "secret_env = \"CALLVERIFY_RADIUS_SHORT_SECRET\"",
        "is 5 octets; give 16 at least",
    ),
    (
        "address = \"192.0.2.20:1812\"",
        "address = \"0.0.0.0:1812\"",
        "is no server's address",
    ),
    ("timeout_ms = 3000", "timeout_ms = 50", "give 100 to 30000"),
    ("retries = 2", "retries = 11", "give 0 to 10"),
    ("retries = 2", "retry = 2", "unknown field"),
];

#[test]
fn each_radius_mistake_is_told_at_its_line() {
    let env = |name: &str| match name {
        "CALLVERIFY_RADIUS_SHORT_SECRET" => Some("short".into()),
        _ => env_with_radius_secrets(name),
    };
    let example = shipped_radius();
    let first = shipped().lines().count() + 2;
    for &(find, replace, words) in RADIUS_MISTAKES {
        let radius = example.replacen(find, replace, 1);
        assert_ne!(radius, example, "{find:?}");
        let e = Config::parse(&format!("{}\n{radius}", shipped()), "c.toml", env).unwrap_err();
        assert!(e.to_string().contains(words), "{replace}: {e}");
        assert!(!e.to_string().contains("short\""), "no secret in {e}");
        let line = first + radius.lines().position(|l| l == replace).unwrap();
        assert_eq!(e.line, Some(line), "{replace}: {e}");
    }
    // Two NAS of one name, and a table without any.
    let twice = format!(
        "{example}\n[[radius.client]]\nname = \"vpn\"\naddress = \"192.0.2.11\"\n\
         secret_env = \"CALLVERIFY_RADIUS_VPN_SECRET\""
    );
    let e = with_radius(&twice).unwrap_err();
    assert!(e.to_string().contains("\"vpn\" is given twice"), "{e}");
    let e = with_radius("[radius]\nlisten = \"127.0.0.1:1812\"\n").unwrap_err();
    assert!(e.to_string().contains("has no [[radius.client]]"), "{e}");
}
