"""ARI events: JSON from the events WebSocket parsed into typed, frozen objects.

The only place that reads ARI's event JSON. Types the server acts on get their own class;
types Asterisk documents that the server does not act on become ``IgnoredEvent``; anything
else is ``UnknownEvent``, which the caller counts and logs. A message that is not a JSON object
with a ``type`` raises ``AriEventError`` naming what was wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr_server.errors import AriEventError

MAX_EVENT_BYTES = 1 << 20
MAX_UNKNOWN_TYPES = 32  # distinct unknown type names given their own metric label
_TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

# Event types in Asterisk 22's ARI model that the server receives but does not act on.
IGNORED_TYPES = frozenset(
    {
        "ApplicationMoveFailed",
        "ApplicationRegistered",
        "ApplicationUnregistered",
        "BridgeAttendedTransfer",
        "BridgeBlindTransfer",
        "BridgeCreated",
        "BridgeDestroyed",
        "BridgeMerged",
        "BridgeVideoSourceChanged",
        "ChannelCallerId",
        "ChannelConnectedLine",
        "ChannelCreated",
        "ChannelDialplan",
        "ChannelEnteredBridge",
        "ChannelHold",
        "ChannelLeftBridge",
        "ChannelStateChange",
        "ChannelTalkingFinished",
        "ChannelTalkingStarted",
        "ChannelToneDetected",
        "ChannelTransfer",
        "ChannelUnhold",
        "ChannelVarset",
        "ContactStatusChange",
        "DeviceStateChanged",
        "Dial",
        "EndpointStateChange",
        "PeerStatusChange",
        "PlaybackContinuing",
        "PlaybackFinished",
        "PlaybackStarted",
        "RecordingFailed",
        "RecordingFinished",
        "RecordingStarted",
        "TextMessageReceived",
    }
)


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    state: str = ""
    caller_number: str = ""
    caller_name: str = ""
    context: str = ""
    exten: str = ""
    app_name: str = ""
    app_data: str = ""
    channelvars: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_external_media(self) -> bool:
        """Our own ExternalMedia legs (chan_rtp) enter the app too; they are not callers."""
        return self.name.startswith("UnicastRTP/")


@dataclass(frozen=True, slots=True)
class AriEvent:
    type: str
    application: str
    timestamp: str


@dataclass(frozen=True, slots=True)
class StasisStart(AriEvent):
    channel: Channel
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StasisEnd(AriEvent):
    channel: Channel


@dataclass(frozen=True, slots=True)
class ChannelDestroyed(AriEvent):
    channel: Channel
    cause: int
    cause_txt: str


@dataclass(frozen=True, slots=True)
class ChannelHangupRequest(AriEvent):
    channel: Channel
    cause: int
    soft: bool


@dataclass(frozen=True, slots=True)
class ChannelDtmfReceived(AriEvent):
    channel: Channel
    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class ApplicationReplaced(AriEvent):
    """Another client connected with our application name and took its events."""


@dataclass(frozen=True, slots=True)
class IgnoredEvent(AriEvent):
    pass


@dataclass(frozen=True, slots=True)
class UnknownEvent(AriEvent):
    pass


def _field(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise AriEventError(f"{where}: field {key!r} is {got}, expected a {kind.__name__}")
    return value


def _optional(data: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = data.get(key, default)
    return value if isinstance(value, kind) else default


def parse_channel(data: Any, where: str = "channel") -> Channel:
    """A channel object from an event or a REST answer."""
    if not isinstance(data, Mapping):
        raise AriEventError(f"{where} is not an object")
    caller = _optional(data, "caller", Mapping, {})
    dialplan = _optional(data, "dialplan", Mapping, {})
    variables = _optional(data, "channelvars", Mapping, {})
    return Channel(
        id=_field(data, "id", str, where),
        name=_field(data, "name", str, where),
        state=_optional(data, "state", str, ""),
        caller_number=_optional(caller, "number", str, ""),
        caller_name=_optional(caller, "name", str, ""),
        context=_optional(dialplan, "context", str, ""),
        exten=_optional(dialplan, "exten", str, ""),
        app_name=_optional(dialplan, "app_name", str, ""),
        app_data=_optional(dialplan, "app_data", str, ""),
        channelvars={str(k): str(v) for k, v in variables.items()},
    )


def _base(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": data["type"],
        "application": _optional(data, "application", str, ""),
        "timestamp": _optional(data, "timestamp", str, ""),
    }


def _stasis_start(d: Mapping[str, Any]) -> AriEvent:
    args = _optional(d, "args", list, [])
    return StasisStart(
        **_base(d),
        channel=parse_channel(d.get("channel"), "StasisStart.channel"),
        args=tuple(str(a) for a in args),
    )


def _stasis_end(d: Mapping[str, Any]) -> AriEvent:
    return StasisEnd(**_base(d), channel=parse_channel(d.get("channel"), "StasisEnd.channel"))


def _destroyed(d: Mapping[str, Any]) -> AriEvent:
    return ChannelDestroyed(
        **_base(d),
        channel=parse_channel(d.get("channel"), "ChannelDestroyed.channel"),
        cause=_optional(d, "cause", int, 0),
        cause_txt=_optional(d, "cause_txt", str, ""),
    )


def _hangup_request(d: Mapping[str, Any]) -> AriEvent:
    return ChannelHangupRequest(
        **_base(d),
        channel=parse_channel(d.get("channel"), "ChannelHangupRequest.channel"),
        cause=_optional(d, "cause", int, 0),
        soft=_optional(d, "soft", bool, False),
    )


def _dtmf(d: Mapping[str, Any]) -> AriEvent:
    digit = _field(d, "digit", str, "ChannelDtmfReceived")
    if len(digit) != 1:
        raise AriEventError(f"ChannelDtmfReceived: digit {digit[:8]!r} is not one key")
    return ChannelDtmfReceived(
        **_base(d),
        channel=parse_channel(d.get("channel"), "ChannelDtmfReceived.channel"),
        digit=digit,
        duration_ms=_optional(d, "duration_ms", int, 0),
    )


_PARSERS: dict[str, Callable[[Mapping[str, Any]], AriEvent]] = {
    "StasisStart": _stasis_start,
    "StasisEnd": _stasis_end,
    "ChannelDestroyed": _destroyed,
    "ChannelHangupRequest": _hangup_request,
    "ChannelDtmfReceived": _dtmf,
    "ApplicationReplaced": lambda d: ApplicationReplaced(**_base(d)),
}


def parse_event(message: str | bytes) -> AriEvent:
    """Parse one WebSocket message; AriEventError says what was wrong with it."""
    if len(message) > MAX_EVENT_BYTES:
        raise AriEventError(f"event of {len(message)} bytes exceeds {MAX_EVENT_BYTES}")
    try:
        data = json.loads(message)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, or an integer over 4300 digits
        raise AriEventError(f"event of {len(message)} bytes is not JSON: {str(err)[:200]}") from err
    except RecursionError as err:
        raise AriEventError(f"event of {len(message)} bytes is nested too deeply to parse") from err
    if not isinstance(data, dict):
        raise AriEventError(f"event is a JSON {type(data).__name__}, expected an object")
    etype = data.get("type")
    if not isinstance(etype, str) or not etype:
        raise AriEventError("event has no 'type' string")
    if not _TYPE_NAME.match(etype):
        raise AriEventError(f"event type {etype[:40]!r} is not an ARI type name")
    parser = _PARSERS.get(etype)
    if parser is not None:
        try:
            return parser(data)
        except (TypeError, ValueError, RecursionError) as err:  # a field of a shape no event has
            raise AriEventError(f"{etype}: {type(err).__name__}: {str(err)[:200]}") from err
    if etype in IGNORED_TYPES:
        return IgnoredEvent(**_base(data))
    return UnknownEvent(**_base(data))


def is_known_type(etype: str) -> bool:
    """A type the server parses or knows to ignore: the metric label sets are closed over these."""
    return etype in _PARSERS or etype in IGNORED_TYPES


class UnknownTypes:
    """Names unknown event types for metrics: the first MAX_UNKNOWN_TYPES distinct ones by
    name (a newer Asterisk's events are worth seeing), any after that as "other", so a peer
    cannot grow the label set without bound."""

    def __init__(self, limit: int = MAX_UNKNOWN_TYPES) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def label(self, etype: str) -> str:
        if etype in self._seen:
            return etype
        if len(self._seen) < self.limit:
            self._seen.add(etype)
            return etype
        return "other"
