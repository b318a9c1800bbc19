//! SIP over TLS (and SRTP with SDES keys) against baresip, a real softphone: its
//! certificate is checked before anything is sent, and the call is approved on the '#' in
//! its audio.

use callverify_e2e::{
    Baresip, TestCa, V4, free_rtp_pair, media_at, script, tls_endpoint, trunk, verify_call,
};
use engine::{Outcome, TlsSettings, TlsTrunk};
use media::Language;
use sip::Transport;
use sip::sdp::SrtpPolicy;

/// The gateway's TLS settings: its own certificate from `ca` for its listener, and the
/// phone at `phone` checked for `name` against `trusted`.
fn settings(
    ca: &TestCa,
    phone: std::net::SocketAddr,
    name: &str,
    trusted: &std::path::Path,
) -> TlsSettings {
    let own = ca.issue("gateway", &["127.0.0.1"]);
    let mut tls = TlsSettings {
        server: Some(engine::tls::server_config(&own.cert_file, &own.key_file).unwrap()),
        ..TlsSettings::default()
    };
    tls.trunks
        .insert(phone, TlsTrunk::new(name, Some(trusted)).unwrap());
    tls
}

fn invites_seen(phone: &Baresip) -> usize {
    phone.log().matches("INVITE sip:").count()
}

#[tokio::test]
async fn a_call_over_tls_to_a_checked_certificate_is_approved() {
    let ca = TestCa::new("tls-ok");
    let phone = Baresip::start_tls("tls-ok", &ca, None);
    let at = phone.tls_addr.unwrap();
    let ep = tls_endpoint(
        V4,
        vec![trunk("softphone", Transport::Tls, at)],
        settings(&ca, at, "127.0.0.1", &ca.ca_file),
    )
    .await;
    let media = media_at(V4, free_rtp_pair(V4));
    let r = verify_call(&ep, &media, script(), Language::En).await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}\n{}", phone.log());
    let log = phone.log();
    assert!(
        log.contains("SIP/2.0/TLS"),
        "the INVITE came over TLS:\n{log}"
    );
    assert!(
        !log.contains("SIP/2.0/UDP"),
        "nothing came over UDP:\n{log}"
    );
    // baresip hangs up when its WAV ends, over a TLS connection it opens to our listener
    // (checking our certificate): the BYE is answered over that connection.
    let start = std::time::Instant::now();
    while !bye_answered(&phone.log()) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "baresip's BYE got no 200:\n{}",
            phone.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ep.shutdown().await;
}

/// Whether baresip's log shows a BYE and then a 200 for it.
fn bye_answered(log: &str) -> bool {
    log.split_once("\nBYE sip:").is_some_and(|(_, after)| {
        after.split("SIP/2.0 200").skip(1).any(|resp| {
            resp.lines()
                .take(12)
                .any(|l| l.starts_with("CSeq:") && l.ends_with("BYE"))
        })
    })
}

#[tokio::test]
async fn a_certificate_from_another_ca_or_for_another_name_gets_nothing() {
    let ca = TestCa::new("tls-bad");
    let other = TestCa::new("tls-other");
    let phone = Baresip::start_tls("tls-bad", &ca, None);
    let at = phone.tls_addr.unwrap();
    for (name, trusted, why) in [
        ("127.0.0.1", &other.ca_file, "an untrusted CA"),
        ("sip.example.net", &ca.ca_file, "another name"),
    ] {
        let ep = tls_endpoint(
            V4,
            vec![trunk("softphone", Transport::Tls, at)],
            settings(&ca, at, name, trusted),
        )
        .await;
        let media = media_at(V4, free_rtp_pair(V4));
        let r = verify_call(&ep, &media, script(), Language::En).await;
        assert!(
            matches!(r.outcome, Outcome::Failed { .. }),
            "{why}: {r:?}\n{}",
            phone.log()
        );
        ep.shutdown().await;
    }
    assert_eq!(invites_seen(&phone), 0, "{}", phone.log());
}

/// A verification call to `phone` over TLS (its certificate checked against `ca`) with the
/// SRTP policy `srtp`.
async fn srtp_call(ca: &TestCa, phone: &Baresip, srtp: SrtpPolicy) -> engine::CallReport {
    let at = phone.tls_addr.unwrap();
    let trunk = sip::TrunkConfig {
        srtp,
        ..trunk("softphone", Transport::Tls, at)
    };
    let ep = tls_endpoint(V4, vec![trunk], settings(ca, at, "127.0.0.1", &ca.ca_file)).await;
    let media = media_at(V4, free_rtp_pair(V4));
    let r = verify_call(&ep, &media, script(), Language::En).await;
    ep.shutdown().await;
    r
}

#[tokio::test]
async fn srtp_with_sdes_keys_carries_the_call_both_ways() {
    for (policy, mediaenc) in [
        (SrtpPolicy::Mandatory, "srtp-mand"),
        (SrtpPolicy::Optional, "srtp"),
    ] {
        let ca = TestCa::new(&format!("srtp-{mediaenc}"));
        let phone = Baresip::start_tls(&format!("srtp-{mediaenc}"), &ca, Some(mediaenc));
        let r = srtp_call(&ca, &phone, policy).await;
        let log = phone.log();
        // The '#' in baresip's audio was decrypted and heard...
        assert_eq!(r.outcome, Outcome::Approved, "{mediaenc}: {r:?}\n{log}");
        assert!(r.media.srtp, "{mediaenc}: {r:?}");
        assert!(r.media.packets_received > 50, "{r:?}");
        assert_eq!(r.media.packets_rejected, 0, "{r:?}");
        // ... the offer had our key ...
        assert!(
            log.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{log}"
        );
        // ... and baresip took our SRTP: it reports incoming RTP only for packets that
        // authenticate under our key (with a wrong key the line never comes).
        assert!(
            log.contains("stream: incoming rtp for 'audio' established"),
            "{mediaenc}: baresip decrypted nothing:\n{log}"
        );
    }
}

#[tokio::test]
async fn mandatory_srtp_refuses_a_phone_without_it_and_optional_falls_back_to_rtp() {
    let ca = TestCa::new("srtp-none");
    let phone = Baresip::start_tls("srtp-none", &ca, None);
    for (policy, want_approved) in [(SrtpPolicy::Mandatory, false), (SrtpPolicy::Optional, true)] {
        let r = srtp_call(&ca, &phone, policy).await;
        if want_approved {
            assert_eq!(r.outcome, Outcome::Approved, "{r:?}\n{}", phone.log());
            assert!(!r.media.srtp, "{r:?}");
        } else {
            // The phone refuses RTP/SAVP (488): no call without SRTP.
            assert!(
                matches!(
                    r.outcome,
                    Outcome::Failed {
                        status: Some(488),
                        ..
                    }
                ),
                "{r:?}\n{}",
                phone.log()
            );
        }
    }
}
