"""Where settings come from: ``IVR_*`` variables over a TOML file over the defaults; what is
wrong with them, said per setting; what is in effect, secrets masked."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr, ValidationError

from ivr_server.config.settings import (
    CONFIG_FILE_ENV,
    DICT_FIELDS,
    ENV_PREFIX,
    MASK,
    NON_SETTING_ENV,
    Settings,
)
from ivr_server.errors import ConfigError


def mask_url(url: str) -> str:
    """The URL with its password replaced, for logs and ``config show``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{netloc[1]}"))


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _flatten_file(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in DICT_FIELDS:  # a table of tables, e.g. [voices.ko]
            flat[key] = value
        elif isinstance(value, dict):
            for sub, sub_value in value.items():
                if isinstance(sub_value, dict) and f"{key}_{sub}" not in DICT_FIELDS:
                    raise ConfigError(f"{path}: [{key}.{sub}] nests too deep; use [{key}] {sub}_...")
                flat[f"{key}_{sub}"] = sub_value
        else:
            flat[key] = value
    return flat


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError(f"config file {path} does not exist") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from err
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from err
    return _flatten_file(data, path)


def unknown_env_vars(environ: Mapping[str, str]) -> list[str]:
    """IVR_* variables that are neither a setting nor a script's: most likely typos."""
    fields = {env_name(name) for name in Settings.model_fields}
    return sorted(
        key
        for key in environ
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() not in fields
        and not key.upper().startswith(NON_SETTING_ENV)
    )


def config_file_path(explicit: Path | None) -> Path | None:
    """The config file in use: the one given, else $IVR_CONFIG_FILE, else none."""
    if explicit is None and os.environ.get(CONFIG_FILE_ENV):
        return Path(os.environ[CONFIG_FILE_ENV])
    return explicit


def load_settings(config_file: Path | None = None) -> Settings:
    """Build and validate the settings; raise ConfigError naming every bad setting."""
    config_file = config_file_path(config_file)
    file_values = read_config_file(config_file) if config_file else {}
    try:
        return Settings(**file_values)
    except ValidationError as err:
        raise ConfigError(_describe(err, file_values, config_file)) from err


def _describe(err: ValidationError, file_values: Mapping[str, Any], path: Path | None) -> str:
    lines = [f"{err.error_count()} invalid setting(s):"]
    for item in err.errors():
        field = str(item["loc"][0]) if item["loc"] else ""
        if field and field not in Settings.model_fields:
            lines.append(f"  {path}: unknown setting {field!r} (not a known key)")
            continue
        where = env_name(field) if field else "settings"
        if field in file_values and env_name(field) not in {k.upper() for k in os.environ}:
            where = f"{field} in {path}"
        got = item.get("input")
        shown = MASK if "password" in field else repr(got)
        detail = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {detail}" + ("" if not field else f" (got {shown})"))
    return "\n".join(lines)


def effective_settings(settings: Settings, config_file: Path | None) -> list[tuple[str, str, str]]:
    """(env var, shown value, source) for every setting, secrets masked."""
    env_keys = {k.upper() for k in os.environ}
    file_keys = set(read_config_file(config_file)) if config_file else set()
    rows = []
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        if isinstance(value, SecretStr):
            shown = MASK
        elif name == "database_url":
            shown = mask_url(settings.effective_database_url)
        elif name.endswith("_url") and isinstance(value, str):  # the bus's, a webhook's: may hold a password
            shown = mask_url(value)
        elif name == "tools_services":
            services = {
                k: {**v.model_dump(exclude={"headers"}), "headers": dict.fromkeys(v.headers, MASK)}
                for k, v in settings.tools_services.items()
            }
            shown = json.dumps(services)
        else:
            shown = "" if value is None else str(value)
        if env_name(name) in env_keys:
            source = "env"
        elif name in file_keys:
            source = f"file {config_file}"
        else:
            source = "default"
        rows.append((env_name(name), shown, source))
    return rows
