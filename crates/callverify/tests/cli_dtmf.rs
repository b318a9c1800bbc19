//! `callverify dtmf FILE.wav`, run as a user would run it.

use std::path::{Path, PathBuf};
use std::process::Command;

use testaudio::{RATE, Signal};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callverify-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run(file: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callverify"))
        .arg("dtmf")
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Writes `pcm` (8 kHz) as a 16 kHz stereo 24-bit WAV, to go through conversion.
fn write_wav(path: &Path, pcm: &[i16]) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for pair in pcm.windows(2).chain(std::iter::once(&pcm[pcm.len() - 2..])) {
        // Linear interpolation to 16 kHz: the exact method does not matter for DTMF.
        for v in [
            i32::from(pair[0]),
            i32::midpoint(i32::from(pair[0]), i32::from(pair[1])),
        ] {
            w.write_sample(v * 256).unwrap();
            w.write_sample(v * 256).unwrap();
        }
    }
    w.finalize().unwrap();
}

#[test]
fn prints_each_digit_then_the_summary() {
    let s = Signal::new()
        .silence(1234.0)
        .digits("0", -10.0, 100.0, 150.0)
        .digits("#", -10.0, 100.0, 300.0);
    let path = tmp("zero-pound.wav");
    write_wav(&path, &s.pcm());
    let (code, stdout, stderr) = run(&path);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0]["digit"], "0");
    assert_eq!(lines[1]["digit"], "#");
    assert_eq!(lines[2], serde_json::json!({ "digits": "0#" }));
    let start = lines[0]["start_ms"].as_u64().unwrap();
    let end = lines[0]["end_ms"].as_u64().unwrap();
    assert!(
        start.abs_diff(1234) <= 10 && end.abs_diff(1334) <= 10,
        "{stdout}"
    );
    let hash_start = lines[1]["start_ms"].as_u64().unwrap();
    assert!(hash_start.abs_diff(1484) <= 10, "{stdout}");
    assert!(s.pcm().len() as u64 * 1000 / u64::from(RATE) > hash_start);
}

#[test]
fn no_digits_is_an_empty_summary() {
    let path = tmp("silence.wav");
    write_wav(&path, &Signal::new().silence(500.0).pcm());
    let (code, stdout, _) = run(&path);
    assert_eq!(code, 0);
    assert_eq!(stdout.trim(), r#"{"digits":""}"#);
}

#[test]
fn bad_files_exit_2_with_a_message() {
    let garbage = tmp("garbage.wav");
    std::fs::write(&garbage, b"this is not a wav file at all").unwrap();
    let empty = tmp("empty.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&empty, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let missing = tmp("missing.wav");
    for (path, words) in [
        (&garbage, "not a readable WAV"),
        (&empty, "no audio"),
        (&missing, "cannot read"),
    ] {
        let (code, stdout, stderr) = run(path);
        assert_eq!(code, 2, "{}: {stderr}", path.display());
        assert!(stdout.is_empty());
        assert!(
            stderr.starts_with("callverify dtmf: ") && stderr.contains(words),
            "{stderr}"
        );
    }
}
