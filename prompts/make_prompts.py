#!/usr/bin/env python3
"""Makes the recorded prompts: prompts/<lang>/<name>.wav, 8 kHz mono 16-bit PCM.

English is spoken by espeak-ng (Debian package espeak-ng), Japanese by pyopenjtalk-plus
(PyPI; it ships its dictionary and synthesises offline). sox (Debian package sox) converts
to 8 kHz, band-limits to the telephone band and normalises to -3 dBFS peak.

    apt-get install -y espeak-ng sox && pip install pyopenjtalk-plus
    python3 prompts/make_prompts.py
"""
import os
import subprocess
import sys
import tempfile
import wave

HERE = os.path.dirname(os.path.abspath(__file__))

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
        "code_intro": "Your verification code is",
        "code_again": "Again, your code is",
        "code_outro": "Enter this code on your sign-in screen. "
                      "If you did not try to sign in, press zero, then the pound key, to report fraud.",
        "goodbye": "Goodbye.",
        "digit_0": "zero", "digit_1": "one", "digit_2": "two", "digit_3": "three", "digit_4": "four",
        "digit_5": "five", "digit_6": "six", "digit_7": "seven", "digit_8": "eight", "digit_9": "nine",
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


def to_telephone(src, dst):
    # 300-3400 Hz band, 8 kHz, 120 ms of lead-in silence, peak at -3 dBFS.
    subprocess.run(
        ["sox", src, "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", dst,
         "highpass", "300", "lowpass", "3400", "pad", "0.12", "0.12", "norm", "-3"],
        check=True,
    )


def english(text, dst, tmp):
    raw = os.path.join(tmp, "en.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", raw, text], check=True)
    to_telephone(raw, dst)


def japanese(text, dst, tmp):
    import numpy as np
    import pyopenjtalk

    samples, rate = pyopenjtalk.tts(text)
    raw = os.path.join(tmp, "ja.wav")
    with wave.open(raw, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())
    to_telephone(raw, dst)


def main():
    speak = {"en": english, "ja": japanese}
    with tempfile.TemporaryDirectory() as tmp:
        for lang, prompts in SCRIPT.items():
            os.makedirs(os.path.join(HERE, lang), exist_ok=True)
            for name, text in prompts.items():
                dst = os.path.join(HERE, lang, name + ".wav")
                speak[lang](text, dst, tmp)
                print(dst, file=sys.stderr)


if __name__ == "__main__":
    main()
