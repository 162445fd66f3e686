"""A server's name in the shared store: the machine, the PBX it serves and its application."""

from __future__ import annotations

import pytest

from ivr_server.app import server_identity


@pytest.mark.parametrize(
    ("ari_url", "app", "identity"),
    [
        ("http://127.0.0.1:8088", "ivr-server", "node1/127.0.0.1:8088/ivr-server"),
        ("https://pbx2.example.com:8089", "ivr-server", "node1/pbx2.example.com:8089/ivr-server"),
        (
            "http://user:secret@pbx3.example.com",
            "ivr-a",
            "node1/pbx3.example.com/ivr-a",
        ),  # no credentials
    ],
)
def test_the_server_id_names_the_machine_the_pbx_and_the_application(
    ari_url: str, app: str, identity: str
) -> None:
    assert server_identity("node1", ari_url, app) == identity


def test_servers_of_two_pbxs_with_one_application_name_are_two_servers() -> None:
    """The dialplans of two PBXs both say Stasis(ivr-server,...): one server on each machine,
    or both on one, must not take the other's open calls or heartbeat for its own."""
    first = server_identity("node1", "http://pbx1:8088", "ivr-server")
    assert first != server_identity("node1", "http://pbx2:8088", "ivr-server")
    assert first != server_identity("node2", "http://pbx1:8088", "ivr-server")
