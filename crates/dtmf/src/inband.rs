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

/// Per-hop DFT coefficients: for sample n of a hop, cos(w_k n) in lanes 0-7 and -sin(w_k n)
/// in lanes 8-15, k over the eight DTMF frequencies (rows then columns).
type HopTable = [[f32; 16]; HOP];

struct Tables {
    hop: HopTable,
    /// e^{-j w_k 34} and e^{-j w_k 68} (real and imaginary parts in separate lanes): bring
    /// hop 1 and hop 2 of a window to its phase origin.
    rot1_re: [f32; 8],
    rot1_im: [f32; 8],
    rot2_re: [f32; 8],
    rot2_im: [f32; 8],
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
            hop: [[0.0; 16]; HOP],
            rot1_re: [0.0; 8],
            rot1_im: [0.0; 8],
            rot2_re: [0.0; 8],
            rot2_im: [0.0; 8],
            est_cos: [[0.0; EST_WIN]; 8],
            est_sin: [[0.0; EST_WIN]; 8],
            est_phase: [0.0; 8],
        };
        for k in 0..8 {
            let w = 2.0 * std::f64::consts::PI * f64::from(freq(k)) / f64::from(SAMPLE_RATE);
            for n in 0..HOP {
                t.hop[n][k] = (w * n as f64).cos() as f32;
                t.hop[n][8 + k] = -(w * n as f64).sin() as f32;
            }
            let h = HOP as f64;
            t.rot1_re[k] = (w * h).cos() as f32;
            t.rot1_im[k] = -(w * h).sin() as f32;
            t.rot2_re[k] = (w * 2.0 * h).cos() as f32;
            t.rot2_im[k] = -(w * 2.0 * h).sin() as f32;
            for n in 0..EST_WIN {
                let hann = 0.5
                    - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / (EST_WIN as f64 - 1.0)).cos();
                t.est_cos[k][n] = (hann * (w * n as f64).cos()) as f32;
                t.est_sin[k][n] = (-hann * (w * n as f64).sin()) as f32;
            }
            t.est_phase[k] = (w * EST_LAG as f64) as f32;
        }
        t
    }
}

fn tables() -> &'static Tables {
    static TABLES: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
    TABLES.get_or_init(Tables::new)
}

#[inline(always)]
fn mac<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// One hop's DFT at the eight frequencies (re in lanes 0-7, im in 8-15) and its sum of
/// squares. Four accumulator sets, one per sample mod 4, keep four independent add chains
/// in flight: with one set the multiply-add latency, not the arithmetic, sets the pace.
#[inline(always)]
fn hop_dft<const FMA: bool>(table: &HopTable, x: &[i16; HOP]) -> ([f32; 16], f32) {
    let mut acc = [[0f32; 16]; 4];
    let mut xf = [0f32; 40];
    for n in 0..HOP {
        xf[n] = f32::from(x[n]);
    }
    for n in (0..HOP - HOP % 4).step_by(4) {
        for (j, a) in acc.iter_mut().enumerate() {
            for k in 0..16 {
                a[k] = mac::<FMA>(xf[n + j], table[n + j][k], a[k]);
            }
        }
    }
    for n in HOP - HOP % 4..HOP {
        for k in 0..16 {
            acc[n % 4][k] = mac::<FMA>(xf[n], table[n][k], acc[n % 4][k]);
        }
    }
    // Lane-wise partial sums vectorise; a single scalar accumulator would not.
    let mut sq = [0f32; 8];
    for chunk in xf.chunks_exact(8) {
        for i in 0..8 {
            sq[i] = mac::<FMA>(chunk[i], chunk[i], sq[i]);
        }
    }
    let mut out = [0f32; 16];
    for k in 0..16 {
        out[k] = (acc[0][k] + acc[1][k]) + (acc[2][k] + acc[3][k]);
    }
    (out, sq.iter().sum())
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
            Kernel::Portable => self.feed_with::<false>(input),
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
        self.feed_with::<true>(input)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
    fn feed_avx512(&mut self, input: &[i16]) -> usize {
        self.feed_with::<true>(input)
    }

    #[inline(always)]
    fn feed_with<const FMA: bool>(&mut self, input: &[i16]) -> usize {
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
            self.hop::<FMA>(&hop);
        }
        // Whole hops straight from the input: transforming them from the caller's slice,
        // not from the ring just written, avoids a store-forwarding stall.
        while self.pending.len == 0 && input.len() - taken >= HOP {
            let hop: &[i16; HOP] = input[taken..taken + HOP].try_into().expect("HOP samples");
            let slot = self.slot();
            self.ring[slot] = *hop;
            self.hop::<FMA>(hop);
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

    /// Transforms a full hop and classifies the window it completes.
    #[inline(always)]
    fn hop<const FMA: bool>(&mut self, hop: &[i16; HOP]) {
        let (dft, energy) = hop_dft::<FMA>(&self.tables.hop, hop);
        let i = (self.hops % 3) as usize;
        self.sub[i] = dft;
        self.sub_energy[i] = energy;
        self.hops += 1;
        self.fill = 0;
        if self.hops >= 3 {
            let valid = self.classify();
            self.window(valid);
        }
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

    /// The digit the window made of the last three hops is valid for, if any.
    #[inline(always)]
    fn classify(&self) -> Option<Digit> {
        let n = self.hops as usize;
        let (i0, i1, i2) = ((n - 3) % 3, (n - 2) % 3, (n - 1) % 3);
        let energy = self.sub_energy[i0] + self.sub_energy[i1] + self.sub_energy[i2];
        // Two tones at the floor hold at least 2·min_power / (W/2) of energy.
        if energy * (WIN as f32 / 2.0) < 2.0 * self.th.min_power {
            return None;
        }
        let t = self.tables;
        let (a, b, c) = (&self.sub[i0], &self.sub[i1], &self.sub[i2]);
        // Lane-wise over the eight frequencies, so that it vectorises.
        let mut power = [0f32; 8];
        for k in 0..8 {
            let (br, bi, cr, ci) = (b[k], b[8 + k], c[k], c[8 + k]);
            let re = a[k] + br * t.rot1_re[k] - bi * t.rot1_im[k] + cr * t.rot2_re[k]
                - ci * t.rot2_im[k];
            let im = a[8 + k]
                + br * t.rot1_im[k]
                + bi * t.rot1_re[k]
                + cr * t.rot2_im[k]
                + ci * t.rot2_re[k];
            power[k] = re * re + im * im;
        }
        let row = argmax(&power[..4]);
        let col = argmax(&power[4..]);
        let (pr, pc) = (power[row], power[4 + col]);
        let th = &self.th;
        if pr < th.min_power || pc < th.min_power {
            return None;
        }
        if pr > pc * th.normal_twist || pc > pr * th.reverse_twist {
            return None;
        }
        if pr + pc < th.share * energy {
            return None;
        }
        if second(&power[..4], row) * th.group_margin > pr
            || second(&power[4..], col) * th.group_margin > pc
        {
            return None;
        }
        Some(Digit::at(row, col))
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

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best
}

/// The largest of `v` other than `v[skip]`.
fn second(v: &[f32], skip: usize) -> f32 {
    let mut best = 0f32;
    for (i, &x) in v.iter().enumerate() {
        if i != skip && x > best {
            best = x;
        }
    }
    best
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
        let x: [i16; HOP] = std::array::from_fn(|i| ((i * 7919) % 2001) as i16 - 1000);
        let (a, ea) = hop_dft::<false>(&tables().hop, &x);
        let (b, eb) = hop_dft::<true>(&tables().hop, &x);
        for k in 0..16 {
            assert!(
                (a[k] - b[k]).abs() < 1e-2 * a[k].abs().max(1.0),
                "lane {k}: {} vs {}",
                a[k],
                b[k]
            );
        }
        assert!((ea - eb).abs() < 1e-4 * ea);
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
