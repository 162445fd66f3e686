"""One error tree for the whole server; every error has a stable ``code``.

IvrError
├── ConfigError              settings invalid or missing (names the setting)
├── StoreError               database unreachable or failing
│   └── SchemaNotCurrent     database not migrated to the code's schema
├── AriError                 the Asterisk REST Interface
│   ├── AriUnavailable       connection refused, timed out, reset
│   ├── AriAuthError         401/403: wrong ARI user or password
│   └── AriRequestError      any other non-2xx answer (AriNotFound for 404)
├── AriEventError            an events-socket message we cannot parse
├── MediaError               ports, RTP, codecs, prompts
│   ├── RtpParseError        a datagram that is not valid RTP
│   └── PortsExhausted       no free UDP port in the configured range
├── AsrError                 speech recognition: bad audio, grammar, capability mismatch
│   ├── EngineUnavailable    an engine's package or model is missing (says how to get it; ASR and TTS)
│   └── ResourceError        a flow's recognition resources cannot be compiled (names file and word)
├── SpeechError              text to speech: nothing speakable in the text, or every engine failed
├── FlowError                a flow file that is not valid (names the file, line and what was expected)
├── NluError                 intent data that cannot train a model (names the file and row), a bad encoder
└── ToolError                a back-end call failed (names the tool and service)
    ├── ToolTimeout          no answer within the tool's timeout_s
    ├── ToolUnavailable      refused, a 5xx, or the service's circuit is open
    └── ToolBadAnswer        an answer the flow cannot use (not JSON, a field missing, a 4xx)
"""

from __future__ import annotations


class IvrError(Exception):
    """Base error; ``code`` is stable and safe to log and count."""

    code = "ivr_error"


class ConfigError(IvrError):
    code = "config_invalid"


class StoreError(IvrError):
    code = "store_error"


class SchemaNotCurrent(StoreError):
    code = "schema_not_current"


class AriError(IvrError):
    code = "ari_error"


class AriUnavailable(AriError):
    code = "ari_unavailable"


class AriAuthError(AriError):
    code = "ari_auth_failed"


class AriRequestError(AriError):
    code = "ari_request_failed"

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"ARI {method} {path} answered {status}: {message}")
        self.method = method
        self.path = path
        self.status = status


class AriNotFound(AriRequestError):
    code = "ari_not_found"


class AriEventError(IvrError):
    code = "ari_event_malformed"


class MediaError(IvrError):
    code = "media_error"


class RtpParseError(MediaError):
    code = "rtp_malformed"


class PortsExhausted(MediaError):
    code = "media_ports_exhausted"


class AsrError(IvrError):
    code = "asr_error"


class EngineUnavailable(AsrError):
    code = "asr_engine_unavailable"


class ResourceError(AsrError):
    code = "asr_resources_invalid"


class SpeechError(IvrError):
    code = "tts_failed"


class FlowError(IvrError):
    code = "flow_invalid"

    def __init__(self, message: str, problems: list[object] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class LanguageUnavailable(FlowError):
    """A flow in a language the server has no voice for: the call goes back to the dialplan."""


class NluError(IvrError):
    code = "nlu_failed"


class ToolError(IvrError):
    code = "tool_failed"


class ToolTimeout(ToolError):
    code = "tool_timeout"


class ToolUnavailable(ToolError):
    code = "tool_unavailable"


class ToolBadAnswer(ToolError):
    code = "tool_bad_answer"


class ToolRefused(ToolBadAnswer):
    """The service works and refused the request (a 4xx: "no such account"): what the caller
    gave was wrong, or misheard, so a flow may ask for it again (``event: refused``)."""

    code = "tool_refused"
