"""Settings from defaults, a TOML file and IVR_* variables, with errors naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr_server.config import (
    MASK,
    effective_settings,
    load_settings,
    mask_url,
    unknown_env_vars,
)
from ivr_server.config.settings import Settings
from ivr_server.errors import ConfigError


def test_defaults_are_valid_and_point_at_the_sandbox() -> None:
    s = load_settings()
    assert s.ari_url == "http://127.0.0.1:8088" and s.ari_app == "ivr-server"
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert s.effective_database_url.endswith("ivr-server/ivr.sqlite3")


def test_file_tables_flatten_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "ivr.toml"
    cfg.write_text(
        'data_dir = "/srv/ivr"\n[ari]\nurl = "https://pbx.example:8089"\napp = "from-file"\n'
        '[media]\nformat = "slin16"\n'
    )
    monkeypatch.setenv("IVR_ARI_APP", "from-env")
    s = load_settings(cfg)
    assert (s.ari_url, s.ari_app, s.media_format) == ("https://pbx.example:8089", "from-env", "slin16")
    assert s.effective_database_url == "sqlite+aiosqlite:////srv/ivr/ivr.sqlite3"
    sources = {name: source for name, _, source in effective_settings(s, cfg)}
    assert sources["IVR_ARI_APP"] == "env"
    assert sources["IVR_ARI_URL"] == f"file {cfg}"
    assert sources["IVR_ARI_USERNAME"] == "default"


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "ivr.toml"
    cfg.write_text('[log]\nlevel = "debug"\n')
    monkeypatch.setenv("IVR_CONFIG_FILE", str(cfg))
    assert load_settings().log_level == "debug"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"IVR_MEDIA_PORT_MIN": "70000"}, "IVR_MEDIA_PORT_MIN: Input should be less than or equal to 65535"),
        (
            {"IVR_MEDIA_PORT_MIN": "41000", "IVR_MEDIA_PORT_MAX": "40000"},
            "media_port_min (41000) must not exceed",
        ),
        ({"IVR_MEDIA_FORMAT": "opus"}, "IVR_MEDIA_FORMAT: Input should be 'ulaw' or 'slin16'"),
        ({"IVR_ARI_URL": "ftp://x"}, "ari_url must start with http:// or https://"),
        (
            {"IVR_ARI_URL": "http://pbx2:8088/ari/"},
            "ari_url is Asterisk's HTTP server without /ari: 'http://pbx2:8088'",
        ),
        ({"IVR_ARI_CONNECT_TIMEOUT_S": "-1"}, "IVR_ARI_CONNECT_TIMEOUT_S: Input should be greater than 0"),
        ({"IVR_ARI_PASSWORD_FILE": "/nonexistent/pw"}, "ari_password_file /nonexistent/pw"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert message in str(err.value)


def test_bad_files_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[ari\nurl = 1\n")
    with pytest.raises(ConfigError, match="broken.toml is not valid TOML"):
        load_settings(broken)
    typo = tmp_path / "typo.toml"
    typo.write_text('[ari]\npasword = "x"\n')
    with pytest.raises(ConfigError, match="unknown setting 'ari_pasword'"):
        load_settings(typo)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[media]\nport_min = "lots"\n')
    with pytest.raises(ConfigError, match=f"media_port_min in {wrong}: Input should be a valid integer"):
        load_settings(wrong)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_password_file_and_masking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "ari-password"
    secret.write_text("s3cret-from-file\n")
    monkeypatch.setenv("IVR_ARI_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("IVR_DATABASE_URL", "postgresql+asyncpg://ivr:dbpass@db.example/ivr")
    s = load_settings()
    assert s.ari_password.get_secret_value() == "s3cret-from-file"
    shown = {n: v for n, v, _ in effective_settings(s, None)}
    assert shown["IVR_ARI_PASSWORD"] == MASK
    assert "dbpass" not in shown["IVR_DATABASE_URL"] and MASK in shown["IVR_DATABASE_URL"]
    bus = Settings(
        bus_url="redis://:buspass@redis.example:6379/0", handoff_webhook_url="https://u:hookpass@crm/h"
    )
    shown = {n: v for n, v, _ in effective_settings(bus, None)}  # config show and the start's audit event
    assert shown["IVR_BUS_URL"] == f"redis://:{MASK}@redis.example:6379/0"
    assert "hookpass" not in shown["IVR_HANDOFF_WEBHOOK_URL"]
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)


def test_masked_urls() -> None:
    assert mask_url("postgresql+asyncpg://u:p@h:5432/d") == f"postgresql+asyncpg://u:{MASK}@h:5432/d"
    assert mask_url("sqlite+aiosqlite:////tmp/x.db") == "sqlite+aiosqlite:////tmp/x.db"


def test_typos_in_variable_names_are_found() -> None:
    env = {"IVR_ARI_PASWORD": "x", "IVR_ARI_URL": "y", "IVR_SANDBOX_HOME": "/x", "PATH": "/bin"}
    assert unknown_env_vars(env) == ["IVR_ARI_PASWORD"]


def test_the_shipped_example_config_is_valid(tmp_path: Path) -> None:
    """ivr-server.example.toml must keep loading as settings change."""
    from tests.conftest import REPO

    password = tmp_path / "pw"
    password.write_text("x\n")
    text = (
        (REPO / "ivr-server.example.toml").read_text().replace("/etc/ivr-server/ari-password", str(password))
    )
    example = tmp_path / "example.toml"
    example.write_text(text)
    s = load_settings(example)
    assert (s.ari_username, s.media_port_min, s.log_format) == ("ivr", 40000, "json")
    assert str(s.data_dir) == "/var/lib/ivr-server"


def test_tool_services_come_from_a_table_and_their_headers_are_secrets(tmp_path: Path) -> None:
    from ivr_server.config import effective_settings
    from ivr_server.tools.client import services_from

    path = tmp_path / "c.toml"
    path.write_text(
        '[tools]\nservices = { core = { url = "http://10.0.0.5:8080", headers = { "X-Api-Key" = "k3y" } } }\n'
    )
    settings = load_settings(path)
    (service,) = services_from(settings.tools_services).values()
    assert service.url == "http://10.0.0.5:8080" and service.headers == {"X-Api-Key": "k3y"}
    shown = {name: value for name, value, _ in effective_settings(settings, path)}["IVR_TOOLS_SERVICES"]
    assert "k3y" not in shown and '"X-Api-Key": "********"' in shown
    assert "bank" in load_settings(None).tools_services  # the demo bank by default


def test_a_voice_per_language_from_the_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "ivr.toml"
    cfg.write_text(
        '[voices.ko]\nasr_vosk_model = "/opt/vosk-ko"\ntts_engine = "piper"\ntts_model = "/v.onnx"\n'
    )
    ko = load_settings(cfg).voices["ko"]
    assert (str(ko.asr_vosk_model), ko.tts_engine, ko.tts_model) == ("/opt/vosk-ko", "piper", "/v.onnx")
    monkeypatch.setenv("IVR_VOICES", '{"ja": {"tts_voice": "ja"}}')
    assert set(load_settings(cfg).voices) == {"ja", "ko"}  # the environment adds to the file
    monkeypatch.setenv("IVR_VOICES", '{"ko": {"tts_engine": "festival"}}')
    with pytest.raises(ConfigError, match="IVR_VOICES"):
        load_settings()
