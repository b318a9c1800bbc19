//! DTMF receiver benchmark: throughput on one core and receiver quality, callverify's
//! detector against spandsp's `dtmf_rx` (libspandsp-dev) on the same audio in the same run.
//! goertzel-nostd and a hand-written Goertzel bank are timed as raw filter banks (no
//! decisions) to show what the filtering alone costs each way.
//!
//! Run: `cargo run --release -p callverify-bench --bin dtmf-bench -- [--profile [KERNEL]]`
//! (`--help` lists the options).

use std::ffi::{c_char, c_int, c_void};
use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use testaudio::{Signal, chords, q24, speech};

#[cfg(test)]
mod cli_check;

/// The command line.
#[derive(Parser, Debug, PartialEq, Eq)]
#[command(
    name = "dtmf-bench",
    about = "DTMF receiver benchmark: throughput on one core and receiver quality, callverify's\n\
             detector against spandsp's dtmf_rx on the same audio in the same run (and two bare\n\
             Goertzel filter banks timed, without decisions)",
    long_about = None,
    after_help = "Needs espeak-ng and sox (the talk-off corpus) and libspandsp."
)]
struct Args {
    /// Time only callverify's detector (best of 20) in the fastest kernel or the one named,
    /// for `perf record`; default: everything
    #[arg(long, value_name = "KERNEL", num_args = 0..=1, default_missing_value = "best")]
    profile: Option<Profiled>,
}

/// The kernel `--profile` times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Profiled {
    /// The fastest this CPU has.
    Best,
    /// No SIMD.
    Portable,
    /// AVX2 and FMA.
    Avx2,
    /// AVX-512.
    Avx512,
}

#[repr(C)]
struct DtmfRxState {
    _private: [u8; 0],
}

// The reference receiver, through its C interface: the one place the benchmarks need unsafe
// code (each call says why it is sound).
#[allow(unsafe_code)]
unsafe extern "C" {
    fn dtmf_rx_init(s: *mut DtmfRxState, cb: *const c_void, user: *mut c_void) -> *mut DtmfRxState;
    fn dtmf_rx_parms(
        s: *mut DtmfRxState,
        filter_dialtone: c_int,
        twist: c_int,
        reverse_twist: c_int,
        threshold: c_int,
    );
    fn dtmf_rx(s: *mut DtmfRxState, amp: *const i16, samples: c_int) -> c_int;
    fn dtmf_rx_get(s: *mut DtmfRxState, digits: *mut c_char, max: c_int) -> usize;
    fn dtmf_rx_free(s: *mut DtmfRxState) -> c_int;
}

/// spandsp's receiver, owned.
struct Spandsp(*mut DtmfRxState);

#[allow(unsafe_code)]
impl Spandsp {
    /// With spandsp's own twist limits, or with `twist` = (normal, reverse) in dB.
    fn new(twist: Option<(i32, i32)>) -> Self {
        // SAFETY: a null state asks spandsp to allocate one; no callback is registered.
        let s =
            unsafe { dtmf_rx_init(std::ptr::null_mut(), std::ptr::null(), std::ptr::null_mut()) };
        assert!(!s.is_null(), "dtmf_rx_init failed");
        if let Some((normal, reverse)) = twist {
            // SAFETY: s is a live receiver; -1/-99 keep the dial-tone filter and threshold.
            unsafe { dtmf_rx_parms(s, -1, normal, reverse, -99) };
        }
        Spandsp(s)
    }

    fn push(&mut self, pcm: &[i16], digits: &mut String) {
        // SAFETY: the pointer and length describe a live slice; the buffer is 128 bytes.
        unsafe {
            dtmf_rx(self.0, pcm.as_ptr(), pcm.len() as c_int);
            let mut buf = [0 as c_char; 128];
            let n = dtmf_rx_get(self.0, buf.as_mut_ptr(), buf.len() as c_int - 1);
            digits.extend(buf[..n].iter().map(|&c| c as u8 as char));
        }
    }
}

#[allow(unsafe_code)]
impl Drop for Spandsp {
    fn drop(&mut self) {
        // SAFETY: allocated by dtmf_rx_init and freed once.
        unsafe { dtmf_rx_free(self.0) };
    }
}

const CHUNK: usize = 160;

fn spandsp_digits(pcm: &[i16], twist: Option<(i32, i32)>) -> String {
    let mut rx = Spandsp::new(twist);
    let mut digits = String::new();
    for c in pcm.chunks(CHUNK) {
        rx.push(c, &mut digits);
    }
    // spandsp reports a digit at its end: flush with silence.
    rx.push(&[0; 800], &mut digits);
    digits
}

/// The eight DTMF frequencies, rows then columns.
fn dtmf_hz() -> [f32; 8] {
    let (r, c) = (dtmf::ROW_HZ, dtmf::COL_HZ);
    [r[0], r[1], r[2], r[3], c[0], c[1], c[2], c[3]]
}

/// Eight Goertzel filters over 102-sample blocks with goertzel-nostd (one pass each).
fn goertzel_nostd_bank(pcm: &[i16]) -> f32 {
    let params: Vec<_> = dtmf_hz()
        .map(|f| goertzel_nostd::Parameters::new(f, 8000, 102))
        .to_vec();
    let mut acc = 0.0;
    let mut block = [0f32; 102];
    for chunk in pcm.chunks_exact(102) {
        for (b, &s) in block.iter_mut().zip(chunk) {
            *b = f32::from(s);
        }
        for p in &params {
            acc += p.mag_squared(block.iter());
        }
    }
    acc
}

/// The same bank written by hand: eight lanes updated together per sample.
fn goertzel_hand_bank(pcm: &[i16]) -> f32 {
    let coef: [f32; 8] = dtmf_hz().map(|f| 2.0 * (2.0 * std::f32::consts::PI * f / 8000.0).cos());
    let mut acc = 0.0;
    for chunk in pcm.chunks_exact(102) {
        let (mut s1, mut s2) = ([0f32; 8], [0f32; 8]);
        for &x in chunk {
            let x = f32::from(x);
            for k in 0..8 {
                let s0 = x + coef[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        for k in 0..8 {
            acc += s1[k] * s1[k] + s2[k] * s2[k] - coef[k] * s1[k] * s2[k];
        }
    }
    acc
}

/// Best-of-`runs` throughput in samples per second.
fn throughput(pcm: &[i16], runs: usize, mut f: impl FnMut(&[i16])) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let t = Instant::now();
        f(black_box(pcm));
        best = best.min(t.elapsed().as_secs_f64());
    }
    pcm.len() as f64 / best
}

/// Feeds `pcm` to a detector in [`CHUNK`]-sample chunks.
fn run_detector(mut det: dtmf::Detector, pcm: &[i16]) {
    let mut n = 0;
    for c in pcm.chunks(CHUNK) {
        n += det.push(c).count();
    }
    black_box(n);
}

/// The name of a kernel in the tables.
fn kernel_name(k: dtmf::Kernel) -> &'static str {
    match k {
        dtmf::Kernel::Portable => "portable",
        dtmf::Kernel::Avx2 => "AVX2+FMA",
        dtmf::Kernel::Avx512 => "AVX-512",
    }
}

fn main() {
    let args = Args::parse();
    let speech =
        speech::talk_off_corpus().expect("talk-off corpus (apt-get install espeak-ng sox)");
    let cases = q24::cases();

    // Throughput audio: every Q.24 case then the speech corpus, about 21 minutes.
    let mut audio: Vec<i16> = cases.iter().flat_map(|c| c.audio.iter().copied()).collect();
    audio.extend_from_slice(&speech);
    let minutes = audio.len() as f64 / 8000.0 / 60.0;
    let kernel = kernel_name(dtmf::Kernel::best());
    let all: Vec<&str> = dtmf::Kernel::available()
        .iter()
        .map(|&k| kernel_name(k))
        .collect();
    println!("# DTMF receiver benchmark");
    println!(
        "audio: {:.1} min ({} samples), fed in {CHUNK}-sample chunks, one core, best of 5",
        minutes,
        audio.len()
    );
    println!(
        "callverify kernel: {kernel} (available: {})",
        all.join(", ")
    );
    println!();

    // `dtmf-bench --profile [portable|avx2|avx512]` runs only callverify's detector (in the
    // fastest kernel or the one named), for `perf record`.
    if let Some(which) = args.profile {
        let kernel = match which {
            Profiled::Best => dtmf::Kernel::best(),
            Profiled::Portable => dtmf::Kernel::Portable,
            Profiled::Avx2 => dtmf::Kernel::Avx2,
            Profiled::Avx512 => dtmf::Kernel::Avx512,
        };
        assert!(
            kernel.is_available(),
            "this CPU has no {} kernel",
            kernel_name(kernel)
        );
        let r = throughput(&audio, 20, |pcm| {
            run_detector(dtmf::Detector::new().with_kernel(kernel), pcm);
        });
        println!(
            "callverify Detector ({}): {:.1} Msamples/s",
            kernel_name(kernel),
            r / 1e6
        );
        return;
    }
    throughput_table(&audio);
    quality_table(&cases);
    talk_off_table(&speech);
}

/// Throughput of callverify's receiver in each kernel the CPU has, spandsp's and two bare
/// Goertzel banks.
fn throughput_table(audio: &[i16]) {
    let runs = 5;
    let theirs = throughput(audio, runs, |pcm| {
        let mut rx = Spandsp::new(None);
        let mut d = String::new();
        for c in pcm.chunks(CHUNK) {
            rx.push(c, &mut d);
        }
        black_box(d);
    });
    let kernels: Vec<(dtmf::Kernel, f64)> = dtmf::Kernel::available()
        .iter()
        .map(|&k| {
            let r = throughput(audio, runs, |pcm| {
                run_detector(dtmf::Detector::new().with_kernel(k), pcm);
            });
            (k, r)
        })
        .collect();
    let nostd = throughput(audio, runs, |pcm| {
        black_box(goertzel_nostd_bank(pcm));
    });
    let hand = throughput(audio, runs, |pcm| {
        black_box(goertzel_hand_bank(pcm));
    });
    println!("| receiver | Msamples/s | 8 kHz channels per core | vs spandsp |");
    println!("|---|---:|---:|---:|");
    // The last kernel is the one Detector::new() picks.
    let ours = kernels.last().expect("the portable kernel").1;
    let mut rows = Vec::new();
    for &(k, r) in kernels.iter().rev() {
        rows.push((
            format!(
                "callverify Detector (full receiver), {} kernel",
                kernel_name(k)
            ),
            r,
        ));
    }
    for (name, r) in [
        ("spandsp dtmf_rx (full receiver)", theirs),
        ("goertzel-nostd, 8 filters, no decisions", nostd),
        ("hand-written 8-lane Goertzel, no decisions", hand),
    ] {
        rows.push((name.to_string(), r));
    }
    for (name, r) in rows {
        println!(
            "| {name} | {:.1} | {:.0} | {:.2}x |",
            r / 1e6,
            r / 8000.0,
            r / theirs
        );
    }
    println!();
    println!("ratio callverify / spandsp: {:.2}x", ours / theirs);
    for &(k, r) in &kernels {
        println!(
            "ratio callverify {} / spandsp: {:.2}x",
            kernel_name(k),
            r / theirs
        );
    }
    println!();
}

/// The Q.24 / ES 201 235-3 cases through callverify's receiver and spandsp's.
fn quality_table(cases: &[q24::Case]) {
    println!(
        "| Q.24 / ES 201 235-3 case | expected | callverify | spandsp (default twist) | spandsp (twist 8/4 dB) |"
    );
    println!("|---|---|---|---|---|");
    let mut pass = [0usize; 3];
    for c in cases {
        let got = [
            testaudio::detect_string(&c.audio),
            spandsp_digits(&c.audio, None),
            spandsp_digits(&c.audio, Some((8, 4))),
        ];
        let cell = |g: &String, i: usize, pass: &mut [usize; 3]| {
            if *g == c.expect {
                pass[i] += 1;
                "pass".to_string()
            } else {
                format!("FAIL ({g:?})")
            }
        };
        let cells: Vec<String> = got
            .iter()
            .enumerate()
            .map(|(i, g)| cell(g, i, &mut pass))
            .collect();
        println!(
            "| {} | {:?} | {} | {} | {} |",
            c.name, c.expect, cells[0], cells[1], cells[2]
        );
    }
    println!(
        "| **cases passed** | {} | **{}** | **{}** | **{}** |",
        cases.len(),
        pass[0],
        pass[1],
        pass[2]
    );
    println!();
}

/// Digits found in speech and in speech over music, where there are none.
fn talk_off_table(speech: &[i16]) {
    let as_f64: Vec<f64> = speech.iter().map(|&v| f64::from(v)).collect();
    let music = chords(speech.len() as f64 / 8.0, 450.0, -14.0, 7);
    let mixed = Signal(as_f64).mix(&music, 1.0).pcm();
    println!(
        "| talk-off audio | minutes | callverify digits | spandsp (default) digits | spandsp (8/4 dB) digits |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, pcm) in [
        ("espeak-ng speech, en + ja", speech),
        ("speech + chords", &mixed[..]),
    ] {
        let a = testaudio::detect_string(pcm);
        let b = spandsp_digits(pcm, None);
        let c = spandsp_digits(pcm, Some((8, 4)));
        println!(
            "| {name} | {:.1} | {} {:?} | {} {:?} | {} {:?} |",
            pcm.len() as f64 / 8000.0 / 60.0,
            a.len(),
            a,
            b.len(),
            b,
            c.len(),
            c
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_option() {
        cli_check::help_lists::<Args>(&["profile"]);
    }

    #[test]
    fn unknown_arguments_are_refused() {
        cli_check::refuses_unknown::<Args>();
        // A kernel it does not know.
        assert_eq!(
            cli_check::error_kind::<Args>(&["--profile=yes"]),
            clap::error::ErrorKind::InvalidValue
        );
    }

    #[test]
    fn defaults_are_the_previous_ones() {
        assert_eq!(cli_check::parse::<Args>(&[]), Args { profile: None });
        assert_eq!(
            cli_check::parse::<Args>(&["--profile"]),
            Args {
                profile: Some(Profiled::Best)
            }
        );
        assert_eq!(
            cli_check::parse::<Args>(&["--profile", "avx2"]),
            Args {
                profile: Some(Profiled::Avx2)
            }
        );
    }
}
