"""Run-time path (numpy + scipy + onnxruntime only): WAV -> trim -> centre in 1.6 s -> log-mel -> digit CNN.
Usage: python infer.py MODEL.onnx [--speaker NAME] [--tta]   (evaluates on FSDD clips of that speaker)"""
import sys, time, numpy as np, onnxruntime as ort
from common import load_fsdd, to16k, RES, SPEAKERS
from feat_synth import trim

def prepare(x, sr=8000):
    from scipy.signal import resample_poly
    if sr != 8000:
        g = np.gcd(sr, 8000); x = resample_poly(x, 8000 // g, sr // g).astype(np.float32)
    x = trim(x, 8000)[: int(1.5 * 8000)]
    n = int(1.6 * 8000); buf = (np.random.default_rng(0).standard_normal(n) * 3.0).astype(np.float32)
    st = (n - len(x)) // 2; buf[st:st + len(x)] += x
    return buf

class DigitModel:
    def __init__(self, path):
        so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
        self.mel = ort.InferenceSession(str(RES / "melspectrogram.onnx"), so, providers=["CPUExecutionProvider"])
        self.net = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    def logits(self, x, sr=8000, tta=False):
        y = to16k(prepare(x, sr))
        mel = np.squeeze(self.mel.run(None, {"input": y[None]})[0]) / 10.0 + 2.0
        mel = np.pad(mel, ((0, max(0, 160 - len(mel))), (0, 0)), mode="edge")[:160].astype(np.float32)
        run = lambda sh: self.net.run(None, {"mel": mel[None], "shift": np.array(sh, np.int64)})[0][0]
        if not tta:
            return run(0)
        outs = [run(s) for s in (-4, 0, 4)]
        return np.mean(outs, 0)

if __name__ == "__main__":
    m = DigitModel(sys.argv[1]); tta = "--tta" in sys.argv
    spk = sys.argv[sys.argv.index("--speaker") + 1] if "--speaker" in sys.argv else None
    items = [i for i in load_fsdd() if spk is None or i[1] == spk]
    t = time.time(); ok = {}
    for d, s, k, x in items:
        ok.setdefault(s, []).append(int(np.argmax(m.logits(x, tta=tta)) == d))
    dt = (time.time() - t) / len(items)
    print({s: round(float(np.mean(v)), 3) for s, v in ok.items()}, "all=%.3f" % np.mean(sum(ok.values(), [])), "s/utt=%.4f" % dt)
