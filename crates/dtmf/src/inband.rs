//! The in-band DTMF receiver.
//!
//! Analysis: 102-sample windows (12.75 ms, rectangular: neighbouring row frequencies fall
//! near its first null) hopped every 34 samples. Each 34-sample hop is transformed once at
//! the eight DTMF frequencies by a table-driven DFT, and a window is the phase-rotated sum of
//! its three hops. The per-sample work is a branch-free 16-lane multiply-accumulate with no
//! loop-carried recursion, which vectorises; a Goertzel recursion does the same sums but is
//! bound by its serial dependency chain (see the benchmark).
//!
//! A window is *valid* for a digit when its strongest row and column tones are both above
//! the level floor, within the twist limits, and together hold most of the window's energy.
//! A digit is confirmed after [`CONFIRM_WINDOWS`] consecutive valid windows (so tones of
//! 40 ms pass and 20 ms do not), and only if both tones' frequencies, measured from the phase
//! advance between two overlapping Hann-windowed transforms, lie within 2.5 % of nominal
//! (Q.24: accept ±1.5 %, reject ±3.5 %; magnitude alone cannot separate those in 40 ms). It is
//! released after [`RELEASE_WINDOWS`] windows that are not valid for it, which bridges
//! interruptions of about 10-20 ms and still sees a 40 ms pause.

use crate::digit::{COL_HZ, Digit, DigitEvent, ROW_HZ};

/// The sample rate the detector works at, in Hz.
pub const SAMPLE_RATE: u32 = 8000;

const HOP: usize = 34;
const WIN: usize = 3 * HOP;
/// Consecutive valid windows that confirm a digit (6 hops + a window ≈ 28 ms of tone).
pub const CONFIRM_WINDOWS: u32 = 7;
/// Consecutive windows not valid for the current digit that release it.
pub const RELEASE_WINDOWS: u32 = 6;
/// Hops of history kept for the frequency check (it reads 153 samples ending 2 hops back).
const RING_HOPS: usize = 8;
/// Length of each Hann window of the frequency estimator and the lag between the two.
const EST_WIN: usize = WIN;
const EST_LAG: usize = WIN / 2;
/// The valid windows at the edges of a tone are only partly covered by it; this moves the
/// reported start and end from the window edges towards the tone edges (calibrated by the
/// timing tests).
const EDGE_ADJUST: u64 = 21;

/// 0 dBm0 as the peak amplitude of a sine in 16-bit linear PCM (3.14 dB below full scale).
const DBM0_PEAK: f32 = 22_827.0;

/// The code the per-hop transform runs in. Every kernel gives the same events (the tests hold
/// them to it); they differ in speed only. [`Detector::new`] picks [`Kernel::best`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Plain Rust for the baseline target (separate multiply and add), on every CPU.
    Portable,
    /// x86-64 code compiled for AVX2 and FMA.
    Avx2,
    /// x86-64 code compiled for AVX-512 (F, VL, BW, DQ) and FMA.
    Avx512,
}

impl Kernel {
    /// The kernels this CPU can run, slowest first: always [`Kernel::Portable`], then
    /// [`Kernel::Avx2`] and [`Kernel::Avx512`] where the CPU reports their features.
    pub fn available() -> &'static [Kernel] {
        match (has_avx2_fma(), has_avx512()) {
            (true, true) => &[Kernel::Portable, Kernel::Avx2, Kernel::Avx512],
            (true, false) => &[Kernel::Portable, Kernel::Avx2],
            _ => &[Kernel::Portable],
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        Kernel::available().contains(&self)
    }

    /// The fastest kernel this CPU can run.
    pub fn best() -> Kernel {
        *Kernel::available().last().expect("the portable kernel")
    }
}

/// Tunable receiver limits; [`Default`] is what the Q.24 tests are run with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Lowest level per tone that is accepted, in dBm0.
    pub min_level_dbm0: f32,
    /// Largest normal twist (row louder than column), in dB as measured per window. A loud
    /// row tone leaks through the window's sidelobes into the nearest column bin (941 Hz into
    /// 1209 Hz most), which moves the measured twist by up to about 2 dB with alignment, so
    /// the default is 11 dB to accept a true 8 dB at every alignment.
    pub normal_twist_db: f32,
    /// Largest reverse twist (column louder than row), in dB.
    pub reverse_twist_db: f32,
    /// Share of the window's energy the two tones must hold together (0-1).
    pub min_tone_share: f32,
    /// Largest frequency deviation of either tone, as a fraction of nominal.
    pub max_freq_deviation: f32,
    /// How far, in dB, each group's strongest tone must stand above the second strongest of
    /// its group. Voiced speech is a comb of harmonics, so when two harmonics sit near a row
    /// and a column frequency others usually sit near a neighbouring row or column.
    pub min_group_margin_db: f32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            min_level_dbm0: -33.0,
            normal_twist_db: 11.0,
            reverse_twist_db: 6.0,
            min_tone_share: 0.7,
            max_freq_deviation: 0.025,
            min_group_margin_db: 6.0,
        }
    }
}

/// Thresholds derived from [`Limits`], in the units the window arithmetic uses.
#[derive(Clone, Copy, Debug)]
struct Thresholds {
    /// Minimum |X|² of a tone for a 102-sample window.
    min_power: f32,
    normal_twist: f32,
    reverse_twist: f32,
    /// (|Xr|² + |Xc|²) must be at least this times the window's sum of squares.
    share: f32,
    max_dev: f32,
    group_margin: f32,
}

impl Thresholds {
    fn from(limits: &Limits) -> Self {
        let amp = DBM0_PEAK * 10f32.powf(limits.min_level_dbm0 / 20.0);
        let half_win = WIN as f32 / 2.0;
        Thresholds {
            min_power: (amp * half_win) * (amp * half_win),
            normal_twist: 10f32.powf(limits.normal_twist_db / 10.0),
            reverse_twist: 10f32.powf(limits.reverse_twist_db / 10.0),
            // A tone of amplitude A fills a window with W·A²/2 and gives |X|² = (W·A/2)².
            share: limits.min_tone_share * half_win,
            max_dev: limits.max_freq_deviation,
            group_margin: 10f32.powf(limits.min_group_margin_db / 10.0),
        }
    }
}

/// Sample pairs of a hop: sample n and sample HOP-1-n, the same distance either side of the
/// hop's centre.
const PAIRS: usize = HOP / 2;

/// Per-hop DFT coefficients, with the phase origin at the hop's centre. Pair n's samples lie
/// at t = ±(n - 16.5), so the pair contributes (x_n + x_m)·cos(w_k t) to the real part and
/// (x_n - x_m)·(-sin(w_k t)) to the imaginary part at each frequency k: the cosines in
/// lanes 0-7 and the sines in lanes 8-15, k over the eight DTMF frequencies (rows then
/// columns). The symmetry halves the multiply-adds of a hop.
type HopTable = [[f32; 16]; PAIRS];

struct Tables {
    hop: HopTable,
    /// `hop` transposed for pairs 0-15: row k holds lane k of every pair (rows 0-7 the
    /// cosines, 8-15 the sines), for the AVX2 kernel, which puts pairs in lanes.
    hop_t: [[f32; 16]; 16],
    /// e^{-j w_k 34}: one hop's phase advance. A window is centred on its middle hop, so
    /// the oldest hop is turned by its conjugate and the newest by it.
    rot_re: [f32; 8],
    rot_im: [f32; 8],
    /// Hann-windowed cos and -sin at each frequency, for the frequency estimator.
    est_cos: [[f32; EST_WIN]; 8],
    est_sin: [[f32; EST_WIN]; 8],
    /// w_k · EST_LAG, the phase a tone at exactly nominal advances between the two windows.
    est_phase: [f32; 8],
}

fn freq(k: usize) -> f32 {
    if k < 4 { ROW_HZ[k] } else { COL_HZ[k - 4] }
}

impl Tables {
    fn new() -> Self {
        let mut t = Tables {
            hop: [[0.0; 16]; PAIRS],
            hop_t: [[0.0; 16]; 16],
            rot_re: [0.0; 8],
            rot_im: [0.0; 8],
            est_cos: [[0.0; EST_WIN]; 8],
            est_sin: [[0.0; EST_WIN]; 8],
            est_phase: [0.0; 8],
        };
        for k in 0..8 {
            let w = 2.0 * std::f64::consts::PI * f64::from(freq(k)) / f64::from(SAMPLE_RATE);
            for n in 0..PAIRS {
                let t_n = n as f64 - (HOP as f64 - 1.0) / 2.0;
                t.hop[n][k] = (w * t_n).cos() as f32;
                t.hop[n][8 + k] = -(w * t_n).sin() as f32;
            }
            let h = HOP as f64;
            t.rot_re[k] = (w * h).cos() as f32;
            t.rot_im[k] = -(w * h).sin() as f32;
            for n in 0..EST_WIN {
                let hann = 0.5
                    - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / (EST_WIN as f64 - 1.0)).cos();
                t.est_cos[k][n] = (hann * (w * n as f64).cos()) as f32;
                t.est_sin[k][n] = (-hann * (w * n as f64).sin()) as f32;
            }
            t.est_phase[k] = (w * EST_LAG as f64) as f32;
        }
        for (l, row) in t.hop_t.iter_mut().enumerate() {
            for (n, c) in row.iter_mut().enumerate() {
                *c = t.hop[n][l];
            }
        }
        t
    }
}

fn tables() -> &'static Tables {
    static TABLES: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
    TABLES.get_or_init(Tables::new)
}

/// One hop's DFT at the eight frequencies (re in lanes 0-7, im in 8-15, phase origin at the
/// hop's centre) and its sum of squares: the portable kernel.
///
/// Per pair, the pair's sum times a row of cosines and its difference times a row of sines.
/// Four accumulator sets, one per pair mod 4, keep four independent add chains in flight:
/// with one set the add latency, not the arithmetic, sets the pace. The AVX-512 kernel (see
/// [`x86`]) does the same sums in the same order with fused multiply-adds; the AVX2 one
/// sums the pairs in lanes instead.
fn hop_dft_portable(table: &HopTable, x: &[i16; HOP]) -> ([f32; 16], f32) {
    let xf: [f32; HOP] = std::array::from_fn(|n| f32::from(x[n]));
    let mut acc = [[0f32; 16]; 4];
    for (n, row) in table.iter().enumerate() {
        // Exact in f32: at most 2^16 in magnitude.
        let (sum, diff) = (xf[n] + xf[HOP - 1 - n], xf[n] - xf[HOP - 1 - n]);
        let a = &mut acc[n % 4];
        for k in 0..8 {
            a[k] += sum * row[k];
            a[8 + k] += diff * row[8 + k];
        }
    }
    let mut out = [0f32; 16];
    for l in 0..16 {
        out[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    }
    (out, energy_portable(&xf))
}

/// The power at each frequency of the window made of hops `a`, `b` and `c` (oldest first):
/// the window centred on its middle hop, a·conj(r) + b + c·r with r = e^{-j w 34}. Plain
/// multiplies and adds, in this order, in every kernel.
fn window_power_portable(t: &Tables, a: &[f32; 16], b: &[f32; 16], c: &[f32; 16]) -> [f32; 8] {
    std::array::from_fn(|k| {
        let (cos, sin) = (t.rot_re[k], t.rot_im[k]);
        let re = b[k] + cos * (a[k] + c[k]) + sin * (a[8 + k] - c[8 + k]);
        let im = b[8 + k] + cos * (a[8 + k] + c[8 + k]) + sin * (c[k] - a[k]);
        re * re + im * im
    })
}

/// What a kernel computes for a hop: its transform and sum of squares, and the power at each
/// frequency of the window it completes (meaningless for the first two hops).
#[derive(Clone, Copy, Debug)]
struct HopOut {
    dft: [f32; 16],
    energy: f32,
    power: [f32; 8],
}

/// A hop's sum of squares, in eight lanes: samples 0-7, 8-15, 18-25 and 26-33 lane-wise,
/// the lanes summed pairwise, then samples 16 and 17 (the order the x86 kernels use).
fn energy_portable(xf: &[f32; HOP]) -> f32 {
    let mut sq = [0f32; 8];
    for from in [0, 8, 18, 26] {
        for i in 0..8 {
            sq[i] += xf[from + i] * xf[from + i];
        }
    }
    let quad: [f32; 4] = std::array::from_fn(|i| sq[i] + sq[4 + i]);
    let (a, b) = (quad[0] + quad[2], quad[1] + quad[3]);
    (a + b) + xf[16] * xf[16] + xf[17] * xf[17]
}

/// The AVX2 and AVX-512 hop kernels. The AVX-512 one does the portable kernel's sums, in
/// its order, with fused multiply-adds; the AVX2 one puts pairs in lanes (see
/// [`hop_dft_avx2`]). They agree with the portable one to rounding, and every kernel gives
/// the same events on every test case. Loads and stores go through `_mm256_setr_*` and
/// lane extracts, which the compiler turns into plain vector loads and stores, so that no
/// unsafe code is needed here.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{HOP, HopTable, PAIRS, Tables};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    fn load8(a: &[f32]) -> __m256 {
        _mm256_setr_ps(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7])
    }

    /// Eight samples from `x[from..]` as f32.
    #[target_feature(enable = "avx2,fma")]
    fn samples8(x: &[i16; HOP], from: usize) -> __m256 {
        let x = &x[from..from + 8];
        let v = _mm_setr_epi16(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7]);
        _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(v))
    }

    #[target_feature(enable = "avx2,fma")]
    fn to_array(v: __m256) -> [f32; 8] {
        let (lo, hi) = (_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let lane = |v: __m128, i: i32| -> f32 {
            f32::from_bits(match i {
                0 => _mm_extract_ps::<0>(v),
                1 => _mm_extract_ps::<1>(v),
                2 => _mm_extract_ps::<2>(v),
                _ => _mm_extract_ps::<3>(v),
            } as u32)
        };
        [
            lane(lo, 0),
            lane(lo, 1),
            lane(lo, 2),
            lane(lo, 3),
            lane(hi, 0),
            lane(hi, 1),
            lane(hi, 2),
            lane(hi, 3),
        ]
    }

    /// The pairs' sums and differences (pairs 0-15; pair 16 is samples 16 and 17) and the
    /// hop's sum of squares.
    #[target_feature(enable = "avx2,fma")]
    fn prepare(x: &[i16; HOP]) -> ([__m256; 2], [__m256; 2], f32) {
        let rev = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
        let (a0, a1) = (samples8(x, 0), samples8(x, 8));
        let (b0, b1) = (samples8(x, 18), samples8(x, 26));
        // Pair n is samples n and 33-n: samples 26-33 reversed pair with 0-7.
        let (m0, m1) = (
            _mm256_permutevar8x32_ps(b1, rev),
            _mm256_permutevar8x32_ps(b0, rev),
        );
        let sum = [_mm256_add_ps(a0, m0), _mm256_add_ps(a1, m1)];
        let diff = [_mm256_sub_ps(a0, m0), _mm256_sub_ps(a1, m1)];
        let mut sq = _mm256_mul_ps(a0, a0);
        sq = _mm256_fmadd_ps(a1, a1, sq);
        sq = _mm256_fmadd_ps(b0, b0, sq);
        sq = _mm256_fmadd_ps(b1, b1, sq);
        let quad = _mm_add_ps(_mm256_castps256_ps128(sq), _mm256_extractf128_ps::<1>(sq));
        let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let one = _mm_add_ss(pair, _mm_movehdup_ps(pair));
        let (x16, x17) = (f32::from(x[16]), f32::from(x[17]));
        let energy = x17.mul_add(x17, x16.mul_add(x16, _mm_cvtss_f32(one)));
        (sum, diff, energy)
    }

    /// Pair 16's sum and difference.
    fn last_pair(x: &[i16; HOP]) -> (f32, f32) {
        let (a, b) = (f32::from(x[16]), f32::from(x[17]));
        (a + b, a - b)
    }

    /// Eight vectors' sums of lanes, as one vector (lane k: the sum of `v[k]`).
    #[target_feature(enable = "avx2,fma")]
    fn sums8(v: &[__m256; 8]) -> __m256 {
        let (h01, h23) = (_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
        let (h45, h67) = (_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
        let (lo, hi) = (_mm256_hadd_ps(h01, h23), _mm256_hadd_ps(h45, h67));
        _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(lo, hi),
            _mm256_permute2f128_ps::<0x31>(lo, hi),
        )
    }

    /// Pairs in lanes: per frequency, pairs 0-7 and 8-15 times their coefficients (from
    /// the transposed table), the lanes summed, then pair 16. No broadcast per pair, which
    /// on AVX2 costs a lane shuffle each and made the shuffle port the limit.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn hop_dft_avx2(t: &Tables, x: &[i16; HOP]) -> ([f32; 16], f32) {
        let (sum, diff, energy) = prepare(x);
        let part = |v: [__m256; 2], from: usize| -> __m256 {
            let terms: [__m256; 8] = std::array::from_fn(|k| {
                let row = &t.hop_t[from + k];
                _mm256_fmadd_ps(
                    v[1],
                    load8(&row[8..]),
                    _mm256_mul_ps(v[0], load8(&row[..8])),
                )
            });
            sums8(&terms)
        };
        let (re, im) = (part(sum, 0), part(diff, 8));
        let (sn, dn) = last_pair(x);
        let row = &t.hop[PAIRS - 1];
        let re = _mm256_fmadd_ps(_mm256_set1_ps(sn), load8(&row[..8]), re);
        let im = _mm256_fmadd_ps(_mm256_set1_ps(dn), load8(&row[8..]), im);
        let mut out = [0f32; 16];
        out[..8].copy_from_slice(&to_array(re));
        out[8..].copy_from_slice(&to_array(im));
        (out, energy)
    }

    /// [`super::window_power_portable`]'s operations, eight lanes at a time (no fused
    /// multiply-adds, so that every kernel gets the same powers from the same transforms).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn window_power(
        t: &Tables,
        a: &[f32; 16],
        b: &[f32; 16],
        c: &[f32; 16],
    ) -> [f32; 8] {
        let (cos, sin) = (load8(&t.rot_re), load8(&t.rot_im));
        let (ar, ai) = (load8(&a[..8]), load8(&a[8..]));
        let (br, bi) = (load8(&b[..8]), load8(&b[8..]));
        let (cr, ci) = (load8(&c[..8]), load8(&c[8..]));
        let re = _mm256_add_ps(
            _mm256_add_ps(br, _mm256_mul_ps(cos, _mm256_add_ps(ar, cr))),
            _mm256_mul_ps(sin, _mm256_sub_ps(ai, ci)),
        );
        let im = _mm256_add_ps(
            _mm256_add_ps(bi, _mm256_mul_ps(cos, _mm256_add_ps(ai, ci))),
            _mm256_mul_ps(sin, _mm256_sub_ps(cr, ar)),
        );
        to_array(_mm256_add_ps(_mm256_mul_ps(re, re), _mm256_mul_ps(im, im)))
    }

    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    fn load16(a: &[f32; 16]) -> __m512 {
        _mm512_setr_ps(
            a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13],
            a[14], a[15],
        )
    }

    /// The portable kernel's sums, both halves of a table row in one 512-bit
    /// multiply-add: the multiplier (pair sum in lanes 0-7, difference in 8-15) is one
    /// two-source permute of the sums and differences.
    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    pub(super) fn hop_dft_avx512(table: &HopTable, x: &[i16; HOP]) -> ([f32; 16], f32) {
        let (sum, diff, energy) = prepare(x);
        let s = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(sum[0]), sum[1]);
        let d = _mm512_insertf32x8::<1>(_mm512_castps256_ps512(diff[0]), diff[1]);
        // Lanes 0-7 pick sum n (index n), lanes 8-15 difference n (index 16 + n).
        let mut idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
        let one = _mm512_set1_epi32(1);
        let mut acc = [_mm512_setzero_ps(); 4];
        for n in (0..PAIRS - 1).step_by(4) {
            for (j, a) in acc.iter_mut().enumerate() {
                let m = _mm512_permutex2var_ps(s, idx, d);
                *a = _mm512_fmadd_ps(m, load16(&table[n + j]), *a);
                idx = _mm512_add_epi32(idx, one);
            }
        }
        let (sn, dn) = last_pair(x);
        let m = _mm512_insertf32x8::<1>(_mm512_set1_ps(sn), _mm256_set1_ps(dn));
        acc[0] = _mm512_fmadd_ps(m, load16(&table[PAIRS - 1]), acc[0]);
        let total = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        let (r, i) = (
            to_array(_mm512_castps512_ps256(total)),
            to_array(_mm512_extractf32x8_ps::<1>(total)),
        );
        let mut out = [0f32; 16];
        out[..8].copy_from_slice(&r);
        out[8..].copy_from_slice(&i);
        (out, energy)
    }
}

/// A run of consecutive windows valid for the same digit.
#[derive(Clone, Copy, Debug)]
struct Run {
    digit: Digit,
    len: u32,
    /// First sample of the run's first window.
    first_window_start: u64,
    /// The frequency check was made for this run (pass or fail).
    checked: bool,
}

#[derive(Clone, Copy, Debug)]
struct Active {
    digit: Digit,
    start: u64,
    /// End (exclusive) of the last window that was valid for the digit.
    last_valid_end: u64,
    misses: u32,
}

/// A fixed queue of events waiting to be taken; the detector produces at most two per hop.
#[derive(Clone, Copy, Debug, Default)]
struct Pending {
    items: [Option<DigitEvent>; 4],
    head: usize,
    len: usize,
}

impl Pending {
    fn push(&mut self, e: DigitEvent) {
        // Feeding stops after any hop that queued events (at most two) until they are taken
        // or discarded, so the queue never fills; should that change, keep the newest.
        debug_assert!(self.len < self.items.len(), "pending event queue overflow");
        if self.len == self.items.len() {
            self.head = (self.head + 1) % self.items.len();
            self.len -= 1;
        }
        let i = (self.head + self.len) % self.items.len();
        self.items[i] = Some(e);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<DigitEvent> {
        if self.len == 0 {
            return None;
        }
        let e = self.items[self.head].take();
        self.head = (self.head + 1) % self.items.len();
        self.len -= 1;
        e
    }
}

/// The in-band DTMF receiver for one 8 kHz audio stream (see the module docs for the method).
///
/// Sans-IO: [`push`](Detector::push) takes samples in chunks of any size and returns the
/// events they complete; times are sample offsets from the first sample pushed. It does not
/// allocate after construction.
pub struct Detector {
    tables: &'static Tables,
    /// Where the hop step runs; only ever a kernel the CPU can run.
    kernel: Kernel,
    th: Thresholds,
    ring: [[i16; HOP]; RING_HOPS],
    fill: usize,
    /// Hops completed so far.
    hops: u64,
    /// The last three hops' DFTs and sums of squares, indexed by hop number mod 3.
    sub: [[f32; 16]; 3],
    sub_energy: [f32; 3],
    run: Option<Run>,
    active: Option<Active>,
    pending: Pending,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new()
    }
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("samples", &self.samples_seen())
            .field("active", &self.active.map(|a| a.digit))
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// A detector with the default [`Limits`].
    pub fn new() -> Self {
        Detector::with_limits(Limits::default())
    }

    /// A detector with custom limits (e.g. a higher level floor on noisy trunks).
    pub fn with_limits(limits: Limits) -> Self {
        Detector {
            tables: tables(),
            kernel: Kernel::best(),
            th: Thresholds::from(&limits),
            ring: [[0; HOP]; RING_HOPS],
            fill: 0,
            hops: 0,
            sub: [[0.0; 16]; 3],
            sub_energy: [0.0; 3],
            run: None,
            active: None,
            pending: Pending::default(),
        }
    }

    /// Runs the hop step in `kernel` instead of the fastest one (for tests and benchmarks
    /// that compare them).
    ///
    /// # Panics
    ///
    /// If this CPU cannot run `kernel` (see [`Kernel::available`]).
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        assert!(
            kernel.is_available(),
            "the {kernel:?} DTMF kernel needs CPU features this machine lacks"
        );
        self.kernel = kernel;
        self
    }

    /// The kernel the hop step runs in.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Number of samples pushed so far.
    pub fn samples_seen(&self) -> u64 {
        self.hops * HOP as u64 + self.fill as u64
    }

    /// The digit currently held down, if any.
    pub fn active(&self) -> Option<Digit> {
        self.active.map(|a| a.digit)
    }

    /// Feeds samples; the returned iterator yields the events they complete.
    ///
    /// The whole chunk is consumed even if the iterator is dropped early; events not taken
    /// from it are then lost (a key still held is released by a later push or by
    /// [`finish`](Detector::finish)).
    pub fn push<'a>(&'a mut self, samples: &'a [i16]) -> DetectorEvents<'a> {
        DetectorEvents {
            det: self,
            input: samples,
        }
    }

    /// Ends the stream: releases a digit still held down (its end is the last sample seen).
    pub fn finish(&mut self) -> Option<DigitEvent> {
        let a = self.active.take()?;
        self.run = None;
        let end = self.samples_seen().max(a.start + 1);
        Some(DigitEvent::Released {
            digit: a.digit,
            start: a.start,
            end,
        })
    }

    /// Consumes samples from the front of `input` until it is used up or an event is
    /// pending; returns the number of samples taken.
    fn feed(&mut self, input: &[i16]) -> usize {
        match self.kernel {
            Kernel::Portable => {
                let t = self.tables;
                self.feed_with(input, |x, a, b| {
                    let (dft, energy) = hop_dft_portable(&t.hop, x);
                    let power = window_power_portable(t, a, b, &dft);
                    HopOut { dft, energy, power }
                })
            }
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `kernel` is Avx2 only when the CPU reports AVX2 and FMA.
            #[allow(unsafe_code)]
            Kernel::Avx2 => unsafe { self.feed_avx2(input) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `kernel` is Avx512 only when the CPU reports AVX-512 F, VL, BW, DQ
            // and FMA.
            #[allow(unsafe_code)]
            Kernel::Avx512 => unsafe { self.feed_avx512(input) },
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Avx512 => unreachable!("x86-64 kernel on another CPU"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn feed_avx2(&mut self, input: &[i16]) -> usize {
        let t = self.tables;
        self.feed_with(input, |x, a, b| {
            let (dft, energy) = x86::hop_dft_avx2(t, x);
            let power = x86::window_power(t, a, b, &dft);
            HopOut { dft, energy, power }
        })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    fn feed_avx512(&mut self, input: &[i16]) -> usize {
        let t = self.tables;
        self.feed_with(input, |x, a, b| {
            let (dft, energy) = x86::hop_dft_avx512(&t.hop, x);
            let power = x86::window_power(t, a, b, &dft);
            HopOut { dft, energy, power }
        })
    }

    #[inline(always)]
    fn feed_with(
        &mut self,
        input: &[i16],
        kernel: impl Fn(&[i16; HOP], &[f32; 16], &[f32; 16]) -> HopOut,
    ) -> usize {
        let mut taken = 0;
        // Complete a hop begun by an earlier chunk.
        if self.fill > 0 {
            let slot = self.slot();
            let n = (HOP - self.fill).min(input.len());
            self.ring[slot][self.fill..self.fill + n].copy_from_slice(&input[..n]);
            self.fill += n;
            taken = n;
            if self.fill < HOP {
                return taken;
            }
            let hop = self.ring[slot];
            let (a, b) = self.previous_two();
            self.hop(kernel(&hop, &a, &b));
        }
        // Whole hops straight from the input: transforming them from the caller's slice,
        // not from the ring just written, avoids a store-forwarding stall.
        while self.pending.len == 0 && input.len() - taken >= HOP {
            let hop: &[i16; HOP] = input[taken..taken + HOP].try_into().expect("HOP samples");
            let slot = self.slot();
            self.ring[slot] = *hop;
            let (a, b) = self.previous_two();
            self.hop(kernel(hop, &a, &b));
            taken += HOP;
        }
        // Start the next hop with what is left.
        if self.pending.len == 0 && taken < input.len() {
            let rest = &input[taken..];
            let slot = self.slot();
            self.ring[slot][..rest.len()].copy_from_slice(rest);
            self.fill = rest.len();
            taken = input.len();
        }
        taken
    }

    /// The ring slot of the hop being filled.
    fn slot(&self) -> usize {
        (self.hops % RING_HOPS as u64) as usize
    }

    /// Takes a full hop's transform and classifies the window it completes.
    #[inline(always)]
    fn hop(&mut self, out: HopOut) {
        let i = (self.hops % 3) as usize;
        self.sub[i] = out.dft;
        self.sub_energy[i] = out.energy;
        self.hops += 1;
        self.fill = 0;
        if self.hops >= 3 {
            let valid = self.classify(&out.power);
            self.window(valid);
        }
    }

    /// The transforms of the two hops before the one being completed, oldest first.
    fn previous_two(&self) -> ([f32; 16], [f32; 16]) {
        let h = self.hops as usize;
        (self.sub[(h + 1) % 3], self.sub[(h + 2) % 3])
    }

    /// Updates the key state with the classification of the window ending now.
    fn window(&mut self, valid: Option<Digit>) {
        let end = self.hops * HOP as u64;
        let start = end - WIN as u64;

        // Extend or restart the run of identical valid windows.
        self.run = match (valid, self.run) {
            (Some(d), Some(mut r)) if r.digit == d => {
                r.len += 1;
                Some(r)
            }
            (Some(d), _) => Some(Run {
                digit: d,
                len: 1,
                first_window_start: start,
                checked: false,
            }),
            (None, _) => None,
        };

        if let Some(a) = &mut self.active {
            if valid == Some(a.digit) {
                a.misses = 0;
                a.last_valid_end = end;
            } else {
                a.misses += 1;
                if a.misses >= RELEASE_WINDOWS {
                    let released = DigitEvent::Released {
                        digit: a.digit,
                        start: a.start,
                        end: (a.last_valid_end - EDGE_ADJUST).max(a.start + 1),
                    };
                    self.pending.push(released);
                    self.active = None;
                }
            }
        }

        if self.active.is_none()
            && let Some(r) = &mut self.run
            && r.len >= CONFIRM_WINDOWS
            && !r.checked
        {
            r.checked = true;
            let run = *r;
            if self.frequencies_ok(run.digit) {
                let tone_start = run.first_window_start + EDGE_ADJUST;
                self.active = Some(Active {
                    digit: run.digit,
                    start: tone_start,
                    last_valid_end: end,
                    misses: 0,
                });
                self.pending.push(DigitEvent::Pressed {
                    digit: run.digit,
                    start: tone_start,
                });
            }
        }
    }

    /// The digit the window made of the last three hops is valid for, if any, from the
    /// power at each frequency.
    #[inline(always)]
    fn classify(&self, power: &[f32; 8]) -> Option<Digit> {
        let n = self.hops as usize;
        let (i0, i1, i2) = ((n - 3) % 3, (n - 2) % 3, (n - 1) % 3);
        let energy = self.sub_energy[i0] + self.sub_energy[i1] + self.sub_energy[i2];
        // Two tones at the floor hold at least 2·min_power / (W/2) of energy.
        if energy * (WIN as f32 / 2.0) < 2.0 * self.th.min_power {
            return None;
        }
        let (row, pr, pr2) = top_two([power[0], power[1], power[2], power[3]]);
        let (col, pc, pc2) = top_two([power[4], power[5], power[6], power[7]]);
        let th = &self.th;
        // One branch for all the tests: in speech each of them fails now and then, and
        // mispredicted early exits cost more than the arithmetic they skip.
        let valid = (pr >= th.min_power)
            & (pc >= th.min_power)
            & (pr <= pc * th.normal_twist)
            & (pc <= pr * th.reverse_twist)
            & (pr + pc >= th.share * energy)
            & (pr2 * th.group_margin <= pr)
            & (pc2 * th.group_margin <= pc);
        valid.then(|| Digit::at(row, col))
    }

    /// Measures both tones of `digit` over recent history and checks their deviation.
    ///
    /// Reads 153 samples ending two hops before the newest one: the newest window may be
    /// only partly covered by a tone that is ending, and the run's first window by one that
    /// is starting, but with [`CONFIRM_WINDOWS`] valid windows this span is inside the tone.
    fn frequencies_ok(&self, digit: Digit) -> bool {
        let mut buf = [0f32; EST_WIN + EST_LAG];
        let newest = self.hops - 1;
        let first_hop = newest - 2 - (buf.len().div_ceil(HOP) as u64 - 1);
        let skip = buf.len().div_ceil(HOP) * HOP - buf.len();
        let mut i = 0;
        for h in first_hop..=newest - 2 {
            let hop = &self.ring[(h % RING_HOPS as u64) as usize];
            let from = if h == first_hop { skip } else { 0 };
            for &s in &hop[from..] {
                buf[i] = f32::from(s);
                i += 1;
            }
        }
        debug_assert_eq!(i, buf.len());
        let (r, c) = digit.keypad_position();
        [r, 4 + c].into_iter().all(|k| {
            let dev = self.deviation(k, &buf);
            dev.abs() <= self.th.max_dev * freq(k)
        })
    }

    /// Offset in Hz of the tone near frequency `k` from the phase advance between two
    /// Hann-windowed transforms `EST_LAG` samples apart (unambiguous within ±78 Hz).
    fn deviation(&self, k: usize, buf: &[f32; EST_WIN + EST_LAG]) -> f32 {
        let t = self.tables;
        let dft = |from: usize| {
            let (mut re, mut im) = (0f32, 0f32);
            for n in 0..EST_WIN {
                re += buf[from + n] * t.est_cos[k][n];
                im += buf[from + n] * t.est_sin[k][n];
            }
            (re, im)
        };
        let (a, b) = (dft(0), dft(EST_LAG));
        // b · conj(a) rotated back by the nominal advance leaves the deviation's advance.
        let (pr, pi) = (b.0 * a.0 + b.1 * a.1, b.1 * a.0 - b.0 * a.1);
        let (c, s) = (t.est_phase[k].cos(), -t.est_phase[k].sin());
        let (qr, qi) = (pr * c - pi * s, pr * s + pi * c);
        let phase = qi.atan2(qr);
        phase * SAMPLE_RATE as f32 / (2.0 * std::f32::consts::PI * EST_LAG as f32)
    }
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2_fma()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The index of the largest of `v` (the first on a tie), its value and the largest of the
/// other three; by a tournament that compiles to selects, not branches.
#[inline(always)]
fn top_two(v: [f32; 4]) -> (usize, f32, f32) {
    let pick = |i: usize, j: usize| {
        if v[j] > v[i] {
            (j, v[j], v[i])
        } else {
            (i, v[i], v[j])
        }
    };
    let ((i, a, a2), (j, b, b2)) = (pick(0, 1), pick(2, 3));
    if b > a {
        (j, b, if b2 > a { b2 } else { a })
    } else {
        (i, a, if a2 > b { a2 } else { b })
    }
}

/// The events completed by one [`Detector::push`]; see there.
pub struct DetectorEvents<'a> {
    det: &'a mut Detector,
    input: &'a [i16],
}

impl Iterator for DetectorEvents<'_> {
    type Item = DigitEvent;

    fn next(&mut self) -> Option<DigitEvent> {
        loop {
            if let Some(e) = self.det.pending.pop() {
                return Some(e);
            }
            if self.input.is_empty() {
                return None;
            }
            let n = self.det.feed(self.input);
            self.input = &self.input[n..];
        }
    }
}

impl Drop for DetectorEvents<'_> {
    fn drop(&mut self) {
        // Feeding stops at each event, so discard them as they come.
        loop {
            while self.det.pending.pop().is_some() {}
            if self.input.is_empty() {
                return;
            }
            let n = self.det.feed(self.input);
            self.input = &self.input[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(f: &[(f32, f32)], ms: u32) -> Vec<i16> {
        let n = (ms * SAMPLE_RATE / 1000) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                f.iter()
                    .map(|(hz, amp)| amp * (2.0 * std::f32::consts::PI * hz * t).sin())
                    .sum::<f32>() as i16
            })
            .collect()
    }

    #[test]
    fn kernels_agree() {
        let x: Vec<i16> = (0..3 * HOP)
            .map(|i| ((i * 7919) % 2001) as i16 - 1000)
            .collect();
        let state = |k: Kernel| {
            let mut det = Detector::new().with_kernel(k);
            drop(det.push(&x));
            (det.sub, det.sub_energy)
        };
        let (a, ea) = state(Kernel::Portable);
        for &k in Kernel::available() {
            let (b, eb) = state(k);
            for h in 0..3 {
                for l in 0..16 {
                    assert!(
                        (a[h][l] - b[h][l]).abs() < 1e-2 * a[h][l].abs().max(1.0),
                        "{k:?} hop {h} lane {l}: {} vs {}",
                        a[h][l],
                        b[h][l]
                    );
                }
                assert!((ea[h] - eb[h]).abs() < 1e-4 * ea[h], "{k:?} hop {h} energy");
            }
        }
        // The kernels sum in different orders (the AVX2 one pairs in lanes, the others
        // frequencies), so they agree to rounding, as checked; tests/kernels.rs holds them
        // to the same events.
    }

    #[test]
    fn estimator_reads_offsets() {
        let mut det = Detector::new();
        for (k, dev) in [
            (0usize, 0.0f32),
            (0, 10.0),
            (3, -20.0),
            (7, 40.0),
            (7, -55.0),
        ] {
            let f = freq(k) + dev;
            let samples = tone(&[(f, 8000.0)], 40);
            let buf: [f32; EST_WIN + EST_LAG] =
                std::array::from_fn(|i| f32::from(samples[100 + i]));
            let got = det.deviation(k, &buf);
            assert!((got - dev).abs() < 1.0, "k={k} dev={dev} got={got}");
        }
        det.finish();
    }

    #[test]
    fn chunking_does_not_change_events() {
        let (r, c) = Digit::D5.frequencies();
        let mut audio = tone(&[(r, 7000.0), (c, 7000.0)], 90);
        audio.extend(vec![0; 400]);
        let whole: Vec<_> = Detector::new().push(&audio).collect();
        let mut det = Detector::new();
        let mut pieces = Vec::new();
        for chunk in audio.chunks(7) {
            pieces.extend(det.push(chunk));
        }
        assert_eq!(whole, pieces);
        assert_eq!(whole.len(), 2);
    }

    #[test]
    fn dropped_iterator_still_consumes_the_chunk() {
        let mut det = Detector::new();
        drop(det.push(&[0; 1000]));
        assert_eq!(det.samples_seen(), 1000);
        // With digits in it too: the events are discarded, the state still advances.
        let (r, c) = Digit::D3.frequencies();
        let mut audio = Vec::new();
        for _ in 0..3 {
            audio.extend(tone(&[(r, 7000.0), (c, 7000.0)], 80));
            audio.extend(vec![0; 600]);
        }
        audio.extend(tone(&[(r, 7000.0), (c, 7000.0)], 80));
        let mut det = Detector::new();
        drop(det.push(&audio));
        assert_eq!(det.samples_seen(), audio.len() as u64);
        assert_eq!(det.active(), Some(Digit::D3));
        assert!(matches!(
            det.finish(),
            Some(DigitEvent::Released {
                digit: Digit::D3,
                ..
            })
        ));
    }
}
