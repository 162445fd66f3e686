"""Settings: ``IVR_*`` environment variables over an optional TOML file over defaults.

The file groups settings in tables: ``[ari] url = ...`` is the setting ``ari_url``, which the
environment sets as ``IVR_ARI_URL``. Every field says what it is for; ``ivr-server config show``
prints the effective values with secrets masked. settings.py is the schema, sources.py where
values come from (and what is wrong with them), builders.py the domain objects made from them.
"""

from ivr_server.config.builders import ari_ssl_context, caller_hash_key, endpoint_settings, retention_policy
from ivr_server.config.settings import CONFIG_FILE_ENV, MASK, Settings, ToolService
from ivr_server.config.sources import (
    config_file_path,
    effective_settings,
    env_name,
    load_settings,
    mask_url,
    read_config_file,
    unknown_env_vars,
)

__all__ = [
    "CONFIG_FILE_ENV",
    "MASK",
    "Settings",
    "ToolService",
    "ari_ssl_context",
    "caller_hash_key",
    "config_file_path",
    "effective_settings",
    "endpoint_settings",
    "env_name",
    "load_settings",
    "mask_url",
    "read_config_file",
    "retention_policy",
    "unknown_env_vars",
]
