"""The settings of one training run, the cache keys derived from them, and progress logging."""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from ivr_server.speech.asr import digit_model as dm


class RecipeError(RuntimeError):
    """A step cannot go on (wrong download, incomplete data set, export that disagrees)."""


@dataclass(frozen=True)
class Recipe:
    """What scripts/train-digits was asked for; the defaults are the script's."""

    fsdd: Path  # FSDD recordings folder
    work: Path  # caches: wheel resources, synthetic renders, features, LOSO logits, members
    out: Path  # model directory written by --final, read by --evaluate
    seed: int = 0  # data seed; member k trains with seed + 100 k
    ensemble: int = 1
    epochs: int = 3
    sub: float = 0.5  # fraction of the training set drawn per epoch
    batch: int = 32
    lr_emb: float = 2e-4
    lr_head: float = 2e-3
    shift: int = 8  # max random window shift, frames
    time_mask: float = 0.0  # probability of a SpecAugment time mask per batch
    mixup: float = 0.0  # mixup beta parameter (0: off)
    espeak_n: int = 4000
    piper_n: int = 1000
    fsdd_aug: int = 2  # augmented copies per FSDD clip
    synth_aug: int = 1  # augmented copies per synthetic render
    tta: str = ""  # speeds for test-time augmentation of the LOSO folds, e.g. "0.92,1,1.08"
    command: str = "scripts/train-digits"  # recorded in model.json

    @classmethod
    def from_args(cls, args: argparse.Namespace, command: str) -> Recipe:
        names = {f.name for f in dataclasses.fields(cls)} - {"command"}
        return cls(command=command, **{k: v for k, v in vars(args).items() if k in names})

    @property
    def tag(self) -> str:
        """Key of the LOSO logits and member weights: everything that changes them."""
        return (
            f"v{dm.PREPARE_VERSION}-s{self.seed}-ep{self.epochs}-sub{self.sub}-tm{self.time_mask}"
            f"-mx{self.mixup}-sh{self.shift}-e{self.espeak_n}-p{self.piper_n}-fa{self.fsdd_aug}"
            f"-sa{self.synth_aug}"
        )

    @property
    def synth_file(self) -> Path:
        return self.work / f"synth-e{self.espeak_n}-p{self.piper_n}-s{self.seed}.npz"

    @property
    def features_file(self) -> Path:
        return self.work / (
            f"feat-v{dm.PREPARE_VERSION}-e{self.espeak_n}-p{self.piper_n}-fa{self.fsdd_aug}"
            f"-sa{self.synth_aug}-s{self.seed}.npz"
        )

    def loso_logits_file(self, member: int) -> Path:
        return self.work / f"loso-{self.tag}-m{member}.npz"

    def fold_weights_file(self, member: int, held: str) -> Path:
        return self.work / f"loso-{self.tag}-m{member}-{held}.pt"

    def final_weights_file(self, member: int) -> Path:
        return self.work / f"final-{self.tag}-m{member}.pt"

    def member_seed(self, member: int) -> int:
        return self.seed + 100 * member


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)
