"""The ivr-server command line, run as a subprocess the way an admin runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr_server.store.database import head_revision
from tests.conftest import fresh_database

COMMANDS = [
    [],
    ["run"],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
    ["calls"],
    ["calls", "list"],
    ["calls", "show"],
    ["config"],
    ["config", "show"],
    ["audit"],
    ["audit", "verify"],
    ["audit", "list"],
    ["retention"],
    ["retention", "run"],
    ["flows", "deploy"],
    ["flows", "list"],
    ["flows", "promote"],
    ["flows", "rollback"],
    ["flows", "stats"],
    ["flows", "replay"],
    ["redact"],
]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IVR_") or k.startswith("IVR_TEST_")}
    return subprocess.run(
        [sys.executable, "-m", "ivr_server", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=timeout,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_every_command_has_help(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ivr-server")


def test_version_and_usage_errors() -> None:
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("ivr-server 0.")
    assert cli("frobnicate").returncode == 2
    assert cli().returncode == 2


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_database_lifecycle_and_exit_codes(kind: str, tmp_path: Path) -> None:
    """Un-migrated: run and reads exit 4 naming the command; after db upgrade they work;
    an unknown call id exits 5."""
    async with fresh_database(kind, tmp_path) as url:
        env = {"IVR_DATABASE_URL": url}
        refused = cli("run", env=env)
        assert refused.returncode == 4
        assert "run: ivr-server db upgrade" in refused.stderr
        assert cli("calls", "list", env=env).returncode == 4
        current = cli("db", "current", env=env)
        assert current.returncode == 4 and "not current" in current.stdout
        upgraded = cli("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        assert f"is at revision {head_revision()}" in upgraded.stdout
        assert cli("db", "current", env=env).returncode == 0
        empty = cli("calls", "list", env=env)
        assert empty.returncode == 0 and "(no calls yet)" in empty.stdout
        assert json.loads(cli("calls", "list", "--json", env=env).stdout) == []
        missing = cli("calls", "show", "0123", env=env)
        assert missing.returncode == 5 and "no call with id '0123'" in missing.stderr


def test_invalid_configuration_exits_3_naming_the_setting(tmp_path: Path) -> None:
    result = cli("run", env={"IVR_MEDIA_PORT_MIN": "70000", "IVR_DATA_DIR": str(tmp_path)})
    assert result.returncode == 3
    assert "IVR_MEDIA_PORT_MIN" in result.stderr
    bad_url = cli("db", "upgrade", env={"IVR_DATABASE_URL": "mysql://x/y"})
    assert bad_url.returncode == 3 and "unsupported database 'mysql'" in bad_url.stderr


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "ivr.toml"
    cfg.write_text('[ari]\nurl = "http://pbx.example:8088"\n')
    env = {
        "IVR_ARI_PASSWORD": "hunter2-secret",
        "IVR_DATABASE_URL": "postgresql+asyncpg://ivr:dbsecret@db.example/ivr",
    }
    table = cli("--config", str(cfg), "config", "show", env=env)
    assert table.returncode == 0
    assert "hunter2" not in table.stdout and "dbsecret" not in table.stdout
    shown = json.loads(cli("--config", str(cfg), "config", "show", "--json", env=env).stdout)
    assert shown["IVR_ARI_URL"] == {"value": "http://pbx.example:8088", "source": f"file {cfg}"}
    assert shown["IVR_ARI_PASSWORD"] == {"value": "********", "source": "env"}


def test_redact_masks_a_transcript_and_a_log_from_a_file_or_stdin(tmp_path: Path) -> None:
    """`ivr-server redact`: text lines and JSON log lines (identifiers kept), every line and
    every byte position kept, not-UTF-8 bytes survive as U+FFFD; --check exits 1 on a find."""
    export = tmp_path / "export.log"
    log_line = json.dumps(
        {"event": "turn", "call_id": "1732456789.12", "said": "iban DE89370400440532013000"}
    )
    export.write_bytes(
        b"caller: my card is four one one one one one one one one one one one one one one one\n"
        + log_line.encode()
        + b"\nagent: write to ann dot lee at mail dot example dot co dot uk \xff\r\nno data here"
    )
    out = cli("redact", "--summary", str(export))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "caller: my card is [card]"
    assert json.loads(lines[1]) == {"event": "turn", "call_id": "1732456789.12", "said": "iban [iban]"}
    assert (
        lines[2] == "agent: write to [email] \ufffd" and lines[3] == "no data here"
    )  # (text mode reads \r\n as \n)
    assert "card 1, email 1, iban 1" in out.stderr
    piped = subprocess.run(
        [sys.executable, "-m", "ivr_server", "redact", "--check"],
        input="born 12/03/1985", capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 1 and piped.stdout == "" and "date_of_birth 1" in piped.stderr
    assert cli("redact", "--check", str(tmp_path / "missing.log")).returncode == 5
