"""Domain objects built from the settings: the endpointer's settings, the retention policy,
the caller-ID key, the TLS context for ARI. Kept out of the schema so the settings module changes only when a
setting does."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ivr_server.errors import ConfigError

if TYPE_CHECKING:
    from ivr_server.config.settings import Settings
    from ivr_server.speech.vad.endpointer import EndpointSettings
    from ivr_server.store.retention import RetentionPolicy


def endpoint_settings(settings: Settings) -> EndpointSettings:
    from ivr_server.speech.vad.endpointer import EndpointSettings

    return EndpointSettings(
        threshold=settings.vad_threshold,
        stay_threshold=settings.vad_stay_threshold,
        min_speech_ms=settings.vad_min_speech_ms,
        end_silence_ms=settings.vad_end_silence_ms,
        max_utterance_ms=settings.vad_max_utterance_ms,
        no_input_ms=settings.vad_no_input_ms,
    )


def retention_policy(settings: Settings) -> RetentionPolicy:
    from ivr_server.store.retention import RetentionPolicy

    return RetentionPolicy(
        settings.retention_transcripts_days,
        settings.retention_caller_ids_days,
        settings.retention_calls_days,
        settings.retention_saved_tasks_hours,
    )


def caller_hash_key(settings: Settings) -> bytes | None:
    """The key callers' numbers are hashed with (returning callers); None: they are off."""
    from ivr_server.privacy.caller_id import caller_id_key

    own = settings.returning_caller_key
    return caller_id_key(own.get_secret_value().encode() if own else None, settings.audit_key_bytes)


def ari_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for an https:// ARI URL (certificate and host name verified)."""
    if urlsplit(settings.ari_url).scheme != "https":
        return None
    context = ssl.create_default_context()
    if settings.ari_tls_ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(settings.ari_tls_ca_file))
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(
                f"IVR_ARI_TLS_CA_FILE {settings.ari_tls_ca_file}: not a readable PEM file: {err}"
            ) from err
    return context
