"""Fine-tune the speech-embedding CNN + a small head on log-mel clips. LOSO or synth-only.
Usage: python finetune.py HELDOUT_SPK|none EPOCHS [--nosynth] [--save model.onnx]"""
import sys, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
from embnet import EmbNet
import os
SEED = int(os.environ.get("SEED", "0"))
torch.set_num_threads(1); torch.manual_seed(SEED); np.random.seed(SEED)
import os
STARTS = [int(v) for v in os.environ.get("STARTS", "28,40,52").split(",")]
SUB = float(os.environ.get("SUB", "0.5"))
class Digits(nn.Module):
    def __init__(s):
        super().__init__(); s.emb = EmbNet(); s.dp = nn.Dropout(0.3); s.head = nn.Linear(96 * len(STARTS), 10)
        s.norm = nn.LayerNorm(96)
    def forward(s, mel, shift=0):  # mel: (B, T, 32)
        B = mel.shape[0]
        w = torch.stack([mel[:, st + shift: st + shift + 76] for st in STARTS], 1)  # B,5,76,32
        e = s.emb(w.reshape(B * len(STARTS), 76, 32)).reshape(B, len(STARTS), 96)
        return s.head(s.dp(s.norm(e).reshape(B, -1)))
held = sys.argv[1]; epochs = int(sys.argv[2]); use_synth = "--nosynth" not in sys.argv
f = np.load("fsdd_mel.npz"); Mf, yf, spk = f["M"], f["y"], f["spk"]
tr = spk != held
Ms, ys = [Mf[tr]], [yf[tr]]
if held != "none" or True:
    a = np.load("fsddaug_mel.npz"); ta = a["spk"] != held; Ms.append(a["M"][ta]); ys.append(a["y"][ta])
if use_synth:
    s = np.load("synth_mel.npz"); Ms.append(s["M"]); ys.append(s["y"])
if held == "all":  # synthetic-only training
    Ms, ys = [s["M"]], [s["y"]]
X = np.concatenate(Ms); Y = np.concatenate(ys)
keep = np.random.default_rng(SEED).random(len(X)) < SUB
X = torch.tensor(X[keep]); Y = torch.tensor(Y[keep])
print("train", X.shape, flush=True)
m = Digits()
opt = torch.optim.AdamW([{"params": m.emb.parameters(), "lr": 2e-4}, {"params": list(m.head.parameters()) + list(m.norm.parameters()), "lr": 2e-3}], weight_decay=1e-2)
steps = epochs * ((len(X) + 31) // 32); sched = torch.optim.lr_scheduler.OneCycleLR(opt, [2e-4, 2e-3], total_steps=steps, pct_start=0.15)
def evaluate():
    m.eval(); te = ~tr if held not in ("none",) else np.ones(len(yf), bool)
    if held == "all": te = np.ones(len(yf), bool)
    with torch.no_grad(): p = m(torch.tensor(Mf[te])).argmax(1).numpy()
    res = {sp: round(float((p[spk[te] == sp] == yf[te][spk[te] == sp]).mean()), 3) for sp in np.unique(spk[te])}
    m.train(); return res, float((p == yf[te]).mean())
t = time.time()
for ep in range(epochs):
    perm = torch.randperm(len(X)); tot = 0
    for i in range(0, len(X), 32):
        b = perm[i:i + 32]; xb = X[b].clone()
        if np.random.rand() < 0.5:  # frequency mask
            f0 = np.random.randint(0, 28); xb[:, :, f0:f0 + np.random.randint(1, 5)] = xb.mean()
        loss = F.cross_entropy(m(xb, shift=np.random.randint(-8, 9)), Y[b], label_smoothing=0.1)
        opt.zero_grad(); loss.backward(); opt.step(); sched.step(); tot += loss.item() * len(b)
    print(f"epoch {ep} loss {tot/len(X):.3f} {time.time()-t:.0f}s test {evaluate()}", flush=True)
if "--save" in sys.argv:
    out = sys.argv[sys.argv.index("--save") + 1]; m.eval()
    torch.onnx.export(m, (torch.zeros(1, 160, 32),), out, input_names=["mel"], output_names=["logits"], dynamic_axes={"mel": {0: "b"}, "logits": {0: "b"}}, dynamo=False)
    print("saved", out)
