"""The Coqui TTS engine on a real Coqui model that the test builds itself: a tiny VITS (random
weights, a character vocabulary, no phonemizer), saved as config.json + model.pth the way Coqui
saves trained models, loaded through load_tts_engine and run on the CPU. Its speech is noise;
what is pinned is the engine contract: loading, rate, shape, finite samples, determinism, and
the errors a bad model gives. Skipped only when coqui-tts cannot be imported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivr_server.errors import EngineUnavailable
from ivr_server.speech.tts.engines import load_tts_engine
from ivr_server.speech.tts.synthesizer import Synthesizer

try:
    import TTS  # noqa: F401  (coqui-tts raises ImportError itself when torch or torchaudio is missing)

    COQUI_ERROR = ""
except (ImportError, OSError) as err:  # OSError: a torchaudio build that needs CUDA
    COQUI_ERROR = " ".join(str(err).split())[:300]

needs_coqui = pytest.mark.skipif(bool(COQUI_ERROR), reason=f"coqui-tts is not importable: {COQUI_ERROR}")
MODEL_RATE = 22050  # not a call rate: the synthesizer must resample


def build_tiny_vits(directory: Path) -> Path:
    """A randomly initialised VITS small enough to build, save and load in a few seconds."""
    import torch
    from TTS.tts.configs.shared_configs import BaseAudioConfig, CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models.vits import Vits

    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=1,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        upsample_initial_channel_decoder=32,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        init_discriminator=False,
        use_sdp=False,
    )
    characters = CharactersConfig(
        characters_class="TTS.tts.utils.text.characters.Graphemes",
        pad="_",
        eos="",
        bos="",
        blank="~",
        characters="abcdefghijklmnopqrstuvwxyz' ",
        punctuations="!,.?-",
        is_unique=True,
        is_sorted=True,
    )
    audio = BaseAudioConfig(
        sample_rate=MODEL_RATE, fft_size=1024, win_length=1024, hop_length=256, num_mels=80
    )
    config = VitsConfig(
        model_args=args,
        audio=audio,
        use_phonemes=False,
        text_cleaner="basic_cleaners",
        characters=characters,
        add_blank=True,
    )
    torch.manual_seed(0)
    model = Vits(config)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, directory / "model.pth")
    config.save_json(str(directory / "config.json"))
    return directory


@needs_coqui
async def test_a_saved_coqui_model_loads_and_speaks_at_the_call_rate(tmp_path: Path) -> None:
    """Directory and checkpoint-file forms load; audio comes back at 8 and 16 kHz, finite,
    non-empty, longer for longer text, the same every time (no sampling noise)."""
    model_dir = build_tiny_vits(tmp_path / "tiny-vits")
    engine = load_tts_engine("coqui", model=str(model_dir))
    assert (
        engine.name == "coqui" and engine.native_rate == MODEL_RATE and engine.languages == frozenset({"en"})
    )
    assert engine.version.startswith("coqui-tts ") and "tiny-vits@" in engine.version
    native = np.concatenate(list(engine.synthesize("hello, how are you today?")))
    assert native.dtype == np.int16 and native.ndim == 1 and len(native) > MODEL_RATE // 20
    assert np.array_equal(native, np.concatenate(list(engine.synthesize("hello, how are you today?"))))
    synth = Synthesizer(engine)
    try:
        for rate in (8000, 16000):
            pcm, cached = await synth.render("Hello there. How are you today?", rate)
            assert pcm.dtype == np.int16 and pcm.ndim == 1 and not cached
            assert np.isfinite(pcm.astype(np.float64)).all() and len(pcm) > rate // 10
        short, _ = await synth.render("hi.", 16000)
        long, _ = await synth.render("this sentence is much much longer than the other one.", 16000)
        assert len(long) > len(short)
    finally:
        synth.close()
    by_file = load_tts_engine("coqui", model=str(model_dir / "model.pth"))
    assert by_file.native_rate == MODEL_RATE


@needs_coqui
def test_a_bad_coqui_model_is_engine_unavailable_naming_it(tmp_path: Path) -> None:
    """No checkpoint, no config, a corrupt checkpoint: EngineUnavailable saying which."""
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineUnavailable, match="no config.json"):
        load_tts_engine("coqui", model=str(empty))
    model_dir = build_tiny_vits(tmp_path / "broken")
    (model_dir / "model.pth").rename(model_dir / "weights.bin")
    with pytest.raises(EngineUnavailable, match="need one checkpoint"):
        load_tts_engine("coqui", model=str(model_dir))
    (model_dir / "model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(EngineUnavailable, match="does not load"):
        load_tts_engine("coqui", model=str(model_dir))


@pytest.mark.skipif(not COQUI_ERROR, reason="coqui-tts is importable here")
def test_without_coqui_the_engine_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(
        EngineUnavailable, match=r"Coqui TTS cannot be imported .*pip install coqui-tts torch==2\.13\.0"
    ):
        load_tts_engine("coqui", model=str(tmp_path))
