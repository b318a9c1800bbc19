//! WAV loading into 8 kHz mono 16-bit linear, whatever the file's rate, depth or channels.
//!
//! PCM (8-32 bit integer) and 32-bit float go through hound; G.711 μ-law and A-law WAV
//! (format tags 7 and 6, which hound does not read) through a small RIFF reader here.
//! Channels are averaged and the rate is converted with a windowed-sinc resampler.

use crate::g711::Codec;
use crate::resample::resample;

/// The largest WAV accepted, in bytes (about 10 minutes of 48 kHz stereo 16-bit).
pub const MAX_WAV_BYTES: usize = 64 * 1024 * 1024;

/// Why a WAV could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path given.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_WAV_BYTES`].
    #[error("WAV is {0} bytes, more than the {MAX_WAV_BYTES} accepted")]
    TooLarge(usize),
    /// The bytes are not a WAV file this loader can read.
    #[error("not a readable WAV file: {0}")]
    Format(String),
    /// The WAV holds no samples.
    #[error("WAV holds no audio samples")]
    Empty,
}

/// Reads a WAV file and converts it to 8 kHz mono.
pub fn load_wav_file(path: &std::path::Path) -> Result<Vec<i16>, WavError> {
    let io = |source| WavError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_WAV_BYTES as u64 {
        return Err(WavError::TooLarge(len as usize));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    load_wav(&bytes)
}

/// Converts the bytes of a WAV file to 8 kHz mono 16-bit samples.
pub fn load_wav(bytes: &[u8]) -> Result<Vec<i16>, WavError> {
    if bytes.len() > MAX_WAV_BYTES {
        return Err(WavError::TooLarge(bytes.len()));
    }
    let riff = Riff::parse(bytes)?;
    let (rate, mono) = match riff.format_tag {
        6 | 7 => {
            let codec = if riff.format_tag == 7 {
                Codec::Pcmu
            } else {
                Codec::Pcma
            };
            if riff.bits != 8 {
                return Err(WavError::Format(format!(
                    "G.711 WAV with {} bits per sample",
                    riff.bits
                )));
            }
            let frames = riff.data.chunks_exact(riff.channels as usize);
            let mono = frames
                .map(|f| {
                    f.iter()
                        .map(|&c| f32::from(codec.decode(c)) / 32768.0)
                        .sum::<f32>()
                        / f.len() as f32
                })
                .collect::<Vec<_>>();
            (riff.sample_rate, mono)
        }
        _ => read_with_hound(bytes)?,
    };
    if mono.is_empty() {
        return Err(WavError::Empty);
    }
    let out = resample(&mono, rate, 8000);
    if out.is_empty() {
        return Err(WavError::Empty);
    }
    Ok(out
        .iter()
        .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect())
}

fn read_with_hound(bytes: &[u8]) -> Result<(u32, Vec<f32>), WavError> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| WavError::Format(e.to_string()))?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(WavError::Format("zero channels".into()));
    }
    let channels = spec.channels as usize;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(WavError::Format(format!(
                    "{}-bit float samples",
                    spec.bits_per_sample
                )));
            }
            reader
                .into_samples::<f32>()
                .map(|s| {
                    s.map(|v| {
                        if v.is_finite() {
                            v.clamp(-1.0, 1.0)
                        } else {
                            0.0
                        }
                    })
                })
                .collect::<Result<_, _>>()
        }
        hound::SampleFormat::Int => {
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(WavError::Format(format!(
                    "{}-bit samples",
                    spec.bits_per_sample
                )));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
        }
    }
    .map_err(|e| WavError::Format(e.to_string()))?;
    let mono = interleaved
        .chunks_exact(channels)
        .map(|f| f.iter().sum::<f32>() / channels as f32)
        .collect();
    Ok((spec.sample_rate, mono))
}

/// The parts of a RIFF/WAVE file needed to read G.711 data (and to route others to hound).
struct Riff<'a> {
    format_tag: u16,
    channels: u16,
    sample_rate: u32,
    bits: u16,
    data: &'a [u8],
}

impl<'a> Riff<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, WavError> {
        let bad = |m: &str| WavError::Format(m.to_string());
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(bad("missing RIFF/WAVE header"));
        }
        let mut fmt: Option<&[u8]> = None;
        let mut data: Option<&[u8]> = None;
        let mut rest = &bytes[12..];
        while rest.len() >= 8 {
            let id = &rest[0..4];
            let size = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            let body_end = 8usize.saturating_add(size);
            // A truncated last chunk (common for streamed data) is read as far as it goes.
            let body = &rest[8..body_end.min(rest.len())];
            match id {
                b"fmt " => fmt = Some(body),
                b"data" => data = Some(body),
                _ => {}
            }
            let next = body_end.saturating_add(size & 1);
            if next >= rest.len() {
                break;
            }
            rest = &rest[next..];
        }
        let fmt = fmt.ok_or_else(|| bad("no fmt chunk"))?;
        if fmt.len() < 16 {
            return Err(bad("fmt chunk shorter than 16 bytes"));
        }
        let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let mut format_tag = u16_at(fmt, 0);
        if format_tag == 0xFFFE && fmt.len() >= 26 {
            // WAVE_FORMAT_EXTENSIBLE: the real tag leads the sub-format GUID.
            format_tag = u16_at(fmt, 24);
        }
        let channels = u16_at(fmt, 2);
        let sample_rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
        let bits = u16_at(fmt, 14);
        if channels == 0 {
            return Err(bad("zero channels"));
        }
        if !(1000..=384_000).contains(&sample_rate) {
            return Err(WavError::Format(format!(
                "sample rate {sample_rate} Hz is out of range"
            )));
        }
        let data = data.ok_or_else(|| bad("no data chunk"))?;
        Ok(Riff {
            format_tag,
            channels,
            sample_rate,
            bits,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, secs: f32, amp: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    fn hound_wav(spec: hound::WavSpec, frames: &[f32]) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
            for &v in frames {
                for _ in 0..spec.channels {
                    match spec.sample_format {
                        hound::SampleFormat::Float => w.write_sample(v).unwrap(),
                        hound::SampleFormat::Int => {
                            let max = (1i64 << (spec.bits_per_sample - 1)) as f32 - 1.0;
                            w.write_sample((v * max).round() as i32).unwrap();
                        }
                    }
                }
            }
            w.finalize().unwrap();
        }
        cursor.into_inner()
    }

    fn g711_wav(codec: Codec, rate: u32, frames: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = frames
            .iter()
            .map(|v| codec.encode((v * 32767.0) as i16))
            .collect();
        let tag: u16 = if codec == Codec::Pcmu { 7 } else { 6 };
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(4 + 26 + 8 + data.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&18u32.to_le_bytes());
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&data);
        b
    }

    /// Amplitude of `hz` in 8 kHz samples, by correlation.
    fn amplitude(x: &[i16], hz: f32) -> f32 {
        let (mut re, mut im) = (0f64, 0f64);
        for (i, &s) in x.iter().enumerate() {
            let w = 2.0 * std::f64::consts::PI * f64::from(hz) * i as f64 / 8000.0;
            re += f64::from(s) * w.cos();
            im += f64::from(s) * w.sin();
        }
        (2.0 * (re * re + im * im).sqrt() / x.len() as f64) as f32
    }

    #[test]
    fn any_rate_depth_and_channels_become_8k_mono() {
        let formats = [
            (8000, 16, 1, hound::SampleFormat::Int),
            (16000, 16, 2, hound::SampleFormat::Int),
            (22050, 8, 1, hound::SampleFormat::Int),
            (44100, 24, 2, hound::SampleFormat::Int),
            (48000, 32, 1, hound::SampleFormat::Float),
            (11025, 32, 3, hound::SampleFormat::Int),
        ];
        for (rate, bits, channels, sample_format) in formats {
            let spec = hound::WavSpec {
                channels,
                sample_rate: rate,
                bits_per_sample: bits,
                sample_format,
            };
            // 1 kHz survives; 5 kHz (above 4 kHz) must be filtered out, not aliased to 3 kHz.
            let mut s = sine(rate, 1000.0, 0.5, 0.4);
            if rate > 10_000 {
                for (v, a) in s.iter_mut().zip(sine(rate, 5000.0, 0.5, 0.4)) {
                    *v += a;
                }
            }
            let out = load_wav(&hound_wav(spec, &s)).unwrap();
            assert!(
                (out.len() as i64 - 4000).abs() <= 2,
                "{rate} Hz: {} samples",
                out.len()
            );
            let a1k = amplitude(&out[200..3800], 1000.0) / 32768.0;
            assert!(
                (a1k - 0.4).abs() < 0.02,
                "{rate}/{bits}/{channels}: 1 kHz at {a1k}"
            );
            let alias = amplitude(&out[200..3800], 3000.0) / 32768.0;
            assert!(alias < 0.004, "{rate}: 3 kHz alias at {alias}");
        }
    }

    #[test]
    fn g711_wavs_load() {
        let s = sine(8000, 1000.0, 0.25, 0.5);
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let out = load_wav(&g711_wav(codec, 8000, &s)).unwrap();
            assert_eq!(out.len(), 2000);
            let a = amplitude(&out, 1000.0) / 32768.0;
            assert!((a - 0.5).abs() < 0.01, "{codec:?}: {a}");
        }
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let good = hound_wav(
            hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
            &sine(8000, 440.0, 0.1, 0.5),
        );
        assert!(matches!(load_wav(b""), Err(WavError::Format(_))));
        assert!(matches!(
            load_wav(b"RIFF\0\0\0\0WAVE"),
            Err(WavError::Format(_))
        ));
        assert!(matches!(load_wav(&good[..30]), Err(WavError::Format(_))));
        for cut in [44, 45, 100, good.len() - 1] {
            let _ = load_wav(&good[..cut]);
        }
        let empty = hound_wav(
            hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            },
            &[],
        );
        assert!(matches!(load_wav(&empty), Err(WavError::Empty)));
        assert!(matches!(
            load_wav(&g711_wav(Codec::Pcmu, 8000, &[])),
            Err(WavError::Empty)
        ));
        let mut zero_rate = g711_wav(Codec::Pcma, 8000, &[0.0; 10]);
        zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(load_wav(&zero_rate), Err(WavError::Format(_))));
        let missing = load_wav_file(std::path::Path::new("/nonexistent/x.wav")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/x.wav"));
    }
}
