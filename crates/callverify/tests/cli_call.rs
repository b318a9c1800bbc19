//! `callverify call +NUMBER`, run as an operator would run it, against sipp answering and
//! pressing '#' (RFC 4733, sipp's own capture).

use std::process::{Command, Stdio};

use callverify_e2e::{BOUND, Baresip, Sipp, TestCa, V4, free_port, free_rtp_pair, scratch};

/// Runs `callverify call NUMBER` with the configuration at `path`; returns its exit code,
/// its one JSON line and its log.
async fn call(number: &str, path: &std::path::Path) -> (Option<i32>, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_callverify"))
        .args(["call", number, "--lang", "ja", "--config"])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(
        BOUND,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("callverify call ends within the bound")
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    (out.status.code(), stdout, stderr)
}

#[tokio::test]
async fn a_call_through_the_configured_trunk_prints_its_outcome_as_json() {
    let sipp = Sipp::callee_pressing_pound("cli-call", V4);
    let dir = scratch("cli-call");
    let rtp = free_rtp_pair(V4);
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\n\n\
         [[trunk]]\nname = \"sipp\"\naddress = \"{trunk}\"\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
         [call]\nprompts = \"{prompts}\"\nfirst_key_timeout_s = 5\ncall_timeout_s = 60\n\n\
         [policy]\nallowed_countries = [\"JP\"]\n",
        sip = free_port(V4),
        trunk = sipp.addr,
        rtp1 = rtp + 1,
    );
    let path = dir.join("callverify.toml");
    std::fs::write(&path, config).unwrap();
    let (code, stdout, stderr) = call("+819012345678", &path).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let exit = sipp.finish().await;
    assert!(exit.passed, "{}", exit.log);

    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["outcome"], "approved", "{v}");
    assert_eq!(v["number"], "+81 ** **** **78");
    assert_eq!(v["language"], "ja");
    assert_eq!(v["trunk"], "sipp");
    assert_eq!(v["keys"][0]["digit"], "#");
    assert_eq!(v["keys"][0]["source"], "rfc4733");
    for t in [
        "post_dial_delay_ms",
        "time_to_answer_ms",
        "time_to_key_ms",
        "time_to_verdict_ms",
    ] {
        assert!(v["timings"][t].is_u64(), "{t}: {v}");
    }
    assert_eq!(v["media"]["codec"], "PCMU");
    // The logs go to stderr, with the number masked and never in full.
    assert!(stderr.contains("+81 ** **** **78"), "{stderr}");
    assert!(!stderr.contains("819012345678") && !stdout.contains("819012345678"));
}

#[tokio::test]
async fn a_tls_trunk_with_mandatory_srtp_from_the_configuration_is_approved() {
    let ca = TestCa::new("cli-tls");
    let own = ca.issue("gateway", &["127.0.0.1"]);
    let phone = Baresip::start_tls("cli-tls", &ca, Some("srtp-mand"));
    let dir = scratch("cli-tls");
    let rtp = free_rtp_pair(V4);
    let prompts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../prompts");
    let config = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{sip}\", \"tls:127.0.0.1:{tls}\"]\n\
         tls = {{ cert_file = \"{cert}\", key_file = \"{key}\" }}\n\n\
         [[trunk]]\nname = \"softphone\"\naddress = \"{trunk}\"\ntransport = \"tls\"\n\
         domain = \"127.0.0.1\"\ntls_ca_file = \"{ca}\"\nsrtp = \"mandatory\"\n\n\
         [media]\nrtp_ports = \"{rtp}-{rtp1}\"\n\n\
         [call]\nprompts = \"{prompts}\"\nfirst_key_timeout_s = 5\ncall_timeout_s = 60\n\n\
         [policy]\nallowed_countries = [\"JP\"]\n",
        sip = free_port(V4),
        tls = free_port(V4),
        cert = own.cert_file.display(),
        key = own.key_file.display(),
        trunk = phone.tls_addr.unwrap(),
        ca = ca.ca_file.display(),
        rtp1 = rtp + 1,
    );
    let path = dir.join("callverify.toml");
    std::fs::write(&path, &config).unwrap();
    // baresip answers its own number only.
    let (code, stdout, stderr) = call("+81901234567", &path).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}\n{}", phone.log());
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["outcome"], "approved", "{v}");
    assert_eq!(v["media"]["srtp"], true, "{v}");
    assert_eq!(v["keys"][0]["source"], "in_band", "{v}");
    assert!(phone.log().contains("SIP/2.0/TLS"), "{}", phone.log());

    // The same trunk checked against another CA: no call.
    let other = TestCa::new("cli-tls-other");
    std::fs::write(
        &path,
        config.replace(
            &ca.ca_file.display().to_string(),
            &other.ca_file.display().to_string(),
        ),
    )
    .unwrap();
    // baresip answers its own number only.
    let (code, stdout, stderr) = call("+81901234567", &path).await;
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    // The call was placed and ended: its outcome is the answer (exit 0, as for any outcome).
    assert_eq!(
        (code, &v["outcome"]),
        (Some(0), &"failed".into()),
        "{v}\n{stderr}"
    );
    assert!(
        stderr.contains("SIP over TLS: handshake failed"),
        "{stderr}"
    );
}

#[test]
fn a_number_that_is_not_e164_is_refused_before_any_call() {
    let out = Command::new(env!("CARGO_BIN_EXE_callverify"))
        .args(["call", "090-1234-5678"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("E.164"), "{stderr}");
}
