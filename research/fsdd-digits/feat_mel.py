"""Same audio pipeline as feat2.py but stores the log-mel (T x 32) input of the embedding net.
Usage: python feat_mel.py fsdd OUT | python feat_mel.py synth RAW OUT K | python feat_mel.py fsddaug OUT K"""
import sys, time, numpy as np
from scipy.signal import resample_poly
import common
from common import *
from feat_synth import trim
from feat2 import place, synth_aug

def mel_of(x8):
    mel_s, _ = common._ort()
    y = to16k(x8)
    mel = mel_s.run(None, {mel_s.get_inputs()[0].name: y[None, :]})[0]
    return (np.squeeze(mel) / 10.0 + 2.0).astype(np.float32)

def fsdd_aug(x, rng):
    f=rng.uniform(0.85,1.18); z=resample_poly(x,int(round(100*f)),100).astype(np.float32)
    if rng.random()<0.5: z=mulaw_roundtrip(z)
    z=z*10**(rng.uniform(-15,6)/20)
    return z+rng.standard_normal(len(z)).astype(np.float32)*np.sqrt((z**2).mean())*10**(-rng.uniform(20,45)/20)

if __name__ == "__main__":
    rng = np.random.default_rng(5); t = time.time(); M=[]; Y=[]; S=[]
    if sys.argv[1] == "fsdd":
        for d, s, k, x in load_fsdd():
            M.append(mel_of(place(trim(x, 8000), rng))); Y.append(d); S.append(s)
        out = sys.argv[2]
    elif sys.argv[1] == "fsddaug":
        K = int(sys.argv[3])
        for d, s, k, x in load_fsdd():
            x = trim(x, 8000)
            for j in range(K):
                M.append(mel_of(place(fsdd_aug(x, rng), rng, jitter=0.08))); Y.append(d); S.append(s)
        out = sys.argv[2]
    else:
        d = np.load(sys.argv[2], allow_pickle=True); K = int(sys.argv[4]); out = sys.argv[3]
        for y, g, sr, x in zip(d["y"], d["group"], d["sr"], d["audio"]):
            for k in range(K):
                M.append(mel_of(place(synth_aug(x, int(sr), rng), rng, jitter=0.08))); Y.append(y); S.append(g)
    np.savez(out, M=np.array(M), y=np.array(Y), spk=np.array(S))
    print("done", len(M), "s/utt", (time.time() - t) / len(M), np.array(M).shape)
