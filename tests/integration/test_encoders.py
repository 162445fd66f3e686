"""The intent model's sentence encoders: the bundled MiniLM, the built MPNet beside it, the
choice between them, and a trained model that reloads with the encoder it was trained with."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from ivr_server.dialog.nlu.classifier import train
from ivr_server.dialog.nlu.data import Example
from ivr_server.dialog.nlu.encoder import (
    INSTALLED,
    default_encoder,
    encoder_named,
    mpnet_available,
    use_encoder,
)
from ivr_server.errors import NluError

EXAMPLES = [
    *(Example(t, "lost_card") for t in ("i lost my card", "my card is gone", "someone stole my card")),
    *(Example(t, "balance") for t in ("what's my balance", "how much money do i have", "account balance")),
]
needs_mpnet = pytest.mark.skipif(
    not mpnet_available(),
    reason=f"the mpnet encoder is not built in {INSTALLED} (scripts/bootstrap builds it)",
)


@pytest.fixture(autouse=True)
def _auto() -> Iterator[None]:
    yield
    use_encoder("auto")  # other tests get the process default back


@needs_mpnet
def test_mpnet_sits_beside_minilm_and_is_the_default_when_built() -> None:
    """auto takes mpnet: MiniLM's 384 dimensions then MPNet's 768, each unit length; paraphrases
    land nearer each other than unrelated requests."""
    encoder = default_encoder()
    assert encoder.name == "mpnet" and encoder.dimension == 384 + 768
    assert encoder.version.startswith("minilm-l6-int8@") and "+mpnet-int8@" in encoder.version
    a, b, c = encoder.encode(["I lost my card", "my card has gone missing", "what is the exchange rate"])
    assert np.linalg.norm(a[:384]) == pytest.approx(1.0, abs=1e-4)
    assert np.linalg.norm(a[384:]) == pytest.approx(1.0, abs=1e-4)
    assert a[384:] @ b[384:] > a[384:] @ c[384:]


def test_auto_falls_back_to_minilm_saying_why_and_mpnet_asked_for_is_an_error(tmp_path: Path) -> None:
    use_encoder("auto", tmp_path / "nowhere")
    with capture_logs() as logs:
        assert default_encoder().name == "minilm"
    assert logs[0]["event"] == "nlu.encoder_fallback"
    use_encoder("mpnet", tmp_path / "nowhere")
    with pytest.raises(NluError, match="not built .*build-intent-encoder mpnet"):
        default_encoder()
    with pytest.raises(NluError, match="unknown sentence encoder 'bert'"):
        use_encoder("bert")


def test_a_model_reloads_with_the_encoder_it_was_trained_with(tmp_path: Path) -> None:
    """Trained with MiniLM while the process default is another (or the same): after a pickle
    round trip it answers exactly as before."""
    use_encoder("minilm")
    model = train(EXAMPLES)
    use_encoder("auto")
    again = pickle.loads(pickle.dumps(model))
    assert again.features.encoder.name == "minilm"
    said = ["i think i lost my card", "how much do i have left"]
    np.testing.assert_allclose(again.probabilities(said), model.probabilities(said), atol=1e-6)
    assert [g.intent for g in again.guesses(said[0])][:1] == ["lost_card"]


def test_the_encoder_is_part_of_the_model_version() -> None:
    use_encoder("minilm")
    small = train(EXAMPLES)
    assert encoder_named("minilm").version in {small.features.encoder.version}
    if mpnet_available():
        use_encoder("mpnet")
        assert train(EXAMPLES).version != small.version
