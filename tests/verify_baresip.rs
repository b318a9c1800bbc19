//! A verification call to baresip, a real softphone: it answers by itself and plays a WAV
//! that ends with a '#' tone as its microphone; the call must be approved.

use callverify_e2e::{
    BOUND, Baresip, V4, endpoint, free_rtp_pair, media_at, scratch, script, trunk, verify_call,
};
use dtmf::Digit;
use engine::Outcome;
use engine::call::KeySource;
use media::Language;
use sip::Transport;
use testaudio::Signal;

#[tokio::test]
async fn baresip_pressing_pound_in_its_audio_is_approved() {
    let wav = scratch("baresip-pound-wav").join("pound.wav");
    let pcm = Signal::new()
        .silence(1500.0)
        .digit(Digit::Pound, -10.0, 200.0)
        .silence(500.0)
        .pcm();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&wav, spec).unwrap();
    for s in pcm {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();

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
