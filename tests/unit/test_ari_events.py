"""Parsing ARI events into typed objects."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr_server.errors import AriEventError
from ivr_server.telephony.ari_events import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    IgnoredEvent,
    StasisEnd,
    StasisStart,
    UnknownEvent,
    UnknownTypes,
    is_known_type,
    parse_event,
)

# The channel of a StasisStart as Asterisk 22 sent it in the sandbox.
CHANNEL = {
    "id": "1795475765.0",
    "name": "PJSIP/sipp-00000000",
    "state": "Ring",
    "protocol_id": "1-32684@127.0.0.1",
    "caller": {"name": "Probe", "number": "+15550100"},
    "connected": {"name": "", "number": ""},
    "accountcode": "",
    "dialplan": {
        "context": "ivr-inbound",
        "exten": "100",
        "priority": 2,
        "app_name": "Stasis",
        "app_data": "ivr-server,digits",
    },
    "creationtime": "2026-11-23T23:16:05.217+0000",
    "language": "en",
}
MEDIA_CHANNEL = {
    "id": "1795475765.1",
    "name": "UnicastRTP/127.0.0.1:40000-0x7f5f08003e50",
    "state": "Down",
    "caller": {"name": "", "number": ""},
    "dialplan": {
        "context": "default",
        "exten": "s",
        "priority": 1,
        "app_name": "AppDial2",
        "app_data": "(Outgoing Line)",
    },
    "channelvars": {"UNICASTRTP_LOCAL_PORT": "10002", "UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1"},
}


def event(kind: str, **fields: object) -> str:
    return json.dumps(
        {"type": kind, "application": "ivr-server", "timestamp": "2026-11-23T23:16:05.218+0000", **fields}
    )


def test_stasis_start_of_a_caller() -> None:
    ev = parse_event(event("StasisStart", channel=CHANNEL, args=["digits"]))
    assert isinstance(ev, StasisStart)
    assert ev.args == ("digits",)
    ch = ev.channel
    assert (ch.id, ch.caller_number, ch.caller_name, ch.exten, ch.context) == (
        "1795475765.0",
        "+15550100",
        "Probe",
        "100",
        "ivr-inbound",
    )
    assert not ch.is_external_media


def test_stasis_start_of_our_external_media_leg() -> None:
    ev = parse_event(event("StasisStart", channel=MEDIA_CHANNEL, args=[]))
    assert isinstance(ev, StasisStart) and ev.channel.is_external_media
    assert ev.channel.channelvars["UNICASTRTP_LOCAL_PORT"] == "10002"


def test_hangup_and_dtmf_events() -> None:
    gone = parse_event(event("ChannelDestroyed", channel=CHANNEL, cause=16, cause_txt="Normal Clearing"))
    assert isinstance(gone, ChannelDestroyed) and (gone.cause, gone.cause_txt) == (16, "Normal Clearing")
    assert isinstance(parse_event(event("StasisEnd", channel=CHANNEL)), StasisEnd)
    key = parse_event(event("ChannelDtmfReceived", channel=CHANNEL, digit="#", duration_ms=120))
    assert isinstance(key, ChannelDtmfReceived) and (key.digit, key.duration_ms) == ("#", 120)


def test_documented_types_we_do_not_act_on_are_ignored_not_unknown() -> None:
    assert isinstance(parse_event(event("ChannelVarset", variable="X", value="1")), IgnoredEvent)


def test_an_undocumented_type_is_unknown() -> None:
    ev = parse_event(event("ChannelTeleported", channel=CHANNEL))
    assert isinstance(ev, UnknownEvent) and ev.type == "ChannelTeleported"


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (event("StasisStart", channel=CHANNEL)[:57], "is not JSON"),
        ("[1, 2]", "a JSON list, expected an object"),
        ('{"application": "ivr-server"}', "no 'type'"),
        (event("StasisStart", args=[]), "StasisStart.channel is not an object"),
        (event("StasisStart", channel={"name": "PJSIP/x"}), "field 'id' is missing"),
        (event("StasisEnd", channel={"id": 5, "name": "x"}), "field 'id' is a int"),
        (event("ChannelDtmfReceived", channel=CHANNEL, digit="12"), "is not one key"),
        (b"\xff\xfe{", "is not JSON"),
        ("x" * (1 << 20 + 1), "exceeds"),
    ],
)
def test_malformed_events_say_what_is_wrong(message: str | bytes, error: str) -> None:
    with pytest.raises(AriEventError, match=error):
        parse_event(message)


json_scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["id", "name", "caller", "number", "dialplan"]), children, max_size=3
        )
    ),
    max_leaves=8,
)


@given(
    st.sampled_from(
        [
            "StasisStart",
            "StasisEnd",
            "ChannelDestroyed",
            "ChannelHangupRequest",
            "ChannelDtmfReceived",
            "ApplicationReplaced",
            "ChannelVarset",
            "Nope",
        ]
    ),
    st.dictionaries(
        st.sampled_from(
            ["channel", "args", "digit", "cause", "cause_txt", "duration_ms", "soft", "application"]
        ),
        json_values,
    ),
)
def test_any_json_object_parses_or_raises_ari_event_error(kind: str, fields: dict) -> None:
    """Whatever Asterisk (or a broken proxy) sends, only AriEventError can come out."""
    try:
        parse_event(json.dumps({"type": kind, **fields}))
    except AriEventError:
        pass


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_ari_event_error(text: str) -> None:
    try:
        parse_event(text)
    except AriEventError:
        pass


@pytest.mark.parametrize(
    ("message", "named"),
    [
        ('{"type": "StasisStart", "cause": ' + "9" * 5000 + "}", "not JSON"),  # int over 4300 digits
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"type": "ChannelDestroyed", "x": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested too deeply"),
        ('{"type": "Stasis Start\\n"}', "not an ARI type name"),
        ('{"type": "' + "A" * 500 + '"}', "not an ARI type name"),
        ("\xff\xfe garbage", "not JSON"),
    ],
)
def test_hostile_messages_raise_ari_event_error_naming_what_was_wrong(message: str, named: str) -> None:
    with pytest.raises(AriEventError, match=named):
        parse_event(message)


def test_unknown_type_labels_are_bounded() -> None:
    names = UnknownTypes(limit=3)
    labels = [names.label(f"Future{i}") for i in range(10)]
    assert labels[:3] == ["Future0", "Future1", "Future2"] and set(labels[3:]) == {"other"}
    assert names.label("Future1") == "Future1"  # a type seen before keeps its name
    assert is_known_type("StasisStart") and is_known_type("ChannelVarset") and not is_known_type("Future0")
