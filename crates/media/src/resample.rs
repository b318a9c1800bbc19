//! Sample-rate conversion for prompts and test audio (offline, not on the call path).

/// Converts `input` at `from` Hz to `to` Hz with a Blackman-windowed sinc low-pass at 0.92
/// of the lower Nyquist frequency, so that content above it is removed rather than aliased.
pub fn resample(input: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || input.is_empty() {
        return input.to_vec();
    }
    let ratio = f64::from(from) / f64::from(to);
    let out_len = ((input.len() as f64) / ratio).floor() as usize;
    // Cutoff as a fraction of the input rate.
    let cutoff = 0.5 * 0.92 * f64::from(to.min(from)) / f64::from(from);
    // 16 zero crossings each side of the output rate's kernel, in input samples.
    let half = (16.0 * ratio.max(1.0)).ceil() as i64;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let center = n as f64 * ratio;
        let first = (center.floor() as i64 - half + 1).max(0);
        let last = (center.floor() as i64 + half).min(input.len() as i64 - 1);
        let (mut acc, mut norm) = (0f64, 0f64);
        for k in first..=last {
            let u = k as f64 - center;
            let x = 2.0 * cutoff * u;
            let sinc = if x.abs() < 1e-12 {
                1.0
            } else {
                (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
            };
            let p = f64::midpoint(u / half as f64, 1.0); // 0..1 across the window
            let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * p).cos()
                + 0.08 * (4.0 * std::f64::consts::PI * p).cos();
            let h = 2.0 * cutoff * sinc * w;
            acc += f64::from(input[k as usize]) * h;
            norm += h;
        }
        // Normalising by the kernel's sum keeps DC gain at 1 at the edges too.
        out.push(if norm.abs() > 1e-9 {
            (acc / norm) as f32
        } else {
            0.0
        });
    }
    out
}
