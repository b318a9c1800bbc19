//! A verification call to baresip, a real softphone: it answers by itself and plays a WAV
//! that ends with a '#' tone as its microphone; the call must be approved.

use callverify_e2e::{
    BOUND, Baresip, KEY_AT_MS, V4, endpoint, free_rtp_pair, keys_wav, media_at, prompts,
    prompts_heard, script, trunk, verify_call,
};
use dtmf::Digit;
use engine::Outcome;
use engine::call::KeySource;
use media::{Language, PromptKind};
use sip::Transport;

#[tokio::test]
async fn baresip_pressing_pound_in_its_audio_is_approved() {
    // '#' while the instructions play, and long enough a WAV for the closing prompt (the
    // phone hangs up when its WAV ends).
    let wav = keys_wav(
        "baresip-pound-wav",
        &[Digit::Pound],
        KEY_AT_MS,
        KEY_AT_MS + 9000.0,
    );
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
    // What the phone heard: the greeting whole, the instructions cut short by the '#'
    // (barge-in), then the closing prompt.
    let heard = prompts_heard(
        &phone.heard(),
        &prompts(Language::Ja),
        &[
            PromptKind::Greeting,
            PromptKind::Instructions,
            PromptKind::Verified,
        ],
    );
    let kinds: Vec<PromptKind> = heard.iter().map(|h| h.1).collect();
    assert_eq!(kinds, [PromptKind::Greeting, PromptKind::Verified]);
}
