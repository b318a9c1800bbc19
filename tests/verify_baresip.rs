//! A verification call to baresip, a real softphone: it answers by itself and plays a WAV
//! that ends with a '#' tone as its microphone; the call must be approved.

use callverify_e2e::{
    BOUND, Baresip, V4, endpoint, free_rtp_pair, media_at, pound_wav, script, trunk, verify_call,
};
use engine::Outcome;
use engine::call::KeySource;
use media::Language;
use sip::Transport;

#[tokio::test]
async fn baresip_pressing_pound_in_its_audio_is_approved() {
    let wav = pound_wav("baresip-pound-wav");
    let phone = Baresip::start_saying("verify-pound", &wav);
    let ep = endpoint(
        V4,
        BOUND,
        vec![trunk("softphone", Transport::Udp, phone.addr)],
    )
    .await;
    let media = media_at(V4, free_rtp_pair(V4));
    let r = verify_call(&ep, &media, script(), Language::Ja).await;
    assert_eq!(r.outcome, Outcome::Approved, "{r:?}\n{}", phone.log());
    assert_eq!(r.keys.len(), 1, "{r:?}");
    assert_eq!(
        (r.keys[0].digit, r.keys[0].source),
        ('#', KeySource::InBand)
    );
    assert!(r.media.packets_received > 50, "{r:?}");
    ep.shutdown().await;
}
